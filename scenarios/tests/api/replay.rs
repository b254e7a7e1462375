//! Replay tooling against the real local stack (DESIGN §8, `control replay`): a corrupted read
//! model rebuilt answers exactly as before; a rebuild under a stream of commands misses and
//! doubles nothing while queries keep answering; `verify` finds a planted difference and passes
//! on a clean model; a rebuild makes no saga act.

use anyhow::{Context as _, ensure};
use control::{Cli, Outcome};
use infra::{cassandra, testing::TestEnv};
use reqwest::StatusCode;
use scenarios::harness::expect;
use serde_json::{Value, json};
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::world::{User, World};

/// Poll `probe` until it succeeds; its last error once `deadline` has passed.
pub(crate) async fn until<T, Fut>(deadline: Duration, mut probe: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: Future<Output = anyhow::Result<T>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(error) if started.elapsed() > deadline => {
                return Err(error.context(format!("still so after {deadline:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Run `control <args>` on `env`'s resources, in-process; how it ended and what it printed.
pub(crate) async fn control(env: &TestEnv, args: &[&str]) -> anyhow::Result<(Outcome, String)> {
    let c = &env.config;
    let key = c.control.key.as_ref().context("the test has a control key")?;
    let owned = [
        ("--pg-url", c.postgres.url.clone()),
        ("--kafka-brokers", c.kafka.brokers.clone()),
        ("--kafka-topic-prefix", c.kafka.topic_prefix.clone()),
        ("--cassandra-keyspace", c.cassandra.keyspace.clone()),
        ("--mongo-database", c.mongo.database.clone()),
        ("--redis-prefix", c.redis.prefix.clone()),
        (
            "--control-key",
            secrecy::ExposeSecret::expose_secret(key).to_owned(),
        ),
        ("--control-heartbeat-ms", c.control.heartbeat_ms.to_string()),
    ];
    let master_keys = c
        .postgres
        .master_keys
        .as_ref()
        .context("the test has master keys")?;
    let owned = owned.into_iter().chain([(
        "--master-keys",
        secrecy::ExposeSecret::expose_secret(master_keys).to_owned(),
    )]);
    let mut argv = vec!["control".to_owned()];
    for (flag, value) in owned {
        argv.extend([flag.to_owned(), value]);
    }
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let cli = <Cli as clap::Parser>::try_parse_from(argv)?;
    let mut out = Vec::new();
    let outcome = control::run(&cli, &mut out).await?;
    Ok((outcome, String::from_utf8(out)?))
}

/// A marketplace with something in every read model: a job with a proposal accepted into a
/// contract, a milestone paid for by a payment request, a deposit. Returns the reads that show
/// it: (who, path).
async fn marketplace(world: &World) -> anyhow::Result<Vec<(&User, String)>> {
    let job = world.job(&world.client).await?;
    let proposal = world.proposal(&job, &world.freelancer, 2).await?;
    world.proposal(&job, &world.other_freelancer, 1).await?;
    let (contract, milestones) = world.contract(&job, &proposal).await?;
    world.deposit(&world.client, 50_000).await?;
    world.payment_request(&contract, &milestones[0]).await?;
    let (client, freelancer) = (&world.client, &world.freelancer);
    Ok(vec![
        (client, format!("/api/v1/jobs/{job}")),
        (client, "/api/v1/jobs/me".into()),
        (client, format!("/api/v1/jobs/{job}/proposals")),
        (freelancer, format!("/api/v1/proposals/{proposal}")),
        (freelancer, "/api/v1/proposals/me".into()),
        (client, format!("/api/v1/contracts/{contract}")),
        (client, format!("/api/v1/contracts/{contract}/milestones")),
        (freelancer, "/api/v1/contracts/me".into()),
        (client, "/api/v1/payments/wallet".into()),
        (client, "/api/v1/payments/wallet/transactions".into()),
        (freelancer, "/api/v1/payments/requests/me".into()),
        (client, "/api/v1/users/me/profile".into()),
        (freelancer, "/api/v1/users/me/profile".into()),
    ])
}

/// Status and body of every read.
async fn answers(world: &World, reads: &[(&User, String)]) -> anyhow::Result<Vec<(u16, Value)>> {
    let mut answers = Vec::new();
    for (user, path) in reads {
        let response = world.platform.get(path, &user.token).await?;
        let status = response.status().as_u16();
        answers.push((status, response.json().await.unwrap_or(Value::Null)));
    }
    Ok(answers)
}

/// The answers once the read models have settled: all 200 and the same twice in a row.
async fn settled(world: &World, reads: &[(&User, String)]) -> anyhow::Result<Vec<(u16, Value)>> {
    until(Duration::from_secs(30), || async {
        let first = answers(world, reads).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = answers(world, reads).await?;
        ensure!(
            first.iter().all(|(s, _)| *s == 200),
            "not every read answers 200 yet: {first:?}"
        );
        ensure!(first == second, "still changing");
        Ok(first)
    })
    .await
}

/// Run CQL on the test's keyspace (`{ks}` in `cql` is replaced by it).
async fn cql(env: &TestEnv, cql: &str) -> anyhow::Result<()> {
    let session = cassandra::connect(&env.config.cassandra).await?;
    let statement = cql.replace("{ks}", &env.config.cassandra.keyspace);
    session.query_unpaged(statement, ()).await?;
    Ok(())
}

/// Delete and alter rows of every store of generation 0 behind the platform's back.
async fn corrupt(world: &World, reads: &[(&User, String)]) -> anyhow::Result<()> {
    let env = &world.platform.env;
    let id_of = |prefix: &str| {
        reads
            .iter()
            .find_map(|(_, p)| {
                p.strip_prefix(prefix)
                    .filter(|rest| !rest.contains('/') && *rest != "me")
            })
            .map(str::to_owned)
            .context("no such read")
    };
    let (proposal, contract) = (id_of("/api/v1/proposals/")?, id_of("/api/v1/contracts/")?);
    cql(
        env,
        &format!(
            "UPDATE {{ks}}.proposals_by_id SET cover_letter = 'tampered' WHERE proposal_id = {proposal}"
        ),
    )
    .await?;
    cql(
        env,
        &format!("DELETE FROM {{ks}}.contracts_by_id WHERE contract_id = {contract}"),
    )
    .await?;
    // MongoDB: every profile gone; Redis: every wallet gone.
    let db = infra::mongo::connect(&env.config.mongo).await?;
    db.collection::<mongodb::bson::Document>("users")
        .delete_many(mongodb::bson::doc! {})
        .await?;
    let mut redis = redis::Client::open(env.config.redis.url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}payments:wallet:*", env.config.redis.prefix))
        .query_async(&mut redis)
        .await?;
    for key in keys {
        let _: () = redis::cmd("DEL").arg(key).query_async(&mut redis).await?;
    }
    Ok(())
}

/// How many contracts and payment requests the sagas made, and the steps they recorded.
async fn saga_work(world: &World) -> anyhow::Result<(i64, i64)> {
    let pool = world.ledger.pool();
    let made: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type IN ('ContractInitiated', 'PaymentRequestCreated')",
    )
    .fetch_one(&pool)
    .await?;
    let steps: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_steps")
        .fetch_one(&pool)
        .await?;
    Ok((made, steps))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_read_model_rebuilt_answers_exactly_as_before() -> anyhow::Result<()> {
    let world = World::new().await?;
    let reads = marketplace(&world).await?;
    let before = settled(&world, &reads).await?;
    corrupt(&world, &reads).await?;
    let corrupted = answers(&world, &reads).await?;
    let broken = corrupted.iter().zip(&before).filter(|(a, b)| a != b).count();
    ensure!(
        broken >= 4,
        "the corruption must show in the answers ({broken} reads changed)"
    );

    let (outcome, output) = control(&world.platform.env, &["replay", "rebuild", "all"]).await?;
    ensure!(outcome == Outcome::Done, "rebuild failed: {outcome:?}\n{output}");
    for context in ["users", "jobs", "contracts", "payments"] {
        ensure!(
            output.contains(&format!("{context}: rebuilt g1")),
            "no rebuild of {context}:\n{output}"
        );
    }
    until(Duration::from_secs(10), || async {
        let after = answers(&world, &reads).await?;
        for ((after, before), (_, path)) in after.iter().zip(&before).zip(&reads) {
            ensure!(
                after == before,
                "{path} answers {after:?}, before the corruption {before:?}"
            );
        }
        Ok(())
    })
    .await?;
    // The corrupted generation is still there until dropped; dropping it changes no answer.
    let (outcome, output) = control(&world.platform.env, &["replay", "drop-old", "all"]).await?;
    ensure!(
        outcome == Outcome::Done && output.contains("jobs: dropped g0"),
        "{output}"
    );
    ensure!(
        answers(&world, &reads).await? == before,
        "dropping g0 changed an answer"
    );
    world.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_finds_a_planted_difference_and_passes_on_a_clean_model() -> anyhow::Result<()> {
    let world = World::new().await?;
    let reads = marketplace(&world).await?;
    settled(&world, &reads).await?;
    let env = &world.platform.env;
    let (outcome, output) = control(env, &["replay", "verify", "all"]).await?;
    ensure!(outcome == Outcome::Done, "a clean model must verify: {output}");
    for context in ["users", "jobs", "contracts", "payments"] {
        ensure!(
            output.contains(&format!("{context}: g0 equals the ledger")),
            "{output}"
        );
    }

    let proposal = reads
        .iter()
        .find_map(|(_, p)| p.strip_prefix("/api/v1/proposals/").filter(|r| *r != "me"))
        .context("a proposal")?;
    cql(
        env,
        &format!("UPDATE {{ks}}.proposals_by_id SET cover_letter = 'planted' WHERE proposal_id = {proposal}"),
    )
    .await?;
    let (outcome, output) = control(env, &["replay", "verify", "jobs"]).await?;
    ensure!(
        matches!(outcome, Outcome::Failed(_)),
        "a planted difference must fail verify: {output}"
    );
    ensure!(
        output.contains(&format!("changed proposals_by_id/{proposal}")) && output.contains("planted"),
        "verify must name the planted row: {output}"
    );
    // Other read models are untouched and still verify.
    let (outcome, output) = control(env, &["replay", "verify", "payments"]).await?;
    ensure!(outcome == Outcome::Done, "{output}");
    world.platform.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_while_commands_keep_arriving_misses_and_doubles_nothing() -> anyhow::Result<()> {
    let world = Arc::new(World::new().await?);
    let first = world.job(&world.client).await?;
    world.deposit(&world.client, 100).await?;
    let paths = [
        "/api/v1/jobs/me",
        "/api/v1/payments/wallet",
        "/api/v1/users/me/profile",
    ];
    for path in paths {
        until(Duration::from_secs(20), || async {
            expect::<Value>(
                world.platform.get(path, &world.client.token).await?,
                StatusCode::OK,
            )
            .await
        })
        .await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Writers: jobs posted and deposits made all along.
    let writer = tokio::spawn({
        let (world, stop) = (world.clone(), stop.clone());
        async move {
            let (mut jobs, mut deposited) = (vec![first], 100);
            while !stop.load(Ordering::Relaxed) {
                jobs.push(world.job(&world.client).await?);
                world.deposit(&world.client, 100).await?;
                deposited += 100;
                // A steady stream the debug build's projectors keep up with.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok((jobs, deposited))
        }
    });
    // Readers: every query must answer all along, whichever generation serves it.
    let (reads, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = tokio::spawn({
        let (world, stop, reads, failures) = (world.clone(), stop.clone(), reads.clone(), failures.clone());
        async move {
            let paths = [
                "/api/v1/jobs/me",
                "/api/v1/payments/wallet",
                "/api/v1/users/me/profile",
            ];
            while !stop.load(Ordering::Relaxed) {
                for path in paths {
                    let response = world.platform.get(path, &world.client.token).await?;
                    reads.fetch_add(1, Ordering::Relaxed);
                    if response.status() != StatusCode::OK {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("{path} answered {} during the rebuild", response.status());
                    }
                }
            }
            anyhow::Ok(())
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (outcome, output) = control(&world.platform.env, &["replay", "rebuild", "all"]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (jobs, deposited) = writer.await??;
    reader.await??;
    ensure!(outcome == Outcome::Done, "rebuild failed: {output}");
    ensure!(
        jobs.len() > 5,
        "too few commands during the rebuild: {}",
        jobs.len()
    );
    let (reads, failures) = (reads.load(Ordering::Relaxed), failures.load(Ordering::Relaxed));
    ensure!(
        failures == 0,
        "{failures} of {reads} queries failed during the rebuild"
    );
    ensure!(reads > 10, "too few queries during the rebuild: {reads}");

    // After the switch: every job once, the balance of every deposit.
    let posted: HashSet<String> = jobs.iter().cloned().collect();
    until(Duration::from_secs(60), || async {
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let path = match &token {
                Some(t) => format!("/api/v1/jobs/me?limit=100&page_token={t}"),
                None => "/api/v1/jobs/me?limit=100".to_owned(),
            };
            let page: Value = expect(
                world.platform.get(&path, &world.client.token).await?,
                StatusCode::OK,
            )
            .await?;
            for item in page["items"].as_array().context("items")? {
                listed.push(item["job_id"].as_str().context("job_id")?.to_owned());
            }
            match page["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        let unique: HashSet<String> = listed.iter().cloned().collect();
        ensure!(unique.len() == listed.len(), "a job is listed twice");
        ensure!(
            unique == posted,
            "listed {} jobs, posted {}",
            unique.len(),
            posted.len()
        );
        let wallet: Value = expect(
            world
                .platform
                .get("/api/v1/payments/wallet", &world.client.token)
                .await?,
            StatusCode::OK,
        )
        .await?;
        ensure!(
            wallet["balance"]["minor"] == json!(deposited),
            "balance {} after deposits of {deposited}",
            wallet["balance"]
        );
        Ok(())
    })
    .await?;
    let (outcome, output) = control(&world.platform.env, &["replay", "verify", "all"]).await?;
    ensure!(
        outcome == Outcome::Done,
        "the rebuilt models must verify: {output}"
    );
    match Arc::try_unwrap(world) {
        Ok(world) => world.platform.stop().await,
        Err(_) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_makes_no_saga_act() -> anyhow::Result<()> {
    let world = World::new().await?;
    let reads = marketplace(&world).await?;
    settled(&world, &reads).await?;
    let before = saga_work(&world).await?;
    ensure!(
        before.0 == 2,
        "one contract and one payment request made: {before:?}"
    );
    let (outcome, output) = control(&world.platform.env, &["replay", "rebuild", "all"]).await?;
    ensure!(outcome == Outcome::Done, "{output}");
    // Long enough for a saga to act on anything it was sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        saga_work(&world).await? == before,
        "a saga acted during the rebuild"
    );
    world.platform.stop().await
}
