//! Structured logging with `tracing`, installed once per process.

use std::sync::OnceLock;
use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt, reload, util::SubscriberInitExt};

/// Handle to change the log filter at run time (the control plane's `log_level`, DESIGN §10).
pub type LogLevelHandle = reload::Handle<EnvFilter, Registry>;

/// Install the global subscriber: filter from `RUST_LOG` (default `info`), JSON lines when
/// `WORKUP_LOG_FORMAT=json`, plain text otherwise. Returns the handle to change the filter.
pub fn init(service: &'static str) -> LogLevelHandle {
    let filter = EnvFilter::try_new(initial_filter()).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let json = std::env::var("WORKUP_LOG_FORMAT").is_ok_and(|f| f == "json");
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true))
            .try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer()).try_init()
    };
    if result.is_ok() {
        let _ = LOG_LEVEL.set(handle.clone());
        tracing::info!(service, "telemetry initialised");
    }
    handle
}

/// The handle of the filter this process installed, if it installed one.
static LOG_LEVEL: OnceLock<LogLevelHandle> = OnceLock::new();

/// The handle to change this process's log filter (none if [`init`] did not install it).
pub fn log_level_handle() -> Option<&'static LogLevelHandle> {
    LOG_LEVEL.get()
}

/// The filter the process starts with: `RUST_LOG`, or `info`.
pub fn initial_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())
}
