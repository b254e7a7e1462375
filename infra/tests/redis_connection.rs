//! The platform's Redis connection ([`infra::redis::RedisConnection`]) against the real local
//! Redis: a connection the server drops, as a Redis restart drops every client's, costs no
//! failed command. The server drops it here with `CLIENT KILL`, which leaves the shared Redis
//! running for the other tests.

use infra::{config::Config, redis::RedisConnection};
use redis::aio::{ConnectionLike, ConnectionManager};
use uuid::Uuid;

/// The id the server gave `connection`'s current connection.
async fn client_id(connection: &mut impl ConnectionLike) -> redis::RedisResult<i64> {
    redis::cmd("CLIENT").arg("ID").query_async(connection).await
}

/// Have the server close client `id`'s connection, from a connection of its own.
async fn kill(url: &str, id: i64) -> anyhow::Result<()> {
    let mut admin = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await?;
    anyhow::ensure!(killed == 1, "CLIENT KILL ID {id} closed {killed} connections");
    Ok(())
}

#[tokio::test]
async fn a_command_on_a_connection_the_server_dropped_is_sent_again_on_a_new_one() -> anyhow::Result<()> {
    let config = Config::local().redis;
    let url = config.url;
    let key = format!("{}redis-connection-test-{}", config.prefix, Uuid::new_v4());

    // What the crate's connection manager alone does: the first command after the drop fails.
    let mut bare = ConnectionManager::new(redis::Client::open(url.as_str())?).await?;
    let id = client_id(&mut bare).await?;
    kill(&url, id).await?;
    let first: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&key).query_async(&mut bare).await;
    assert!(
        first.is_err(),
        "the bare connection manager answered the first command after a drop: {first:?} \
         (if the crate now retries by itself, RedisConnection may no longer be needed)"
    );

    // The platform's connection: every command succeeds, on a new connection after the drop.
    let mut connection = RedisConnection::open(&url).await?;
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("kept")
        .query_async(&mut connection)
        .await?;
    let before = client_id(&mut connection).await?;
    kill(&url, before).await?;
    let value: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut connection).await?;
    assert_eq!(value.as_deref(), Some("kept"));
    let after = client_id(&mut connection).await?;
    assert_ne!(before, after, "the command went over a new connection");

    let () = redis::cmd("DEL").arg(&key).query_async(&mut connection).await?;
    Ok(())
}
