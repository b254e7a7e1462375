//! The platform's services as child processes of the soak: started, killed (SIGKILL) and
//! started again on the same port, each appending to its own log file.

use anyhow::{Context as _, bail};
use std::{
    fmt,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::process::{Child, Command};

/// A service binary of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    CommandApi,
    QueryApi,
    Projectors,
    Sagas,
    WithdrawalWorker,
    Relay,
}

impl Service {
    /// The binary's file name (and the service's name on the control plane).
    pub fn name(self) -> &'static str {
        match self {
            Self::CommandApi => "command-api",
            Self::QueryApi => "query-api",
            Self::Projectors => "projectors",
            Self::Sagas => "sagas",
            Self::WithdrawalWorker => "withdrawal-worker",
            Self::Relay => "relay",
        }
    }

    /// The variable its HTTP port is set by, and how the value is written.
    fn listen_var(self, port: u16) -> (&'static str, String) {
        match self {
            Self::CommandApi => ("WORKUP_COMMAND_API_PORT", port.to_string()),
            Self::QueryApi => ("WORKUP_QUERY_API_PORT", port.to_string()),
            Self::Projectors => ("WORKUP_PROJECTORS_PORT", port.to_string()),
            Self::Sagas => ("WORKUP_SAGAS_PORT", port.to_string()),
            Self::WithdrawalWorker => ("WORKUP_WITHDRAWAL_WORKER_PORT", port.to_string()),
            Self::Relay => ("WORKUP_RELAY_LISTEN", format!("127.0.0.1:{port}")),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One running (or killed) instance of a service.
pub struct Instance {
    pub service: Service,
    /// 1, 2, ... within its service.
    pub number: usize,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Instance {
    /// `service#number`.
    pub fn label(&self) -> String {
        format!("{}#{}", self.service, self.number)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Every service instance of the soak.
pub struct Fleet {
    bin_dir: PathBuf,
    env: Vec<(String, String)>,
    pub instances: Vec<Instance>,
}

/// How long a service may take to answer `/ready` after it is started.
const READY_WITHIN: Duration = Duration::from_secs(90);

impl Fleet {
    /// A fleet of `counts` instances per service (not started yet), run from the binaries in
    /// `bin_dir` with `env`, logging into `log_dir`.
    pub fn new(
        bin_dir: &Path,
        log_dir: &Path,
        env: Vec<(String, String)>,
        counts: &[(Service, usize)],
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        let mut instances = Vec::new();
        for &(service, count) in counts {
            let binary = bin_dir.join(service.name());
            if !binary.is_file() {
                bail!(
                    "no {} binary in {}: build the services first (cargo build --workspace --bins)",
                    service,
                    bin_dir.display()
                );
            }
            for number in 1..=count {
                instances.push(Instance {
                    service,
                    number,
                    port: free_port()?,
                    child: None,
                    log: log_dir.join(format!("{service}.{number}.log")),
                });
            }
        }
        Ok(Self {
            bin_dir: bin_dir.to_owned(),
            env,
            instances,
        })
    }

    /// Start every instance and wait until all are ready.
    pub async fn start_all(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        for i in 0..self.instances.len() {
            self.spawn(i)?;
        }
        for i in 0..self.instances.len() {
            self.wait_ready(i, http).await?;
        }
        Ok(())
    }

    /// Start instance `i` (which must not be running).
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let instance = &mut self.instances[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&instance.log)?;
        let (var, value) = instance.service.listen_var(instance.port);
        let child = Command::new(self.bin_dir.join(instance.service.name()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(var, value)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", instance.label()))?;
        instance.child = Some(child);
        Ok(())
    }

    /// Wait until instance `i` answers `/ready`; fails if it exits or takes too long.
    pub async fn wait_ready(&mut self, i: usize, http: &reqwest::Client) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let url = format!("{}/ready", self.instances[i].url());
        loop {
            if let Ok(answer) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && answer.status().is_success()
            {
                return Ok(started.elapsed());
            }
            let instance = &mut self.instances[i];
            if let Some(child) = instance.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited ({status}); see {}",
                    instance.label(),
                    instance.log.display()
                );
            }
            if started.elapsed() > READY_WITHIN {
                bail!(
                    "{} not ready within {} s; see {}",
                    instance.label(),
                    READY_WITHIN.as_secs(),
                    instance.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL instance `i` and reap it.
    pub async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.instances[i].child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Whether instance `i` has a process (it may have exited since: see [`Fleet::exited`]).
    pub fn is_running(&self, i: usize) -> bool {
        self.instances[i].child.is_some()
    }

    /// Instances that exited on their own (a crash the soak did not cause): label and status.
    pub fn exited(&mut self) -> Vec<String> {
        let mut exited = Vec::new();
        for instance in &mut self.instances {
            if let Some(child) = instance.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                exited.push(format!("{} exited: {status}", instance.label()));
                instance.child = None;
            }
        }
        exited
    }

    /// The base URLs of `service`'s instances.
    pub fn urls(&self, service: Service) -> Vec<String> {
        self.instances
            .iter()
            .filter(|i| i.service == service)
            .map(Instance::url)
            .collect()
    }

    /// Stop every instance: SIGTERM, then SIGKILL what has not exited within 20 s.
    pub async fn stop_all(&mut self) {
        for instance in &mut self.instances {
            if let Some(pid) = instance.child.as_ref().and_then(Child::id) {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for instance in &mut self.instances {
            if let Some(mut child) = instance.child.take()
                && tokio::time::timeout(Duration::from_secs(20), child.wait())
                    .await
                    .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// A port nobody listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
