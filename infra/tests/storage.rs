//! Integration tests of read-model storage targets ([`infra::read_models::storage`]) against the
//! real local stack (CQL emulator, MongoDB-wire server, Redis): `bash scripts/infra.sh up` first.
//! Rows are written through the read models' own APIs into generation 0 (the test's keyspace,
//! database and prefix) and generation 1 (dedicated to one read model), then dumped, compared
//! and dropped.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use domain::{BoundedContext, Currency, Money, Role};
use infra::{
    cassandra,
    config::Config,
    mongo,
    read_models::{
        contracts::{Applying, ContractsReadModel, NewContract, NewMilestone},
        generation::Target,
        jobs::{self, JobChange, JobContent, JobStore},
        payments::{
            NewTransaction, PaymentRequestStatusView, PaymentRequestView, Payments, TransactionKind,
            WalletChange, WithdrawalChange,
        },
        storage::{Difference, Dump, Storage, diff, tables},
        users::{NewUser, UserProfiles},
    },
    redis::Cache,
    testing::TestEnv,
};
use scylla::client::session::Session;
use std::{collections::BTreeSet, sync::Arc};
use uuid::Uuid;

/// The test's stack slice and handles on it.
struct Fixture {
    config: Config,
    storage: Storage,
    session: Arc<Session>,
}

impl Fixture {
    async fn new() -> anyhow::Result<Self> {
        let env = TestEnv::new().await?;
        let storage = Storage::connect(&env.config).await?;
        let session = cassandra::connect(&env.config.cassandra).await?;
        Ok(Self {
            config: env.config,
            storage,
            session,
        })
    }

    /// `target`'s storage created, and the configuration pointing at it.
    async fn create(&self, target: Target) -> anyhow::Result<Config> {
        target.open(&self.session, &self.config).await?;
        Ok(target.config(&self.config))
    }

    async fn jobs(&self, target: Target) -> anyhow::Result<JobStore> {
        let at = self.create(target).await?;
        Ok(JobStore::new(self.session.clone(), &at.cassandra.keyspace).await?)
    }

    async fn payments(&self, target: Target) -> anyhow::Result<Payments> {
        let at = self.create(target).await?;
        Ok(Payments::new(self.session.clone(), &at.cassandra.keyspace, &at.redis).await?)
    }

    async fn dump(&self, target: Target) -> anyhow::Result<Dump> {
        Ok(self.storage.dump(target, &self.config).await?)
    }

    async fn drop(&self, target: Target) -> anyhow::Result<()> {
        Ok(self.storage.drop(target, &self.config).await?)
    }

    /// The Redis keys under `prefix` (a SCAN, as the module does).
    async fn redis_keys(&self, prefix: &str) -> anyhow::Result<BTreeSet<String>> {
        let client = redis::Client::open(self.config.redis.url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let mut keys = BTreeSet::new();
        let mut cursor = 0_u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .query_async(&mut connection)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 10, minute, 0)
        .single()
        .expect("a valid time")
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::Usd)
}

fn content(title: &str, budget: i64) -> JobContent {
    JobContent {
        title: title.to_owned(),
        description: format!("{title} wanted"),
        budget: usd(budget),
        skills: vec!["rust".to_owned()],
    }
}

fn posted(client_id: Uuid, title: &str, minute: u32) -> JobChange {
    JobChange::Posted {
        client_id,
        content: content(title, 50_000),
        posted_at: at(minute),
    }
}

fn deposit(wallet_id: Uuid, owner: Option<Uuid>, version: i64, balance: i64) -> WalletChange {
    WalletChange {
        wallet_id,
        version,
        at: at(u32::try_from(version).expect("a small version")),
        currency: Currency::Usd,
        opened_by: owner,
        balance: Some(balance),
        reserved: Some(0),
        transaction: Some(NewTransaction {
            kind: TransactionKind::Deposit,
            amount: usd(10_000),
            reference_id: None,
        }),
    }
}

fn payment_request(client_id: Uuid, freelancer_id: Uuid) -> PaymentRequestView {
    PaymentRequestView {
        payment_request_id: Uuid::new_v4(),
        contract_id: Uuid::new_v4(),
        milestone_id: Uuid::new_v4(),
        client_id,
        freelancer_id,
        amount: usd(25_000),
        status: PaymentRequestStatusView::Pending,
        due_at: at(40),
        created_at: at(5),
        paid_at: None,
        expired_at: None,
        cancelled_at: None,
        cancel_reason: None,
        version: 1,
    }
}

/// The kind of a difference and its key, for comparisons.
fn kinds(differences: &[Difference]) -> Vec<(&'static str, String)> {
    differences
        .iter()
        .map(|d| {
            let kind = match d {
                Difference::Missing { .. } => "missing",
                Difference::Unexpected { .. } => "unexpected",
                Difference::Changed { .. } => "changed",
            };
            (kind, d.key().to_owned())
        })
        .collect()
}

/// The keys of `dump` that mention `id`.
fn keys_with(dump: &Dump, id: Uuid) -> Vec<String> {
    let id = id.to_string();
    dump.iter()
        .filter(|(k, _)| k.contains(&id))
        .map(|(k, _)| k.to_owned())
        .collect()
}

#[tokio::test]
async fn diff_of_two_generations_reports_missing_changed_and_unexpected_rows() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let (jobs0, jobs1) = (
        Target::generation(BoundedContext::Jobs, 0),
        Target::generation(BoundedContext::Jobs, 1),
    );
    let (pay0, pay1) = (
        Target::generation(BoundedContext::Payments, 0),
        Target::generation(BoundedContext::Payments, 1),
    );
    let (g0, g1) = (f.jobs(jobs0).await?, f.jobs(jobs1).await?);
    let (p0, p1) = (f.payments(pay0).await?, f.payments(pay1).await?);

    // Arrange: the same job, wallet and payment request in both generations, and a cached job
    // (not part of the model) in generation 0.
    let client = Uuid::new_v4();
    let freelancer = Uuid::new_v4();
    let job_a = Uuid::new_v4();
    for store in [&g0, &g1] {
        store.apply_job(job_a, 1, posted(client, "Compiler", 1)).await?;
    }
    let cache = Cache::connect(&f.config.redis).await?;
    let view = g0.get(job_a).await?.expect("job a is projected");
    assert!(cache.put_versioned(&jobs::cache_key(job_a), 1, &view).await?);
    let wallet = Uuid::new_v4();
    let request = payment_request(client, freelancer);
    for store in [&p0, &p1] {
        assert!(
            store
                .apply_wallet(&deposit(wallet, Some(client), 1, 10_000))
                .await?
        );
        assert!(store.create_payment_request(&request).await?);
    }

    // Act + assert: equal content dumps alike, whatever the keyspace and prefix.
    let (j0, j1) = (f.dump(jobs0).await?, f.dump(jobs1).await?);
    assert!(diff(&j0, &j1).is_empty(), "{:?}", diff(&j0, &j1));
    assert!(j0.get(&format!("jobs_by_id/{job_a}")).is_some(), "{j0:?}");
    assert!(j0.get(&format!("jobs_applied/{job_a}")).is_some(), "{j0:?}");
    assert!(
        j0.iter().any(|(k, _)| k.starts_with("job_search/rust/")),
        "{j0:?}"
    );
    assert!(
        j0.iter().all(|(k, _)| !k.starts_with("redis/")),
        "the cache is no part of the model: {j0:?}"
    );
    let (d0, d1) = (f.dump(pay0).await?, f.dump(pay1).await?);
    assert!(diff(&d0, &d1).is_empty(), "{:?}", diff(&d0, &d1));
    assert!(
        d0.get(&format!("redis/payments:wallet:{wallet}")).is_some(),
        "{d0:?}"
    );
    assert!(
        d0.get(&format!("redis/payments:wallet:{wallet}:transactions"))
            .is_some_and(|v| v.starts_with("zset [[")),
        "{d0:?}"
    );
    assert_eq!(keys_with(&d0, request.payment_request_id).len(), 3, "{d0:?}");

    // Arrange: job b only in generation 0, job a edited only in generation 1.
    let job_b = Uuid::new_v4();
    g0.apply_job(job_b, 1, posted(client, "Database", 2)).await?;
    let edit = JobChange::Updated {
        content: content("Compiler", 75_000),
        updated_at: at(3),
    };
    g1.apply_job(job_a, 2, edit).await?;
    // A second request only in generation 0, a deposit and a withdrawal only in generation 1.
    let request_b = payment_request(client, freelancer);
    assert!(p0.create_payment_request(&request_b).await?);
    assert!(p1.apply_wallet(&deposit(wallet, None, 2, 20_000)).await?);
    let withdrawal = Uuid::new_v4();
    let requested = WithdrawalChange::Requested {
        wallet_id: wallet,
        owner_id: client,
        amount: usd(5_000),
        at: at(4),
        scheduled_for: None,
    };
    assert!(p1.apply_withdrawal(withdrawal, 1, &requested).await?);

    // Act
    let (j0, j1) = (f.dump(jobs0).await?, f.dump(jobs1).await?);
    let (d0, d1) = (f.dump(pay0).await?, f.dump(pay1).await?);
    let job_differences = diff(&j0, &j1);
    let payment_differences = diff(&d0, &d1);

    // Assert: every row of job b is missing, job a's rows changed, its keyword rows did not
    // (same words).
    let mut expected: Vec<(&str, String)> = keys_with(&j0, job_b)
        .into_iter()
        .map(|k| ("missing", k))
        .collect();
    assert!(expected.len() >= 4, "job b's rows: {expected:?}");
    let rows_of_a = keys_with(&j0, job_a);
    let changed_a: Vec<String> = rows_of_a
        .iter()
        .filter(|k| !k.starts_with("job_search/"))
        .cloned()
        .collect();
    assert_eq!(
        changed_a.len(),
        3,
        "jobs_by_id, jobs_by_client, jobs_applied: {rows_of_a:?}"
    );
    expected.extend(changed_a.into_iter().map(|k| ("changed", k)));
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(kinds(&job_differences), expected);

    let mut expected: Vec<(&str, String)> = keys_with(&d0, request_b.payment_request_id)
        .into_iter()
        .map(|k| ("missing", k))
        .collect();
    assert_eq!(expected.len(), 3, "{d0:?}");
    expected.extend([
        ("changed", format!("redis/payments:wallet:{wallet}")),
        ("changed", format!("redis/payments:wallet:{wallet}:transactions")),
        ("unexpected", format!("redis/payments:withdrawal:{withdrawal}")),
    ]);
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(kinds(&payment_differences), expected);

    // Each difference reads as one line naming the key.
    for difference in job_differences.iter().chain(&payment_differences) {
        let line = difference.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(difference.key()), "{line}");
    }
    let missing_request = payment_differences
        .iter()
        .find(|d| d.key() == format!("payment_requests_by_id/{}", request_b.payment_request_id))
        .expect("the missing request");
    assert!(
        missing_request
            .to_string()
            .starts_with("missing payment_requests_by_id/")
    );
    Ok(())
}

#[tokio::test]
async fn dropping_a_read_model_removes_only_its_own_storage() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let (jobs0, jobs1) = (
        Target::generation(BoundedContext::Jobs, 0),
        Target::generation(BoundedContext::Jobs, 1),
    );
    let (pay0, pay1) = (
        Target::generation(BoundedContext::Payments, 0),
        Target::generation(BoundedContext::Payments, 1),
    );
    let client = Uuid::new_v4();
    let job = Uuid::new_v4();
    let wallet = Uuid::new_v4();
    let request = payment_request(client, Uuid::new_v4());
    for (jobs_target, payments_target) in [(jobs0, pay0), (jobs1, pay1)] {
        let store = f.jobs(jobs_target).await?;
        store.apply_job(job, 1, posted(client, "Compiler", 1)).await?;
        let cache = Cache::connect(&jobs_target.config(&f.config).redis).await?;
        let view = store.get(job).await?.expect("the job is projected");
        assert!(cache.put_versioned(&jobs::cache_key(job), 1, &view).await?);
        let payments = f.payments(payments_target).await?;
        assert!(
            payments
                .apply_wallet(&deposit(wallet, Some(client), 1, 10_000))
                .await?
        );
        assert!(payments.create_payment_request(&request).await?);
    }
    let jobs0_before = f.dump(jobs0).await?;
    let pay1_before = f.dump(pay1).await?;
    assert!(
        jobs0_before.len() >= 4 && pay1_before.len() == 5,
        "{jobs0_before:?} {pay1_before:?}"
    );
    let cache0 = Cache::connect(&f.config.redis).await?;
    let cache_key = jobs::cache_key(job);

    // Act: drop payments in the shared generation 0.
    f.drop(pay0).await?;

    // Assert: payments are gone from generation 0; the jobs rows and cache there, and payments
    // generation 1 (whose prefix starts like generation 0's), are intact.
    assert!(f.dump(pay0).await?.is_empty());
    assert!(
        f.redis_keys(&format!("{}payments:", f.config.redis.prefix))
            .await?
            .is_empty()
    );
    assert_eq!(f.dump(jobs0).await?, jobs0_before);
    assert!(
        cache0
            .get_versioned::<serde_json::Value>(&cache_key)
            .await?
            .is_some()
    );
    assert_eq!(f.dump(pay1).await?, pay1_before);

    // Act + assert: dropping a dedicated generation leaves nothing in it, and nothing else moves.
    f.drop(jobs1).await?;
    assert!(f.dump(jobs1).await?.is_empty());
    assert!(
        f.redis_keys(&jobs1.config(&f.config).redis.prefix)
            .await?
            .is_empty()
    );
    f.drop(pay1).await?;
    assert!(f.dump(pay1).await?.is_empty());
    assert!(
        f.redis_keys(&pay1.config(&f.config).redis.prefix)
            .await?
            .is_empty()
    );
    assert_eq!(f.dump(jobs0).await?, jobs0_before);

    // Dropping jobs in generation 0 takes its cache entries with it; dropping twice is fine.
    f.drop(jobs0).await?;
    f.drop(jobs0).await?;
    assert!(f.dump(jobs0).await?.is_empty());
    assert!(
        cache0
            .get_versioned::<serde_json::Value>(&cache_key)
            .await?
            .is_none()
    );
    assert!(f.redis_keys(&f.config.redis.prefix).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn users_documents_dump_compare_and_drop_per_generation() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let (users0, users1) = (
        Target::generation(BoundedContext::Users, 0),
        Target::generation(BoundedContext::Users, 1),
    );
    let profiles0 = UserProfiles::new(&mongo::connect(&f.create(users0).await?.mongo).await?);
    let profiles1 = UserProfiles::new(&mongo::connect(&f.create(users1).await?.mongo).await?);
    let user = |name: &str| NewUser {
        id: Uuid::new_v4(),
        role: Role::Freelancer,
        email: format!("{name}@example.com"),
        name: name.to_owned(),
        registered_at: at(1),
    };
    let (ada, bob) = (user("ada"), user("bob"));
    for profiles in [&profiles0, &profiles1] {
        profiles.register(&ada, 1).await?;
    }
    profiles1.register(&bob, 1).await?;
    profiles1
        .update_profile(ada.id, 2, "Ada", "Compilers", "")
        .await?;

    let (u0, u1) = (f.dump(users0).await?, f.dump(users1).await?);
    let mut expected = vec![
        ("changed", format!("users/{}", ada.id)),
        ("unexpected", format!("users/{}", bob.id)),
    ];
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(kinds(&diff(&u0, &u1)), expected);
    let document = u0.get(&format!("users/{}", ada.id)).expect("ada's document");
    assert!(document.starts_with(r#"{"_id":""#), "keys sorted: {document}");
    assert!(
        document.contains(r#""registered_at":{"$date":"2026-03-01T10:01:00Z"}"#),
        "{document}"
    );

    f.drop(users0).await?;
    assert!(f.dump(users0).await?.is_empty());
    assert_eq!(f.dump(users1).await?, u1);
    f.drop(users1).await?;
    assert!(f.dump(users1).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn the_table_catalogue_matches_each_read_models_schema() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    for context in [
        BoundedContext::Jobs,
        BoundedContext::Contracts,
        BoundedContext::Payments,
    ] {
        let target = Target::generation(context, 2);
        let keyspace = f.create(target).await?.cassandra.keyspace;
        // The emulator lists tables, not their columns (`system_schema.columns` is empty there).
        let created: BTreeSet<String> = f
            .session
            .query_unpaged(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
                (keyspace.as_str(),),
            )
            .await?
            .into_rows_result()?
            .rows::<(String,)>()?
            .map(|row| row.map(|(name,)| name))
            .collect::<Result<_, _>>()?;
        let listed: BTreeSet<String> = tables(context).iter().map(|t| t.name.to_owned()).collect();
        assert_eq!(created, listed, "{}", context.name());
        for table in tables(context) {
            // Every key column exists (the server refuses an unknown column).
            let columns = table.key.join(", ");
            f.session
                .query_unpaged(
                    format!("SELECT {columns} FROM {keyspace}.{} LIMIT 1", table.name),
                    (),
                )
                .await?;
        }
    }

    // A contract with a milestone dumps its date, int and timestamp columns readably.
    let contracts0 = Target::generation(BoundedContext::Contracts, 0);
    let keyspace = f.create(contracts0).await?.cassandra.keyspace;
    let model = ContractsReadModel::new(f.session.clone(), &keyspace).await?;
    let contract = NewContract {
        contract_id: Uuid::new_v4(),
        proposal_id: Uuid::new_v4(),
        job_id: Uuid::new_v4(),
        client_id: Uuid::new_v4(),
        freelancer_id: Uuid::new_v4(),
        initiated_at: at(7),
        milestones: vec![NewMilestone {
            milestone_id: Uuid::new_v4(),
            title: "Parser".to_owned(),
            amount: usd(30_000),
            due_on: NaiveDate::from_ymd_opt(2026, 4, 1).expect("a date"),
        }],
    };
    let applying = Applying {
        stream_id: contract.contract_id,
        version: 1,
    };
    assert!(model.initiate(applying, &contract).await?);
    let dump = f.dump(contracts0).await?;
    assert_eq!(
        dump.len(),
        5,
        "by id, by client, by freelancer, milestone, applied: {dump:?}"
    );
    let milestone = dump
        .get(&format!(
            "contract_milestones/{}/{}",
            contract.contract_id, contract.milestones[0].milestone_id
        ))
        .expect("the milestone row");
    assert!(milestone.contains(r#""due_on":"2026-04-01""#), "{milestone}");
    assert!(milestone.contains(r#""position":0"#), "{milestone}");
    assert!(
        milestone.contains(r#""updated_at":"2026-03-01T10:07:00.000Z""#),
        "{milestone}"
    );
    f.drop(contracts0).await?;
    assert!(f.dump(contracts0).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn dumps_and_drops_read_tables_longer_than_a_page() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let jobs1 = Target::generation(BoundedContext::Jobs, 1);
    let keyspace = f.create(jobs1).await?.cassandra.keyspace;
    // Many partitions (applied versions) and one long partition (a keyword), each past the
    // dump's page of 500 rows.
    let applied = f
        .session
        .prepare(format!(
            "INSERT INTO {keyspace}.jobs_applied (stream_id, version) VALUES (?, ?)"
        ))
        .await?;
    let keyword = f
        .session
        .prepare(format!(
            "INSERT INTO {keyspace}.job_search (word, rank, job_id) VALUES (?, ?, ?)"
        ))
        .await?;
    for i in 0..1_200_i64 {
        f.session.execute_unpaged(&applied, (Uuid::new_v4(), i)).await?;
    }
    for i in 0..700_i64 {
        f.session
            .execute_unpaged(&keyword, ("rust", i, Uuid::new_v4().to_string()))
            .await?;
    }

    let dump = f.dump(jobs1).await?;
    let count = |table: &str| dump.iter().filter(|(k, _)| k.starts_with(table)).count();
    assert_eq!(count("jobs_applied/"), 1_200);
    assert_eq!(count("job_search/rust/"), 700);
    assert_eq!(dump.len(), 1_900);

    f.drop(jobs1).await?;
    assert!(f.dump(jobs1).await?.is_empty());
    Ok(())
}
