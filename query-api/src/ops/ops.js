// The operations page (README "Operations page"): signs in with an admin's access token, polls
// /ops/data every few seconds and draws what it answers. The last samples stay in the page for
// the trend charts. Every value is written with textContent (never as HTML); charts are SVG
// elements made here, so the page needs nothing from elsewhere.
'use strict';

(function () {
  const DATA_URL = '/ops/data';
  const REFRESH_MS = 3000;
  const SAMPLES = 40;
  const TOKEN_KEY = 'workup.ops.token';
  const SVG = 'http://www.w3.org/2000/svg';
  const WITHDRAWAL_STATES = ['scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled'];
  const OPEN_STATES = ['scheduled', 'queued', 'running'];

  // Oldest first: {at, lag: {group: events}, withdrawals: {state: count}}.
  const samples = [];
  let timer = null;

  const $ = (id) => document.getElementById(id);

  // --- the token: from the URL fragment (then removed from the address), or pasted ------------

  function tokenFromFragment() {
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (!match) {
      return null;
    }
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
    return decodeURIComponent(match[1]);
  }

  function storedToken() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      return null;
    }
  }

  let token = null;

  function remember(value) {
    token = value;
    try {
      if (value) {
        window.sessionStorage.setItem(TOKEN_KEY, value);
      } else {
        window.sessionStorage.removeItem(TOKEN_KEY);
      }
    } catch (e) {
      // Storage refused (private mode): the token lives in this page only.
    }
  }

  function setState(state) {
    document.body.dataset.state = state;
  }

  function showLogin(message) {
    if (timer) {
      window.clearTimeout(timer);
      timer = null;
    }
    setState('login');
    $('login').hidden = false;
    $('dashboard').hidden = true;
    $('sign-out').hidden = true;
    $('status').textContent = 'not signed in';
    const error = $('login-error');
    error.hidden = !message;
    error.textContent = message || '';
  }

  function showDashboard() {
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('sign-out').hidden = false;
  }

  // --- polling ---------------------------------------------------------------------------------

  async function refresh() {
    timer = null;
    let response;
    try {
      response = await window.fetch(DATA_URL, {
        headers: { authorization: 'Bearer ' + token, accept: 'application/json' },
        cache: 'no-store',
      });
    } catch (e) {
      problem('query-api did not answer: ' + e.message);
      schedule();
      return;
    }
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      remember(null);
      showLogin((body.title || 'Refused') + ': ' + (body.detail || response.status));
      return;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      problem('GET ' + DATA_URL + ' answered ' + response.status + (body.detail ? ': ' + body.detail : ''));
      schedule();
      return;
    }
    const data = await response.json();
    showDashboard();
    keepSample(data);
    render(data);
    setState('ready');
    schedule();
  }

  function schedule() {
    if (!timer && token) {
      timer = window.setTimeout(refresh, REFRESH_MS);
    }
  }

  function problem(message) {
    const element = $('problems');
    element.hidden = !message;
    element.textContent = message || '';
  }

  function keepSample(data) {
    const lag = {};
    for (const c of data.consumers) {
      lag[c.group] = c.lag_events;
    }
    samples.push({ at: new Date(data.generated_at), lag: lag, withdrawals: data.withdrawals });
    while (samples.length > SAMPLES) {
      samples.shift();
    }
  }

  // --- rendering -------------------------------------------------------------------------------

  function render(data) {
    const generated = new Date(data.generated_at);
    $('status').textContent = 'updated ' + generated.toLocaleTimeString() + ' · every ' + REFRESH_MS / 1000 + ' s';
    problem(data.errors.map((e) => e.section + ': ' + e.message).join(' · '));
    renderSummary(data);
    renderInstances(data.instances, data.heartbeat_ms / 1000);
    renderConsumers(data.consumers);
    renderCommands(data.commands);
    renderLagChart(data.consumers);
    renderWithdrawals(data.withdrawals);
  }

  function text(id, value) {
    $(id).textContent = value;
  }

  function sum(values) {
    return values.reduce((total, v) => total + (v || 0), 0);
  }

  function renderSummary(data) {
    text('instances-count', String(data.instances.length));
    const commands = data.commands;
    text('commands-per-second', commands ? commands.commands_per_second.toFixed(2) : '–');
    text('commands-total', commands ? String(commands.commands) : '–');
    const measured = data.consumers.filter((c) => c.lag_events !== null);
    text('lag-total', measured.length ? String(sum(measured.map((c) => c.lag_events))) : '–');
    text('dlq-total', measured.length ? String(sum(measured.map((c) => c.dlq_events))) : '–');
    text('withdrawals-queued', data.withdrawals ? String(data.withdrawals.queued) : '–');
  }

  function cell(row, value, className) {
    const td = document.createElement('td');
    if (value instanceof Node) {
      td.appendChild(value);
    } else {
      td.textContent = value === null || value === undefined ? '–' : String(value);
    }
    if (className) {
      td.className = className;
    }
    row.appendChild(td);
    return td;
  }

  function badge(label, kind) {
    const span = document.createElement('span');
    span.className = 'badge' + (kind ? ' ' + kind : '');
    span.textContent = label;
    return span;
  }

  function replaceRows(tableId, rows) {
    const body = $(tableId).tBodies[0];
    while (body.firstChild) {
      body.removeChild(body.firstChild);
    }
    for (const row of rows) {
      body.appendChild(row);
    }
  }

  // A heartbeat older than two periods is late (five and the instance is left out).
  function renderInstances(instances, heartbeatSeconds) {
    replaceRows('instances', instances.map((i) => {
      const row = document.createElement('tr');
      row.className = 'instance';
      row.dataset.service = i.service;
      row.dataset.instance = i.instance;
      cell(row, i.service);
      cell(row, i.instance);
      cell(row, i.host + ' / ' + i.pid);
      cell(row, i.frozen ? badge('frozen', 'bad') : badge('running'));
      cell(row, i.max_concurrency === null ? 'no limit' : i.max_concurrency, 'number');
      cell(row, i.max_db_connections === null ? 'configured' : i.max_db_connections, 'number');
      const commands = i.commands_enabled
        ? badge('all on')
        : badge(i.disabled_commands.length + ' off', 'warn');
      if (!i.commands_enabled) {
        commands.title = i.disabled_commands.join(', ');
      }
      cell(row, commands);
      cell(row, i.log_level === null ? 'default' : i.log_level);
      const age = i.heartbeat_age_seconds;
      cell(row, badge(age.toFixed(1) + ' s ago', age > 2 * heartbeatSeconds ? 'warn' : ''), 'heartbeat');
      return row;
    }));
  }

  function renderConsumers(consumers) {
    replaceRows('consumers', consumers.map((c, index) => {
      const row = document.createElement('tr');
      row.className = 'consumer' + (c.running ? '' : ' idle');
      row.dataset.group = c.group;
      cell(row, c.service);
      cell(row, c.name);
      cell(row, c.group);
      cell(row, c.lag_events, 'number lag-events');
      cell(row, c.lag_seconds === null ? null : c.lag_seconds.toFixed(1), 'number lag-seconds');
      cell(row, c.dlq_events, 'number dlq-events');
      cell(row, sparkline(samples.map((s) => s.lag[c.group]), 'c' + (index % 8)));
      let state;
      if (c.error) {
        state = badge('error', 'bad');
        state.title = c.error;
      } else if (!c.running) {
        state = badge('not running', 'muted');
      } else if (c.dlq_events > 0) {
        state = badge('dead letters', 'warn');
      } else {
        state = badge(c.lag_events > 0 ? 'catching up' : 'up to date', c.lag_events > 0 ? 'warn' : '');
      }
      cell(row, state);
      return row;
    }));
  }

  // --- charts (SVG) ----------------------------------------------------------------------------

  const W = 600;
  const H = 160;
  const PAD = { left: 44, right: 8, top: 10, bottom: 20 };

  function svgElement(name, attributes, content) {
    const element = document.createElementNS(SVG, name);
    for (const key of Object.keys(attributes)) {
      element.setAttribute(key, attributes[key]);
    }
    if (content !== undefined) {
      element.textContent = content;
    }
    return element;
  }

  function clear(svg) {
    while (svg.firstChild) {
      svg.removeChild(svg.firstChild);
    }
  }

  function niceMax(value) {
    if (value <= 0) {
      return 1;
    }
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 5, 10]) {
      if (value <= step * power) {
        return step * power;
      }
    }
    return 10 * power;
  }

  // Grid lines and labels for a plot whose top is `max`, put beneath what is drawn already.
  function frame(svg, max, bottomLeft, bottomRight) {
    const plotH = H - PAD.top - PAD.bottom;
    const group = svgElement('g', {});
    for (const fraction of [0, 0.5, 1]) {
      const y = PAD.top + plotH * (1 - fraction);
      group.appendChild(svgElement('line', { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: 'axis' }));
      const value = max * fraction;
      group.appendChild(svgElement('text', { x: PAD.left - 6, y: y + 4, 'text-anchor': 'end', class: 'grid-label' },
        Number.isInteger(value) ? String(value) : value.toFixed(1)));
    }
    group.appendChild(svgElement('text', { x: PAD.left, y: H - 4, class: 'grid-label' }, bottomLeft));
    group.appendChild(svgElement('text', { x: W - PAD.right, y: H - 4, 'text-anchor': 'end', class: 'grid-label' }, bottomRight));
    svg.insertBefore(group, svg.firstChild);
  }

  function empty(svg, message) {
    svg.appendChild(svgElement('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, message));
  }

  // Bars of `values` (one per slot), labelled below by `labels` when given.
  function bars(svg, values, classes, labels) {
    const max = niceMax(Math.max.apply(null, values.concat([0])));
    const plotW = W - PAD.left - PAD.right;
    const plotH = H - PAD.top - PAD.bottom;
    const slot = plotW / Math.max(values.length, 1);
    values.forEach((value, i) => {
      const h = (value / max) * plotH;
      const bar = svgElement('rect', {
        x: (PAD.left + i * slot + slot * 0.1).toFixed(1),
        y: (PAD.top + plotH - h).toFixed(1),
        width: (slot * 0.8).toFixed(1),
        height: Math.max(h, value > 0 ? 1 : 0).toFixed(1),
        class: 'bar' + (classes ? ' ' + classes[i] : ''),
      });
      bar.appendChild(svgElement('title', {}, (labels ? labels[i] + ': ' : '') + value));
      svg.appendChild(bar);
    });
    return max;
  }

  // One polyline per series ({values, cls}) over the same slots; null values leave gaps.
  function lines(svg, series, slots) {
    const all = [];
    for (const s of series) {
      for (const v of s.values) {
        if (v !== null && v !== undefined) {
          all.push(v);
        }
      }
    }
    const max = niceMax(Math.max.apply(null, all.concat([0])));
    const plotW = W - PAD.left - PAD.right;
    const plotH = H - PAD.top - PAD.bottom;
    const step = plotW / Math.max(slots - 1, 1);
    for (const s of series) {
      const points = [];
      s.values.forEach((v, i) => {
        if (v !== null && v !== undefined) {
          points.push((PAD.left + i * step).toFixed(1) + ',' + (PAD.top + plotH * (1 - v / max)).toFixed(1));
        }
      });
      if (points.length === 1) {
        points.push(points[0]);
      }
      if (points.length) {
        svg.appendChild(svgElement('polyline', { points: points.join(' '), class: 'line ' + s.cls }));
      }
    }
    return max;
  }

  function sparkline(values, cls) {
    const svg = svgElement('svg', { viewBox: '0 0 120 24', class: 'spark', preserveAspectRatio: 'none' });
    const known = values.filter((v) => v !== null && v !== undefined);
    const max = niceMax(Math.max.apply(null, known.concat([0])));
    const step = 120 / Math.max(values.length - 1, 1);
    const points = [];
    values.forEach((v, i) => {
      if (v !== null && v !== undefined) {
        points.push((i * step).toFixed(1) + ',' + (22 - (v / max) * 20).toFixed(1));
      }
    });
    if (points.length === 1) {
      points.push('120,' + points[0].split(',')[1]);
    }
    if (points.length) {
      svg.appendChild(svgElement('polyline', { points: points.join(' '), class: 'line ' + cls }));
    }
    return svg;
  }

  function legend(id, entries) {
    const element = $(id);
    while (element.firstChild) {
      element.removeChild(element.firstChild);
    }
    for (const entry of entries) {
      const item = document.createElement('span');
      const swatch = document.createElement('span');
      swatch.className = 'swatch ' + entry.cls;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(entry.label));
      element.appendChild(item);
    }
  }

  function renderCommands(commands) {
    const svg = $('commands-chart');
    clear(svg);
    if (!commands) {
      empty(svg, 'the ledger could not be read');
      return;
    }
    const values = commands.seconds.map((s) => s.commands);
    const labels = commands.seconds.map((s) => new Date(s.at).toLocaleTimeString());
    const max = bars(svg, values, null, labels);
    frame(svg, max, '-' + commands.window_seconds + ' s', 'now');
  }

  function renderLagChart(consumers) {
    const svg = $('lag-chart');
    clear(svg);
    const running = consumers.filter((c) => c.running);
    if (!running.length) {
      empty(svg, consumers.length ? 'no consumer is running' : 'the broker could not be asked');
      legend('lag-legend', []);
      return;
    }
    const series = running.map((c) => ({
      values: samples.map((s) => s.lag[c.group]),
      cls: 'c' + (consumers.indexOf(c) % 8),
      label: c.name,
    }));
    const max = lines(svg, series, samples.length);
    frame(svg, max, samples.length + ' samples', 'now');
    legend('lag-legend', series);
  }

  function renderWithdrawals(withdrawals) {
    const svg = $('withdrawals-bars');
    clear(svg);
    const trend = $('withdrawals-chart');
    clear(trend);
    if (!withdrawals) {
      empty(svg, 'the ledger could not be read');
      empty(trend, 'the ledger could not be read');
      legend('withdrawals-legend', []);
      return;
    }
    const values = WITHDRAWAL_STATES.map((state) => withdrawals[state]);
    const max = bars(svg, values, WITHDRAWAL_STATES, WITHDRAWAL_STATES);
    const plotW = W - PAD.left - PAD.right;
    const slot = plotW / WITHDRAWAL_STATES.length;
    frame(svg, max, '', '');
    WITHDRAWAL_STATES.forEach((state, i) => {
      const label = svgElement('text', {
        x: (PAD.left + (i + 0.5) * slot).toFixed(1), y: H - 4, 'text-anchor': 'middle', class: 'grid-label withdrawal-state',
      }, state + ' ' + withdrawals[state]);
      svg.appendChild(label);
    });
    const series = OPEN_STATES.map((state, i) => ({
      values: samples.map((s) => (s.withdrawals ? s.withdrawals[state] : null)),
      cls: 'c' + i,
      label: state,
    }));
    const trendMax = lines(trend, series, samples.length);
    frame(trend, trendMax, samples.length + ' samples', 'now');
    legend('withdrawals-legend', series);
  }

  // --- start -----------------------------------------------------------------------------------

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token-input').value.trim().replace(/^Bearer\s+/i, '');
    if (!value) {
      showLogin('paste an access token first');
      return;
    }
    $('token-input').value = '';
    remember(value);
    setState('loading');
    refresh();
  });

  $('sign-out').addEventListener('click', () => {
    remember(null);
    samples.length = 0;
    showLogin('');
  });

  const initial = tokenFromFragment() || storedToken();
  if (initial) {
    remember(initial);
    setState('loading');
    $('status').textContent = 'loading…';
    refresh();
  } else {
    showLogin('');
  }
})();
