//! The faults of the soak, drawn on a seeded schedule and injected one at a time: SIGKILL of a
//! service instance (started again after a pause), a stop of the broker, Redis or the CQL
//! emulator (started again after a pause), a fast restart of PostgreSQL, and a freeze of a
//! service through the control plane (started again after a pause). The CQL emulator keeps
//! nothing across a restart: its read models are rebuilt from the ledger with
//! `control replay rebuild` once it is back, as an operator would.

use rand::{Rng as _, rngs::StdRng, seq::SliceRandom as _};
use std::{
    fmt,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::process::Command;

use super::fleet::{Fleet, Service};

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL instance `number` of a service; started again after the pause.
    Kill(Service, usize),
    /// The broker stopped, then started again.
    Broker,
    /// PostgreSQL restarted (fast shutdown: every connection dropped).
    Postgres,
    /// Redis stopped (saving), then started again.
    Redis,
    /// The CQL emulator stopped (losing everything), started, and its read models rebuilt.
    Cql,
    /// `control freeze <service>`, then `control start <service>`.
    Freeze(&'static str),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill(service, n) => write!(f, "SIGKILL {service}#{n}"),
            Self::Broker => f.write_str("broker stop/start"),
            Self::Postgres => f.write_str("PostgreSQL restart"),
            Self::Redis => f.write_str("Redis stop/start"),
            Self::Cql => f.write_str("CQL emulator stop/start + rebuild"),
            Self::Freeze(service) => write!(f, "freeze/start {service}"),
        }
    }
}

/// The kinds of fault, drawn in seeded rounds so every kind comes once per round.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Kill,
    Broker,
    Postgres,
    Redis,
    Cql,
    Freeze,
}

const KINDS: [Kind; 6] = [
    Kind::Kill,
    Kind::Broker,
    Kind::Postgres,
    Kind::Redis,
    Kind::Cql,
    Kind::Freeze,
];

/// Services frozen through the control plane.
const FROZEN: [&str; 3] = ["command-api", "projectors", "sagas"];

/// Draws the faults: every kind once per round, in a seeded order.
pub struct Schedule {
    rng: StdRng,
    round: Vec<Kind>,
}

impl Schedule {
    pub fn new(rng: StdRng) -> Self {
        Self {
            rng,
            round: Vec::new(),
        }
    }

    /// The pause before the next fault: `every` × a uniform factor in [0.5, 1.5).
    pub fn gap(&mut self, every: Duration) -> Duration {
        every.mul_f64(self.rng.random_range(0.5..1.5))
    }

    /// The next fault, and how long the thing it stops stays down.
    pub fn next(&mut self, fleet: &Fleet) -> (Fault, Duration) {
        if self.round.is_empty() {
            self.round = KINDS.to_vec();
            self.round.shuffle(&mut self.rng);
        }
        let kind = self.round.pop().unwrap_or(Kind::Kill);
        let down = Duration::from_millis(self.rng.random_range(500..5_000));
        let fault = match kind {
            Kind::Kill => {
                let instance = &fleet.instances[self.rng.random_range(0..fleet.instances.len())];
                Fault::Kill(instance.service, instance.number)
            }
            Kind::Broker => Fault::Broker,
            Kind::Postgres => Fault::Postgres,
            Kind::Redis => Fault::Redis,
            Kind::Cql => Fault::Cql,
            Kind::Freeze => Fault::Freeze(FROZEN[self.rng.random_range(0..FROZEN.len())]),
        };
        (fault, down)
    }
}

/// What became of one fault.
#[derive(Debug, Clone)]
pub struct Injected {
    /// When it began, from the start of the load.
    pub at: Duration,
    pub fault: Fault,
    /// How long the thing was down (killed, stopped, frozen).
    pub down: Duration,
    /// From the restart until it was back (ready, listening, rebuilt).
    pub recovery: Duration,
    /// Err: it could not be injected or did not recover.
    pub outcome: Result<(), String>,
}

/// Injects faults into the fleet and the local infrastructure.
pub struct Injector {
    /// `scripts/infra.sh`.
    pub infra_script: PathBuf,
    /// The `control` binary.
    pub control: PathBuf,
    /// Its environment (the soak's namespace and keys).
    pub control_env: Vec<(String, String)>,
    /// Where the tools' output goes.
    pub log: PathBuf,
    pub http: reqwest::Client,
}

impl Injector {
    /// Inject `fault`, keep it for `down`, and recover.
    pub async fn inject(&self, fleet: &mut Fleet, fault: Fault, down: Duration, at: Duration) -> Injected {
        let mut recovery = Duration::ZERO;
        let outcome = self.run(fleet, &fault, down, &mut recovery).await;
        Injected {
            at,
            fault,
            down,
            recovery,
            outcome: outcome.map_err(|e| format!("{e:#}")),
        }
    }

    async fn run(
        &self,
        fleet: &mut Fleet,
        fault: &Fault,
        down: Duration,
        recovery: &mut Duration,
    ) -> anyhow::Result<()> {
        match fault {
            Fault::Kill(service, number) => {
                let i = fleet
                    .instances
                    .iter()
                    .position(|x| x.service == *service && x.number == *number)
                    .ok_or_else(|| anyhow::anyhow!("no instance {service}#{number}"))?;
                fleet.kill(i).await?;
                tokio::time::sleep(down).await;
                fleet.spawn(i)?;
                *recovery = fleet.wait_ready(i, &self.http).await?;
            }
            Fault::Postgres => {
                let started = Instant::now();
                self.infra(&["restart", "postgres"]).await?;
                *recovery = started.elapsed();
            }
            Fault::Broker | Fault::Redis | Fault::Cql => {
                let name = match fault {
                    Fault::Broker => "kafka",
                    Fault::Redis => "redis",
                    _ => "cql",
                };
                self.infra(&["down", name]).await?;
                tokio::time::sleep(down).await;
                let started = Instant::now();
                self.infra(&["up", name]).await?;
                if *fault == Fault::Cql {
                    for model in ["jobs", "contracts", "payments"] {
                        self.control(&["replay", "rebuild", model, "--timeout", "120"])
                            .await?;
                    }
                }
                *recovery = started.elapsed();
            }
            Fault::Freeze(service) => {
                self.control(&["freeze", service, "--wait", "--timeout", "30"])
                    .await?;
                tokio::time::sleep(down).await;
                let started = Instant::now();
                self.control(&["start", service, "--wait", "--timeout", "30"])
                    .await?;
                *recovery = started.elapsed();
            }
        }
        Ok(())
    }

    async fn infra(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new("bash");
        command.arg(&self.infra_script).args(args);
        self.tool(command, &format!("infra.sh {}", args.join(" "))).await
    }

    /// Run the `control` CLI with `args`.
    pub async fn control(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut command = Command::new(&self.control);
        command
            .args(args)
            .envs(self.control_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.tool(command, &format!("control {}", args.join(" "))).await
    }

    /// Run the `control` CLI with `args`; nothing when it succeeds, else the last lines of what
    /// it printed.
    pub async fn control_output(&self, args: &[&str]) -> anyhow::Result<Vec<String>> {
        let output = Command::new(&self.control)
            .args(args)
            .envs(self.control_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .await?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut log| {
                use std::io::Write as _;
                writeln!(log, "==> control {}\n{text}", args.join(" "))
            })?;
        if output.status.success() {
            return Ok(Vec::new());
        }
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines[lines.len().saturating_sub(20)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect())
    }

    /// Run a tool to its end with its output appended to the log; fails on a non-zero exit.
    async fn tool(&self, mut command: Command, name: &str) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        use std::io::Write as _;
        writeln!(&log, "==> {name}")?;
        let status = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .await?;
        anyhow::ensure!(
            status.success(),
            "`{name}` failed ({status}); see {}",
            self.log.display()
        );
        Ok(())
    }
}
