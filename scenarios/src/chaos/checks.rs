//! The invariants checked once the load has stopped and the pipeline has drained, against the
//! ledger (the source of truth), the read models (through query-api and `control replay
//! verify`), the broker (dead letters) and the payout provider.

use domain::WalletId;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use super::load::{Sent, User};

/// One invariant's verdict.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    /// What was looked at, e.g. "412 wallets".
    pub scope: String,
    /// Counterexamples; empty: it holds.
    pub violations: Vec<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn new(name: &'static str, scope: String, violations: Vec<String>) -> Self {
        Self {
            name,
            scope,
            violations,
        }
    }
}

/// One wallet as its ledger events tell it.
#[derive(sqlx::FromRow)]
struct WalletRow {
    id: Uuid,
    /// Deposits and credits less debits and withdrawals.
    movements: i64,
    /// The balance its last event recorded.
    recorded: Option<i64>,
    version: i64,
    /// The lowest balance any of its events recorded.
    lowest: Option<i64>,
    /// Reserved less released less withdrawn.
    held: i64,
}

/// Rows of a query returning one text column: each is a counterexample.
async fn rows(pool: &PgPool, sql: &str) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar::<_, String>(sql).fetch_all(pool).await?)
}

async fn count(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await?)
}

/// Money: every wallet's balance is the sum of its movements in the ledger, never below zero,
/// and the read model shows the same balance at the same version; deposits = balances +
/// withdrawals; no reservation left once every withdrawal ended.
pub async fn money(
    pool: &PgPool,
    http: &reqwest::Client,
    query_url: &str,
    users: &[User],
) -> anyhow::Result<Vec<Check>> {
    let wallets: Vec<WalletRow> = sqlx::query_as(
        "SELECT stream_id AS id,
                COALESCE(sum(CASE WHEN event_type IN ('FundsDeposited', 'WalletCredited') THEN amount
                                  WHEN event_type IN ('WalletDebited', 'FundsWithdrawn') THEN -amount END), 0)::bigint
                    AS movements,
                (array_agg(balance ORDER BY version DESC) FILTER (WHERE balance IS NOT NULL))[1] AS recorded,
                max(version) AS version,
                min(balance) AS lowest,
                COALESCE(sum(CASE event_type WHEN 'FundsReserved' THEN amount
                                  WHEN 'ReservationReleased' THEN -amount
                                  WHEN 'FundsWithdrawn' THEN -amount END), 0)::bigint AS held
         FROM (SELECT stream_id, event_type, version,
                      (payload->'amount'->>'minor')::bigint AS amount,
                      (payload->'balance'->>'minor')::bigint AS balance
               FROM events WHERE stream_type = 'wallet') w
         GROUP BY stream_id",
    )
    .fetch_all(pool)
    .await?;
    let mut sums = Vec::new();
    let mut negative = Vec::new();
    let mut reserved = Vec::new();
    let by_wallet: HashMap<Uuid, (i64, i64)> =
        wallets.iter().map(|w| (w.id, (w.movements, w.version))).collect();
    for WalletRow {
        id,
        movements,
        recorded,
        lowest,
        held,
        ..
    } in &wallets
    {
        if recorded.is_some_and(|r| r != *movements) {
            sums.push(format!(
                "wallet {id}: movements sum to {movements}, its last event says {}",
                recorded.unwrap_or_default()
            ));
        }
        if lowest.is_some_and(|l| l < 0) || *movements < 0 {
            negative.push(format!(
                "wallet {id}: lowest balance {lowest:?}, final {movements}"
            ));
        }
        if *held != 0 {
            reserved.push(format!("wallet {id}: {held} still reserved"));
        }
    }
    let mut read_model = Vec::new();
    let mut seen = 0;
    for user in users {
        let wallet = WalletId::for_user(domain::UserId::from_uuid(user.id)).as_uuid();
        let Some(&(movements, version)) = by_wallet.get(&wallet) else {
            continue;
        };
        seen += 1;
        let (status, view) = wallet_view(http, query_url, user).await?;
        let (balance, applied) = (view["balance"]["minor"].as_i64(), view["version"].as_i64());
        if balance != Some(movements) || applied != Some(version) {
            read_model.push(format!(
                "wallet {wallet}: ledger balance {movements} at version {version}, read model ({status}) {balance:?} at version {applied:?}"
            ));
        }
    }
    let conserved = rows(
        pool,
        "WITH t AS (SELECT event_type, sum((payload->'amount'->>'minor')::bigint) AS total FROM events
                    WHERE stream_type = 'wallet' GROUP BY event_type)
         SELECT format('deposits %s + credits %s - debits %s - withdrawn %s = %s, but the wallets hold %s in all',
                       d, c, b, w, d + c - b - w, held)
         FROM (SELECT COALESCE((SELECT total FROM t WHERE event_type = 'FundsDeposited'), 0) AS d,
                      COALESCE((SELECT total FROM t WHERE event_type = 'WalletCredited'), 0) AS c,
                      COALESCE((SELECT total FROM t WHERE event_type = 'WalletDebited'), 0) AS b,
                      COALESCE((SELECT total FROM t WHERE event_type = 'FundsWithdrawn'), 0) AS w,
                      COALESCE((SELECT sum(balance) FROM (
                          SELECT DISTINCT ON (stream_id) (payload->'balance'->>'minor')::bigint AS balance
                          FROM events WHERE stream_type = 'wallet' AND payload ? 'balance'
                          ORDER BY stream_id, version DESC) last), 0) AS held) s
         WHERE d + c - b - w <> held OR c <> b",
    )
    .await?;
    let n = wallets.len();
    Ok(vec![
        Check::new(
            "money: each wallet's balance = the sum of its ledger movements",
            format!("{n} wallets"),
            sums,
        ),
        Check::new("money: no balance below zero", format!("{n} wallets"), negative),
        Check::new(
            "money: deposits = balances + payouts (credits = debits)",
            "all wallets".into(),
            conserved,
        ),
        Check::new(
            "money: no funds left reserved after every withdrawal ended",
            format!("{n} wallets"),
            reserved,
        ),
        Check::new(
            "money: read model balance and applied version = ledger",
            format!("{seen} wallets via GET /payments/wallet"),
            read_model,
        ),
    ])
}

/// GET /payments/wallet as `user`: status and body. An unavailable answer (5xx: e.g. Redis not
/// back yet after a restart) is asked again, as a client would, for up to 5 s; the invariant is
/// about what the read model holds.
async fn wallet_view(
    http: &reqwest::Client,
    query_url: &str,
    user: &User,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut tries = 0;
    loop {
        let answer = http
            .get(format!("{query_url}/api/v1/payments/wallet"))
            .bearer_auth(&user.token)
            .send()
            .await?;
        let status = answer.status();
        tries += 1;
        if !status.is_server_error() || tries == 10 {
            return Ok((status, answer.json().await.unwrap_or(Value::Null)));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The sagas' promises, from the ledger.
pub async fn sagas(pool: &PgPool) -> anyhow::Result<Vec<Check>> {
    let accepted = count(
        pool,
        "SELECT count(*) FROM events WHERE event_type = 'ProposalAccepted'",
    )
    .await?;
    let one_contract = rows(
        pool,
        "SELECT format('proposal %s accepted, %s contracts', p.payload->>'proposal_id', count(c.global_position))
         FROM events p
         LEFT JOIN events c ON c.event_type = 'ContractInitiated' AND c.payload->>'proposal_id' = p.payload->>'proposal_id'
         WHERE p.event_type = 'ProposalAccepted'
           AND NOT EXISTS (SELECT 1 FROM events r WHERE r.stream_id = p.stream_id AND r.event_type = 'ProposalAcceptanceReverted')
         GROUP BY p.payload->>'proposal_id' HAVING count(c.global_position) <> 1
         UNION ALL
         SELECT format('contract %s for proposal %s, which is not accepted', c.stream_id, c.payload->>'proposal_id')
         FROM events c WHERE c.event_type = 'ContractInitiated' AND NOT EXISTS (
             SELECT 1 FROM events p WHERE p.event_type = 'ProposalAccepted' AND p.payload->>'proposal_id' = c.payload->>'proposal_id')",
    )
    .await?;
    let one_acceptance = rows(
        pool,
        "SELECT format('job %s: %s proposals accepted', payload->>'job_id', count(*))
         FROM events p WHERE event_type = 'ProposalAccepted'
           AND NOT EXISTS (SELECT 1 FROM events r WHERE r.stream_id = p.stream_id AND r.event_type = 'ProposalAcceptanceReverted')
         GROUP BY payload->>'job_id' HAVING count(*) > 1",
    )
    .await?;
    let milestones = count(
        pool,
        "SELECT count(*) FROM events WHERE event_type = 'MilestoneAccepted'",
    )
    .await?;
    let one_request = rows(
        pool,
        "SELECT format('milestone %s accepted %s times, %s payment requests', m.milestone, m.n, count(r.global_position))
         FROM (SELECT payload->>'milestone_id' AS milestone, count(*) AS n FROM events
               WHERE event_type = 'MilestoneAccepted' GROUP BY 1) m
         LEFT JOIN events r ON r.event_type = 'PaymentRequestCreated' AND r.payload->>'milestone_id' = m.milestone
         GROUP BY m.milestone, m.n HAVING count(r.global_position) <> 1 OR m.n <> 1",
    )
    .await?;
    let paid = count(
        pool,
        "SELECT count(*) FROM events WHERE event_type = 'PaymentRequestPaid'",
    )
    .await?;
    let paid_once = rows(
        pool,
        "SELECT format('payment request %s: paid %s, debited %s, credited %s, milestone marked paid %s', id,
                       count(*) FILTER (WHERE event_type = 'PaymentRequestPaid'),
                       count(*) FILTER (WHERE event_type = 'WalletDebited'),
                       count(*) FILTER (WHERE event_type = 'WalletCredited'),
                       count(*) FILTER (WHERE event_type = 'MilestonePaid'))
         FROM (SELECT COALESCE(payload->>'payment_request_id', stream_id::text) AS id, event_type FROM events
               WHERE event_type IN ('PaymentRequestPaid', 'WalletDebited', 'WalletCredited', 'MilestonePaid')) e
         GROUP BY id
         HAVING count(*) FILTER (WHERE event_type = 'PaymentRequestPaid') <> 1
             OR count(*) FILTER (WHERE event_type = 'WalletDebited') <> 1
             OR count(*) FILTER (WHERE event_type = 'WalletCredited') <> 1
             OR count(*) FILTER (WHERE event_type = 'MilestonePaid') <> 1",
    )
    .await?;
    let contracts = count(
        pool,
        "SELECT count(*) FROM events WHERE event_type = 'ContractInitiated'",
    )
    .await?;
    let completed = rows(
        pool,
        "SELECT format('contract %s: all %s milestones paid, not completed', c.stream_id, jsonb_array_length(c.payload->'milestones'))
         FROM events c
         WHERE c.event_type = 'ContractInitiated'
           AND jsonb_array_length(c.payload->'milestones') =
               (SELECT count(DISTINCT payload->>'milestone_id') FROM events m
                WHERE m.stream_id = c.stream_id AND m.event_type = 'MilestonePaid')
           AND NOT EXISTS (SELECT 1 FROM events d WHERE d.stream_id = c.stream_id AND d.event_type = 'ContractCompleted')",
    )
    .await?;
    Ok(vec![
        Check::new(
            "each accepted proposal has exactly one contract",
            format!("{accepted} acceptances"),
            one_contract,
        ),
        Check::new(
            "no job has two accepted proposals (double accepts)",
            format!("{accepted} acceptances"),
            one_acceptance,
        ),
        Check::new(
            "each accepted milestone has exactly one payment request",
            format!("{milestones} accepted milestones"),
            one_request,
        ),
        Check::new(
            "no payment request paid twice (paid = debited = credited = milestone paid, once)",
            format!("{paid} payments"),
            paid_once,
        ),
        Check::new(
            "every contract whose milestones are all paid is COMPLETED",
            format!("{contracts} contracts"),
            completed,
        ),
    ])
}

/// Withdrawals: every one ended, and the provider paid exactly the succeeded ones, once each,
/// the amount withdrawn.
pub async fn withdrawals(pool: &PgPool, provider: &payout_provider::Provider) -> anyhow::Result<Vec<Check>> {
    let all: Vec<(Uuid, Option<String>, i64, Option<i64>)> = sqlx::query_as(
        "SELECT r.stream_id,
                (SELECT event_type FROM events e WHERE e.stream_id = r.stream_id
                   AND e.event_type IN ('WithdrawalSucceeded', 'WithdrawalFailed', 'WithdrawalCancelled')
                 ORDER BY version DESC LIMIT 1),
                (r.payload->'amount'->>'minor')::bigint,
                (SELECT sum((payload->'amount'->>'minor')::bigint)::bigint FROM events w
                 WHERE w.event_type = 'FundsWithdrawn' AND w.payload->>'withdrawal_id' = r.stream_id::text)
         FROM events r WHERE r.event_type = 'WithdrawalRequested'",
    )
    .fetch_all(pool)
    .await?;
    let mut open = Vec::new();
    let mut paid = Vec::new();
    for (id, end, amount, withdrawn) in &all {
        let payout = provider.payout(*id);
        let provider_paid = payout
            .as_ref()
            .filter(|p| p.status == payout_provider::PayoutStatus::Paid)
            .map(|p| p.amount.minor);
        match end.as_deref() {
            None => open.push(format!("withdrawal {id}: no final status")),
            Some("WithdrawalSucceeded") => {
                if provider_paid != Some(*amount) || *withdrawn != Some(*amount) {
                    paid.push(format!(
                        "withdrawal {id} succeeded for {amount}: provider paid {provider_paid:?}, wallet withdrawn {withdrawn:?}"
                    ));
                }
            }
            Some(other) => {
                if provider_paid.is_some() || withdrawn.is_some() {
                    paid.push(format!(
                        "withdrawal {id} ended {other}: provider paid {provider_paid:?}, wallet withdrawn {withdrawn:?}"
                    ));
                }
            }
        }
    }
    let n = all.len();
    Ok(vec![
        Check::new("every withdrawal ended", format!("{n} withdrawals"), open),
        Check::new(
            "the provider paid exactly the succeeded withdrawals, each once, the amount withdrawn",
            format!("{n} withdrawals"),
            paid,
        ),
    ])
}

/// Streams: versions 1..n without a hole.
pub async fn streams(pool: &PgPool) -> anyhow::Result<Check> {
    let n = count(pool, "SELECT count(DISTINCT stream_id) FROM events").await?;
    let holes = rows(
        pool,
        "SELECT format('stream %s: %s events, last version %s', stream_id, count(*), max(version))
         FROM events GROUP BY stream_id HAVING count(*) <> max(version)",
    )
    .await?;
    Ok(Check::new(
        "every stream's versions are 1..n without a hole",
        format!("{n} streams"),
        holes,
    ))
}

/// Every command answered 2xx is in the ledger (its command record); none answered 4xx is (no
/// record, no event). Commands never answered, or answered 5xx to the end, may be either.
pub async fn commands(pool: &PgPool, sent: &[Sent]) -> anyhow::Result<(Check, Check)> {
    let keys: Vec<(Uuid, String, chrono::DateTime<chrono::Utc>, Option<i16>)> =
        sqlx::query_as("SELECT caller, key, created_at, status FROM idempotency_keys")
            .fetch_all(pool)
            .await?;
    let keys: HashMap<(Uuid, String), (chrono::DateTime<chrono::Utc>, Option<i16>)> = keys
        .into_iter()
        .map(|(caller, key, at, status)| ((caller, key), (at, status)))
        .collect();
    let recorded: HashSet<Uuid> = sqlx::query_scalar(
        "SELECT command_id FROM processed_commands UNION SELECT command_id FROM events WHERE command_id IS NOT NULL",
    )
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    let in_events: HashSet<Uuid> = sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT metadata->>'command_id' FROM events WHERE metadata ? 'command_id'",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .filter_map(|id| id.parse().ok())
    .collect();
    let (mut ok, mut refused) = (Vec::new(), Vec::new());
    let (mut n_ok, mut n_refused) = (0, 0);
    for s in sent {
        // Login reads; it is not a command.
        let Some(status) = s.status.filter(|_| s.route != "POST /users/login") else {
            continue;
        };
        if !(200..500).contains(&status) || status == 429 {
            continue;
        }
        let Some((first_used, stored)) = keys.get(&(s.caller, s.key.clone())) else {
            let list = if status < 300 { &mut ok } else { &mut refused };
            list.push(format!(
                "{} (key {}): answered {status}, key not kept",
                s.route, s.key
            ));
            continue;
        };
        let id = infra::http::idempotency::command_id(s.caller, &s.key, *first_used);
        if stored.map(|x| x as u16) != Some(status) {
            let list = if status < 300 { &mut ok } else { &mut refused };
            list.push(format!(
                "{} command {id}: the client saw {status}, the key kept {stored:?}",
                s.route
            ));
        }
        if status < 300 {
            n_ok += 1;
            if !recorded.contains(&id) {
                ok.push(format!(
                    "{} command {id}: answered {status}, not in the ledger",
                    s.route
                ));
            }
        } else {
            n_refused += 1;
            if recorded.contains(&id) || in_events.contains(&id) {
                refused.push(format!(
                    "{} command {id}: answered {status}, yet in the ledger",
                    s.route
                ));
            }
        }
    }
    Ok((
        Check::new(
            "every command answered 2xx is in the ledger",
            format!("{n_ok} commands"),
            ok,
        ),
        Check::new(
            "no command answered 4xx is in the ledger",
            format!("{n_refused} commands"),
            refused,
        ),
    ))
}
