//! Development CQL v4 server: the in-memory `kassandra` emulator behind a tokio TCP listener.
//!
//! A stand-in for ScyllaDB in development and CI. Everything lives in memory behind one lock:
//! a restart empties it. Clients must not wait for schema agreement (`system.peers` is empty) nor
//! rely on token-aware routing (`system.local` has no partitioner).
//!
//! Gaps of kassandra 0.14 seen through real clients: with a single clustering column, `ck = x`
//! returns the rows from `x` onwards (add `LIMIT 1`, or use a composite clustering key, whose
//! prefix equality is exact); range operators on clustering columns are ignored (the whole
//! partition comes back) and rows always come in ascending clustering order (`CLUSTERING ORDER BY
//! ... DESC` and `ORDER BY` are accepted and ignored); `IF NOT EXISTS` on writes and `USING TTL`
//! are ignored; `COUNT(*)`, `ALTER`, `DROP`, `TRUNCATE` and counter updates are syntax errors;
//! counter and `timeuuid` columns make the library panic, which is answered here with a server
//! error instead of killing the process.

use std::{
    any::Any,
    io::IsTerminal,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError},
};

use anyhow::{Context, anyhow};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use kassandra::{
    KassandraSession,
    cql::query::{QueryString, QueryValue},
    error::DbError,
    frame::{
        FrameFlags,
        request::{Request, RequestOpcode},
        request_stream,
        response::{
            Response,
            error::Error as CqlError,
            result::{PartitionKeyIndex, QueryResult},
        },
        response_sink,
    },
};
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::EnvFilter;

/// Serve the kassandra in-memory CQL emulator (protocol v4).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "WORKUP_CQL_LISTEN", default_value = "127.0.0.1:9042")]
    listen: SocketAddr,
}

/// The single emulator instance shared by every connection.
type Shared = Arc<Mutex<KassandraSession>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    // Some statements make the library panic (counters, timeuuid, ...): log them on one line; the
    // connection answers with a server error and the server keeps going.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        tracing::error!(message = panic_message(info.payload()), %location, "the emulator panicked");
    }));
    let args = Args::parse();

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "CQL emulator listening");
    let session: Shared = Arc::new(Mutex::new(KassandraSession::new()));

    tokio::select! {
        result = serve(listener, session) => result,
        result = shutdown_signal() => {
            tracing::info!("shutting down (the in-memory data is discarded)");
            result
        }
    }
}

async fn serve(listener: TcpListener, session: Shared) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                continue;
            }
        };
        let session = Arc::clone(&session);
        tokio::spawn(async move {
            tracing::debug!(%peer, "client connected");
            match connection(stream, session).await {
                Ok(()) => tracing::debug!(%peer, "client disconnected"),
                Err(error) => tracing::warn!(%peer, error = %format!("{error:#}"), "connection closed"),
            }
        });
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C"),
        _ = terminate.recv() => Ok(()),
    }
}

/// Answers the frames of one connection in order. The `USE` keyspace is tracked per connection
/// (the library keeps only one) and re-applied before each statement; a connection that never
/// ran `USE` sees the keyspace last set by any other one, where a server would refuse
/// unqualified table names.
async fn connection(mut stream: TcpStream, session: Shared) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.split();
    let mut requests = request_stream(reader);
    let mut responses = response_sink(writer);
    let mut keyspace: Option<String> = None;

    while let Some(frame) = requests.next().await {
        let (params, opcode, body) = frame.map_err(|error| anyhow!("reading a frame: {error}"))?;
        let response = if params.version.is_unsupported() {
            // Lets drivers that start with a newer protocol downgrade to v4.
            Response::unsupported_version()
        } else {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                respond(&session, &mut keyspace, opcode, &body, params.flags)
            }));
            outcome.unwrap_or_else(|panic| {
                let message = panic_message(panic.as_ref());
                error_response(
                    DbError::ServerError,
                    format!("not supported by the CQL emulator ({message})"),
                )
            })
        };
        responses
            .send((response, params.stream))
            .await
            .map_err(|error| anyhow!("writing a response: {error}"))?;
    }
    Ok(())
}

fn respond(
    session: &Shared,
    keyspace: &mut Option<String>,
    opcode: RequestOpcode,
    body: &[u8],
    flags: FrameFlags,
) -> Response {
    if opcode == RequestOpcode::AuthResponse {
        // The library cannot parse it (and never asks for authentication).
        return error_response(DbError::ProtocolError, "authentication is not supported");
    }
    let request = match Request::deserialize(opcode, body, flags) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(?opcode, %error, "could not parse a request");
            return Response::Error(error);
        }
    };

    // Takes the global lock, on behalf of this connection's keyspace.
    let locked = || {
        let mut locked = session.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(keyspace) = keyspace.as_deref() {
            locked.use_keyspace(keyspace);
        }
        locked
    };
    let result = match request {
        Request::StartUp(_) | Request::Register { .. } => return Response::Ready,
        Request::Options => return Response::options(),
        Request::AuthResponse => {
            return error_response(DbError::ProtocolError, "authentication is not supported");
        }
        Request::Query(query) => locked().process(query),
        Request::Prepare(query) => {
            let markers = bind_markers(&query);
            locked()
                .prepare(query)
                .map(|prepared| only_bind_markers(prepared, markers))
        }
        Request::Execute(execute) => locked().execute(execute),
        Request::Batch(batch) => locked().process_batch(batch),
    };
    match result {
        Ok(result) => {
            if let QueryResult::SetKeyspace(set) = &result {
                *keyspace = Some(set.keyspace_name.clone());
            }
            Response::Result(result)
        }
        Err(error) => {
            tracing::debug!(%error, "statement refused");
            Response::Error(error)
        }
    }
}

/// Which conditions of a statement's `WHERE` are bind markers (`?`, `:name`) rather than
/// literals, in order; `None` for statements without one.
fn bind_markers(query: &QueryString) -> Option<Vec<bool>> {
    let conditions = match query {
        QueryString::Select(select) => &select.r#where.statements,
        QueryString::Delete(delete) => &delete.r#where.statements,
        _ => return None,
    };
    Some(
        conditions
            .iter()
            .map(|(_, value)| matches!(value, QueryValue::Blankslate))
            .collect(),
    )
}

/// The prepared statement's bind variables, without its literals: kassandra lists every `WHERE`
/// condition as a variable, literals included, so a driver binding the statement's markers finds
/// one too few (the `scylla` driver's own `SELECT ... FROM system.local WHERE key='local'`
/// failed that way, and its control connection was re-established every second, logging a
/// warning each time). The values of an `EXECUTE` fill only the markers, as they should.
fn only_bind_markers(result: QueryResult, markers: Option<Vec<bool>>) -> QueryResult {
    let QueryResult::Prepared(mut prepared) = result else {
        return result;
    };
    let metadata = &mut prepared.prepared_metadata;
    let Some(markers) = markers.filter(|m| m.len() == metadata.col_specs.len()) else {
        return QueryResult::Prepared(prepared);
    };
    // A condition's place among the markers alone.
    let marker_index = |condition: usize| markers[..condition].iter().filter(|m| **m).count() as u16;
    let mut kept = markers.iter();
    metadata
        .col_specs
        .retain(|_| kept.next().copied().unwrap_or(true));
    metadata.pk_indexes = metadata
        .pk_indexes
        .iter()
        .filter(|pk| markers.get(usize::from(pk.index)).copied().unwrap_or(false))
        .map(|pk| PartitionKeyIndex {
            index: marker_index(usize::from(pk.index)),
            sequence: pk.sequence,
        })
        .collect();
    QueryResult::Prepared(prepared)
}

fn error_response(kind: DbError, message: impl ToString) -> Response {
    Response::Error(CqlError::new(kind, message))
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}
