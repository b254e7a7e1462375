//! The emulator through the project's CQL driver (scylla): starts the binary on a free loopback
//! port, then runs DDL, prepared writes, a batch and reads (literals and markers), from two
//! sessions in two keyspaces.

use std::{
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use scylla::{
    client::{session::Session, session_builder::SessionBuilder},
    statement::batch::Batch,
};

/// The emulator process, killed on drop.
struct Emulator {
    child: Child,
    addr: String,
}

impl Emulator {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_cql-emulator"))
            .env("WORKUP_CQL_LISTEN", &addr)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let emulator = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&emulator.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the emulator is not listening on {}",
                emulator.addr
            );
            thread::sleep(Duration::from_millis(50));
        }
        emulator
    }

    async fn session(&self) -> Session {
        SessionBuilder::new()
            .known_node(&self.addr)
            // system.peers is empty: there is no schema agreement to wait for.
            .auto_await_schema_agreement(false)
            .build()
            .await
            .unwrap()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Job = (String, i32, String);

async fn jobs(session: &Session, cql: &str, owner: &str) -> Vec<Job> {
    session
        .query_unpaged(cql, (owner,))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<Job>()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn job(owner: &str, seq: i32, title: &str) -> Job {
    (owner.to_owned(), seq, title.to_owned())
}

#[tokio::test]
async fn scylla_driver_round_trip() {
    let emulator = Emulator::start();
    let admin = emulator.session().await;
    for keyspace in ["ks_a", "ks_b"] {
        admin
            .query_unpaged(
                format!(
                    "CREATE KEYSPACE {keyspace} WITH replication = \
                     {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
                ),
                &[],
            )
            .await
            .unwrap();
        admin
            .query_unpaged(
                format!(
                    "CREATE TABLE {keyspace}.jobs (owner text, seq int, title text, \
                     PRIMARY KEY (owner, seq))"
                ),
                &[],
            )
            .await
            .unwrap();
    }

    let insert = admin
        .prepare("INSERT INTO ks_a.jobs (owner, seq, title) VALUES (?, ?, ?)")
        .await
        .unwrap();
    for seq in [2, 0, 1] {
        admin
            .execute_unpaged(&insert, ("alice", seq, format!("a{seq}")))
            .await
            .unwrap();
    }
    let mut batch = Batch::default();
    batch.append_statement(insert.clone());
    batch.append_statement("INSERT INTO ks_b.jobs (owner, seq, title) VALUES ('alice', 7, 'b7')");
    admin.batch(&batch, (("bob", 1, "a-bob"), ())).await.unwrap();

    let qualified = "SELECT owner, seq, title FROM ks_a.jobs WHERE owner = ?";
    assert_eq!(
        jobs(&admin, qualified, "alice").await,
        [
            job("alice", 0, "a0"),
            job("alice", 1, "a1"),
            job("alice", 2, "a2")
        ]
    );
    assert_eq!(jobs(&admin, qualified, "bob").await, [job("bob", 1, "a-bob")]);
    assert_eq!(jobs(&admin, qualified, "nobody").await, []);

    // Literals in a prepared statement's WHERE are no bind variables (the driver's own
    // `system.local` query has one): none, and one beside a marker.
    let literal = admin
        .prepare("SELECT owner, seq, title FROM ks_a.jobs WHERE owner = 'alice'")
        .await
        .unwrap();
    assert_eq!(literal.get_variable_col_specs().len(), 0);
    let rows = admin
        .execute_unpaged(&literal, ())
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(rows.rows_num(), 3);
    let mixed = admin
        .prepare("SELECT owner, seq, title FROM ks_a.jobs WHERE owner = 'alice' AND seq = ? LIMIT 1")
        .await
        .unwrap();
    assert_eq!(mixed.get_variable_col_specs().len(), 1);
    let rows = admin
        .execute_unpaged(&mixed, (1,))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(
        rows.rows::<Job>()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
        [job("alice", 1, "a1")]
    );

    // USE is per connection: two sessions, two keyspaces, the same unqualified statement.
    let a = emulator.session().await;
    a.use_keyspace("ks_a", false).await.unwrap();
    let b = emulator.session().await;
    b.use_keyspace("ks_b", false).await.unwrap();
    let unqualified = "SELECT owner, seq, title FROM jobs WHERE owner = ?";
    for _ in 0..3 {
        assert_eq!(jobs(&a, unqualified, "alice").await.len(), 3);
        assert_eq!(jobs(&b, unqualified, "alice").await, [job("alice", 7, "b7")]);
    }

    // A statement that makes the library panic is an error for that request only.
    let counter = admin
        .query_unpaged("CREATE TABLE ks_a.counts (k text PRIMARY KEY, n counter)", &[])
        .await;
    assert!(counter.is_err(), "counters are not supported by the emulator");
    assert_eq!(jobs(&admin, qualified, "bob").await, [job("bob", 1, "a-bob")]);
}
