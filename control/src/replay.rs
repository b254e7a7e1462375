//! `control replay ...` (DESIGN §8): rebuild a read model from the ledger into a new storage
//! generation and switch readers to it (blue/green), verify a read model against the ledger,
//! drop generations no longer read, republish a ledger range.
//!
//! A rebuild, step by step:
//! 1. Generation n+1 is created empty and the ledger is replayed into it from the start (or
//!    `--from-position`), in commit-safe order, while the live projector keeps writing n and
//!    readers read n. Nobody else writes n+1.
//! 2. Handover: the control plane pauses the read model's projector (it holds its next event;
//!    a deadline, so a rebuild that dies here cannot stop it for good). Once every live
//!    instance reports that, the replay reads what was committed meanwhile, to the end: every
//!    event the projector handled was committed before it paused, so n+1 misses nothing.
//! 3. n+1 is named active (query-api switches its stores; the projector will write n+1), and
//!    after a moment for the readers the pause ends: the projector goes on from its offset
//!    into n+1, where what it handles again is recognised by version. n is kept until
//!    `drop-old`.
//!
//! The replay applies the projectors' own handlers and publishes nothing: sagas never see it.

use anyhow::{Context as _, bail};
use chrono::Utc;
use domain::BoundedContext;
use infra::{
    config::Config,
    control::{ControlKey, ControlMessage, ReadModelGenerations, Setting, operator},
    ledger::{Ledger, ScanCursor},
    read_models::{
        generation::Target,
        storage::{self, Storage},
    },
};
use projectors::{
    catalog::{Catalog, Projector},
    replay::{self, ReplayOptions},
};
use std::{
    io::Write,
    time::{Duration, Instant},
};

use crate::{
    Cli, Outcome, bounded,
    cli::ReplayCommand,
    progress::Progress,
    send::{self, issued_by},
};

/// How long query-api is given to open the new generation after every instance reported the
/// switch, before the projector writes it.
const SWITCH_GRACE: Duration = Duration::from_secs(1);
/// The longest a projector holds its events during a handover.
const PAUSE_FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Differences listed at most.
const MAX_LISTED: usize = 50;
/// How long `verify` compares again while the differences stop shrinking before they count.
const VERIFY_PATIENCE: Duration = Duration::from_secs(5);

/// Run a `control replay` command.
pub async fn command(cli: &Cli, command: &ReplayCommand, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    let replayer = Replayer::connect(cli).await?;
    match command {
        ReplayCommand::Rebuild {
            projection,
            from_position,
            timeout,
        } => {
            for context in projection.contexts() {
                replayer
                    .rebuild(context, *from_position, Duration::from_secs(*timeout), out)
                    .await?;
            }
            Ok(Outcome::Done)
        }
        ReplayCommand::Verify { projection } => {
            let mut differing = Vec::new();
            for context in projection.contexts() {
                if !replayer.verify(context, out).await? {
                    differing.push(context.name());
                }
            }
            Ok(if differing.is_empty() {
                Outcome::Done
            } else {
                Outcome::Failed(format!(
                    "read models differ from the ledger: {}",
                    differing.join(", ")
                ))
            })
        }
        ReplayCommand::DropOld { projection } => {
            for context in projection.contexts() {
                replayer.drop_old(context, out).await?;
            }
            Ok(Outcome::Done)
        }
        ReplayCommand::Republish { from, to, topic } => {
            let contexts = topic.map_or_else(|| BoundedContext::ALL.to_vec(), |t| t.contexts());
            replayer.republish(*from, *to, &contexts, out).await
        }
    }
}

/// What a replay command works with.
struct Replayer<'a> {
    cli: &'a Cli,
    config: Config,
    key: ControlKey,
    ledger: Ledger,
    catalog: Catalog,
    storage: Storage,
}

impl<'a> Replayer<'a> {
    async fn connect(cli: &'a Cli) -> anyhow::Result<Self> {
        let mut config = Config::local();
        config.postgres = cli.postgres.clone();
        config.kafka = cli.kafka.clone();
        config.cassandra = cli.cassandra.clone();
        config.mongo = cli.mongo.clone();
        config.redis = cli.redis.clone();
        config.control = cli.control.clone();
        let key = cli.control.signing_key(cli.environment)?;
        let catalog = Catalog::connect(config.clone()).await?;
        let ledger = catalog.ledger().clone();
        let storage = Storage::connect(&config)
            .await
            .context("could not connect to the read models' stores")?;
        Ok(Self {
            cli,
            config,
            key,
            ledger,
            catalog,
            storage,
        })
    }

    /// The generations of `context`'s read model in force on the control topic.
    async fn generations(&self, context: BoundedContext) -> anyhow::Result<ReadModelGenerations> {
        let messages = bounded(&self.cli.kafka, operator::messages(&self.cli.kafka, &self.key)).await?;
        Ok(messages
            .into_values()
            .filter_map(Result::ok)
            .filter_map(|m| match m.setting {
                Setting::ReadModel {
                    projection,
                    generations,
                } if projection == context.name() => Some((m.version, generations)),
                _ => None,
            })
            .max_by_key(|(version, _)| *version)
            .map(|(_, generations)| generations)
            .unwrap_or_default())
    }

    /// Name `generations` for `context` on the control plane and wait until every live
    /// instance applied them (none running is fine: nobody else writes or reads then).
    async fn announce(
        &self,
        context: BoundedContext,
        generations: ReadModelGenerations,
        timeout: Duration,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let message = ControlMessage::now(
            infra::control::ALL,
            Setting::ReadModel {
                projection: context.name().to_owned(),
                generations,
            },
            &issued_by(),
        );
        bounded(
            &self.cli.kafka,
            operator::send(&self.cli.kafka, &self.key, &message),
        )
        .await?;
        let heartbeat = Duration::from_millis(self.cli.control.heartbeat_ms);
        let (progress, done) = send::wait_applied(&self.cli.kafka, heartbeat, &message, timeout).await?;
        let paused = generations
            .paused_until
            .map(|until| format!(", projector paused until {}", crate::output::time(until)))
            .unwrap_or_default();
        if progress.is_empty() {
            writeln!(
                out,
                "{}: g{} active{paused} (no live instance)",
                context.name(),
                generations.active
            )?;
        } else if done {
            writeln!(
                out,
                "{}: g{} active{paused} (applied by {} live instances)",
                context.name(),
                generations.active,
                progress.applied.len()
            )?;
        } else {
            let pending: Vec<&str> = progress.pending.iter().map(|i| i.instance.as_str()).collect();
            bail!(
                "{}: not every live instance applied the switch within {timeout:?}; waiting for: {}",
                context.name(),
                pending.join(", ")
            );
        }
        Ok(())
    }

    /// Replay `context`'s events after `cursor` into `projector`, showing progress as `label`.
    async fn replay_into(
        &self,
        context: BoundedContext,
        from_position: i64,
        projector: &Projector,
        cursor: ScanCursor,
        label: &str,
    ) -> anyhow::Result<(ScanCursor, u64)> {
        let filter = replay::filter(context, from_position);
        // From the start: about the filter's count; a tail: unknown until read.
        let total = if cursor == ScanCursor::default() {
            self.ledger.count(&filter).await?
        } else {
            0
        };
        let mut progress = Progress::start(label, u64::try_from(total).unwrap_or_default());
        let mut applied = 0;
        let cursor = replay::replay(
            &self.ledger,
            projector,
            &filter,
            cursor,
            &ReplayOptions::default(),
            |p| {
                applied = p.applied;
                progress.update(p.applied, "");
            },
        )
        .await?;
        progress.finish(applied, "done");
        Ok((cursor, applied))
    }

    async fn rebuild(
        &self,
        context: BoundedContext,
        from_position: i64,
        timeout: Duration,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let name = context.name();
        let old = self.generations(context).await?.active;
        let new = old + 1;
        let target = Target::generation(context, new);
        writeln!(out, "{name}: rebuilding into g{new} while readers stay on g{old}")?;
        // A generation left by an interrupted rebuild goes first.
        self.storage.drop(target, &self.config).await?;
        let projector = self.catalog.open(target).await?;
        let started = Instant::now();
        let (cursor, applied) = self
            .replay_into(context, from_position, &projector, ScanCursor::default(), name)
            .await?;

        let pause = Utc::now() + PAUSE_FOR;
        let paused = |active| ReadModelGenerations {
            active,
            paused_until: Some(pause),
        };
        let paused_at = Instant::now();
        let handover = async {
            self.announce(context, paused(old), timeout, out).await?;
            let (_, caught_up) = self
                .replay_into(
                    context,
                    from_position,
                    &projector,
                    cursor,
                    &format!("{name} tail"),
                )
                .await?;
            if Utc::now() >= pause {
                bail!("the handover outlasted the projector's pause ({PAUSE_FOR}); try again");
            }
            self.announce(context, paused(new), timeout, out).await?;
            // An instance reports a setting once it has taken it; query-api opens the new
            // generation's stores right after.
            tokio::time::sleep(SWITCH_GRACE).await;
            anyhow::Ok(caught_up)
        }
        .await;
        let (active, result) = match handover {
            Ok(caught_up) => (new, Ok(applied + caught_up)),
            Err(error) => (old, Err(error)),
        };
        let resumed = ReadModelGenerations {
            active,
            paused_until: None,
        };
        self.announce(context, resumed, timeout, out).await?;
        let applied =
            result.with_context(|| format!("the rebuild of {name} failed; readers stay on g{old}"))?;
        let elapsed = started.elapsed().as_secs_f64();
        writeln!(
            out,
            "{name}: rebuilt g{new} from {applied} events in {elapsed:.1} s ({:.0} events/s), projector paused {:.1} s for \
             the handover; readers switched from g{old}, kept until `control replay drop-old {name}`",
            applied as f64 / elapsed.max(1e-9),
            paused_at.elapsed().as_secs_f64()
        )?;
        Ok(())
    }

    /// Whether `context`'s read model equals a fresh replay of the ledger.
    async fn verify(&self, context: BoundedContext, out: &mut dyn Write) -> anyhow::Result<bool> {
        let name = context.name();
        let active = self.generations(context).await?.active;
        let live = Target::generation(context, active);
        let scratch = Target::scratch(context);
        self.storage.drop(scratch, &self.config).await?;
        let projector = self.catalog.open(scratch).await?;
        let label = format!("{name} verify");
        let (mut cursor, _) = self
            .replay_into(context, 0, &projector, ScanCursor::default(), &label)
            .await?;
        // The live model may be behind the ledger (projector lag) or a moment ahead of the
        // copy: compare again, the copy caught up, while the differences keep shrinking.
        let (mut fewest, mut improved) = (usize::MAX, Instant::now());
        let (expected, differences) = loop {
            let expected = self.storage.dump(scratch, &self.config).await?;
            let found = self.storage.dump(live, &self.config).await?;
            let differences = storage::diff(&expected, &found);
            if differences.len() < fewest {
                (fewest, improved) = (differences.len(), Instant::now());
            }
            if differences.is_empty() || improved.elapsed() >= VERIFY_PATIENCE {
                break (expected, differences);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            cursor = replay::replay(
                &self.ledger,
                &projector,
                &replay::filter(context, 0),
                cursor,
                &ReplayOptions::default(),
                |_| {},
            )
            .await?;
        };
        self.storage.drop(scratch, &self.config).await?;
        if differences.is_empty() {
            writeln!(
                out,
                "{name}: g{active} equals the ledger ({} rows compared)",
                expected.len()
            )?;
            return Ok(true);
        }
        writeln!(
            out,
            "{name}: g{active} differs from the ledger in {} of {} rows:",
            differences.len(),
            expected.len()
        )?;
        for difference in differences.iter().take(MAX_LISTED) {
            writeln!(out, "  {difference}")?;
        }
        if differences.len() > MAX_LISTED {
            writeln!(out, "  … and {} more", differences.len() - MAX_LISTED)?;
        }
        Ok(false)
    }

    async fn drop_old(&self, context: BoundedContext, out: &mut dyn Write) -> anyhow::Result<()> {
        let name = context.name();
        let now = self.generations(context).await?;
        let old: Vec<u32> = (0..now.active).collect();
        if old.is_empty() {
            writeln!(out, "{name}: nothing to drop (readers use g{})", now.active)?;
            return Ok(());
        }
        for generation in &old {
            self.storage
                .drop(Target::generation(context, *generation), &self.config)
                .await?;
        }
        let names: Vec<String> = old.iter().map(|g| format!("g{g}")).collect();
        writeln!(
            out,
            "{name}: dropped {} (readers use g{})",
            names.join(", "),
            now.active
        )?;
        Ok(())
    }

    async fn republish(
        &self,
        from: i64,
        to: i64,
        contexts: &[BoundedContext],
        out: &mut dyn Write,
    ) -> anyhow::Result<Outcome> {
        if from > to {
            bail!("--from {from} is after --to {to}");
        }
        let queued = self.ledger.requeue(from, to, contexts).await?;
        writeln!(
            out,
            "queued {queued} events at positions {from}..={to} for the relay"
        )?;
        let mut progress = Progress::start("republish", queued);
        let mut last_change = Instant::now();
        let mut waiting = queued;
        loop {
            let left = u64::try_from(self.ledger.queued_between(from, to).await?).unwrap_or_default();
            progress.update(queued.saturating_sub(left), "");
            if left == 0 {
                break;
            }
            if left < waiting {
                (waiting, last_change) = (left, Instant::now());
            } else if last_change.elapsed() > Duration::from_secs(30) {
                progress.finish(queued - left, "stalled");
                return Ok(Outcome::Failed(format!(
                    "{left} events still wait in the outbox after 30 s without progress: is the relay running?"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        progress.finish(queued, "published");
        Ok(Outcome::Done)
    }
}
