//! The whole platform in one process, on an isolated slice of the local stack.

use anyhow::{Context, bail};
use infra::testing::TestEnv;
use reqwest::{Client, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::{
    future::Future,
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinHandle};

/// A running platform: command-api, query-api, projectors and sagas.
pub struct Platform {
    /// The isolated resources it runs on.
    pub env: TestEnv,
    /// Base URL of command-api, e.g. `http://127.0.0.1:41234`.
    pub command_url: String,
    /// Base URL of query-api.
    pub query_url: String,
    /// Base URL of the projectors' health and metrics endpoint.
    pub projectors_url: String,
    /// Base URL of the sagas service.
    pub sagas_url: String,
    /// HTTP client.
    pub http: Client,
    /// The simulated payout provider (in-process), when started with a withdrawal worker.
    pub provider: Option<payout_provider::Provider>,
    /// Base URL of the withdrawal worker's endpoint, when started with one.
    pub worker_url: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    /// The provider's server: it serves until aborted.
    provider_server: Option<JoinHandle<std::io::Result<()>>>,
}

impl Platform {
    /// Start every service on a fresh [`TestEnv`].
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Start every service on a fresh [`TestEnv`] whose configuration `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut infra::config::Config)) -> anyhow::Result<Self> {
        Self::start_services(adjust, None).await
    }

    /// [`Platform::start_with`], plus a withdrawal worker paying out through a simulated payout
    /// provider with `provider` settings (in-process, on a free port; see [`Platform::provider`]).
    pub async fn start_with_withdrawals(
        adjust: impl FnOnce(&mut infra::config::Config),
        provider: payout_provider::Settings,
    ) -> anyhow::Result<Self> {
        Self::start_services(adjust, Some(provider)).await
    }

    async fn start_services(
        adjust: impl FnOnce(&mut infra::config::Config),
        provider: Option<payout_provider::Settings>,
    ) -> anyhow::Result<Self> {
        let mut env = TestEnv::new().await?;
        adjust(&mut env.config);
        let mut tasks = Vec::new();
        let (provider, provider_server) = match provider {
            Some(settings) => {
                let provider = payout_provider::Provider::new(settings);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                env.config.withdrawals.provider_url = format!("http://{}", listener.local_addr()?);
                let server = tokio::spawn(provider.clone().serve(listener));
                (Some(provider), Some(server))
            }
            None => (None, None),
        };
        let (stop, stopped) = watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.changed().await;
            }
        };
        let command = command_api::startup::Application::build(env.config.clone())
            .await
            .context("command-api")?;
        let query = query_api::startup::Application::build(env.config.clone())
            .await
            .context("query-api")?;
        let projectors = projectors::runner::Projectors::build(env.config.clone())
            .await
            .context("projectors")?;
        let sagas = sagas::runner::Sagas::build(env.config.clone())
            .await
            .context("sagas")?;
        let sagas_url = format!("http://127.0.0.1:{}", sagas.port());
        let command_url = format!("http://127.0.0.1:{}", command.port());
        let query_url = format!("http://127.0.0.1:{}", query.port());
        let projectors_url = format!("http://127.0.0.1:{}", projectors.port());
        let mut worker_url = None;
        if provider.is_some() {
            env.config.withdrawals.worker_port = 0;
            let worker = workers::runner::WithdrawalWorker::build(env.config.clone())
                .await
                .context("withdrawal-worker")?;
            worker_url = Some(format!("http://127.0.0.1:{}", worker.port()));
            tasks.push(tokio::spawn(worker.run_until_stopped(until_stopped())));
        }
        tasks.extend([
            tokio::spawn(command.run_until_stopped(until_stopped())),
            tokio::spawn(query.run_until_stopped(until_stopped())),
            tokio::spawn(projectors.run_until_stopped(until_stopped())),
            tokio::spawn(sagas.run_until_stopped(until_stopped())),
        ]);
        Ok(Self {
            env,
            command_url,
            query_url,
            projectors_url,
            sagas_url,
            http: Client::builder().timeout(Duration::from_secs(30)).build()?,
            provider,
            worker_url,
            stop,
            tasks,
            provider_server,
        })
    }

    /// Stop every service gracefully and report any that failed.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await??;
        }
        if let Some(server) = self.provider_server {
            server.abort();
        }
        Ok(())
    }

    /// POST JSON to command-api, optionally with a bearer token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> anyhow::Result<Response> {
        let mut request = self.http.post(format!("{}{path}", self.command_url)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Ok(request.send().await?)
    }

    /// Send `method` to command-api's `path`, with an optional token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let mut request = self.http.request(method, format!("{}{path}", self.command_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        Ok(request.send().await?)
    }

    /// Register a user of `role` (`clients` or `freelancers`) and log in; its id and token.
    pub async fn signed_up(&self, role: &str, email: &str, name: &str) -> anyhow::Result<(String, String)> {
        let body = serde_json::json!({"email": email, "password": "correct horse battery", "name": name});
        let created: Value = expect(
            self.post(&format!("/api/v1/users/{role}/register"), None, &body)
                .await?,
            StatusCode::CREATED,
        )
        .await?;
        let login = serde_json::json!({"email": email, "password": "correct horse battery"});
        let token: Value = expect(
            self.post("/api/v1/users/login", None, &login).await?,
            StatusCode::OK,
        )
        .await?;
        Ok((
            created["id"].as_str().context("no id")?.to_owned(),
            token["access_token"].as_str().context("no token")?.to_owned(),
        ))
    }

    /// GET from query-api with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Response> {
        Ok(self
            .http
            .get(format!("{}{path}", self.query_url))
            .bearer_auth(token)
            .send()
            .await?)
    }

    /// Register a client and log in; its id and access token.
    pub async fn signed_up_client(&self, email: &str, name: &str) -> anyhow::Result<(String, String)> {
        self.signed_up("clients", email, name).await
    }
}

/// The JSON body of `response`, which must have `status`.
pub async fn expect<T: DeserializeOwned>(response: Response, status: StatusCode) -> anyhow::Result<T> {
    let actual = response.status();
    let text = response.text().await?;
    if actual != status {
        bail!("expected {status}, got {actual}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))
}

/// Poll `probe` until it yields a value or `deadline` passes (no fixed sleeps in tests).
pub async fn eventually<T, F, Fut>(deadline: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if started.elapsed() > deadline {
            bail!("not reached within {deadline:?}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}
