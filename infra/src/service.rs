//! A process of background workers (consumer groups, pollers) beside an HTTP endpoint for its
//! health, readiness, metrics and whatever else it serves: run until a shutdown signal or a
//! worker failure, then stop the workers (each finishes its work in flight) and the server.

use axum::Router;
use futures::FutureExt;
use std::future::Future;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

/// Workers and their HTTP endpoint, ready to run.
pub struct Workers {
    listener: TcpListener,
    router: Router,
    tasks: JoinSet<anyhow::Result<()>>,
    stop: watch::Sender<bool>,
    /// The control plane membership, followed while the workers run.
    control: Option<crate::control::ControlPlane>,
}

impl Workers {
    /// `tasks` watch the receiving side of `stop` and end when it turns true.
    pub fn new(
        listener: TcpListener,
        router: Router,
        tasks: JoinSet<anyhow::Result<()>>,
        stop: watch::Sender<bool>,
    ) -> Self {
        Self {
            listener,
            router,
            tasks,
            stop,
            control: None,
        }
    }

    /// Stay a member of the control plane while running.
    pub fn with_control(mut self, control: crate::control::ControlPlane) -> Self {
        self.control = Some(control);
        self
    }

    /// The port of the HTTP endpoint (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// Run until `shutdown` resolves or a worker ends; then stop every worker and the server.
    /// A worker that ended on its own is an error (`what` names the process in it).
    pub async fn run_until_stopped(
        mut self,
        what: &str,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "{what} running");
        let (server_stop, mut server_stopped) = watch::channel(false);
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            let _ = server_stopped.changed().await;
        });
        let server = tokio::spawn(async move { server.await });
        let failed = tokio::select! {
            _ = shutdown.map(|_| ()) => None,
            Some(result) = self.tasks.join_next() => Some(result),
        };
        let _ = self.stop.send(true);
        let _ = server_stop.send(true);
        while let Some(result) = self.tasks.join_next().await {
            result??;
        }
        server.await??;
        drop(self.control);
        match failed {
            Some(result) => {
                result??;
                anyhow::bail!("a worker of {what} stopped unexpectedly")
            }
            None => Ok(()),
        }
    }
}
