//! The soak's report: the faults with their times, the commands by outcome, the flows, the
//! drain and every invariant with its counterexamples.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use super::{Settings, checks::Check, faults::Injected, load::Gateway, load::Sent};

/// Counterexamples shown per invariant.
const SHOWN: usize = 10;

/// Everything a soak found.
pub struct Report {
    pub settings: Settings,
    pub namespace: String,
    pub load_time: Duration,
    pub faults: Vec<Injected>,
    pub sent: Vec<Sent>,
    pub flows: BTreeMap<&'static str, usize>,
    /// How long the drain took, if it finished.
    pub drained: Option<Duration>,
    pub checks: Vec<Check>,
}

impl Report {
    /// Every invariant held and every fault recovered.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed) && self.faults.iter().all(|f| f.outcome.is_ok())
    }

    /// The report as Markdown.
    pub fn render(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(out, "# Chaos soak report\n");
        let _ = writeln!(
            out,
            "seed **{}** · load {:.0} s (asked {} s) · {} actors · a fault every ~{} s{} · namespace `{}`\n",
            s.seed,
            self.load_time.as_secs_f64(),
            s.duration.as_secs(),
            s.actors,
            s.fault_every.as_secs(),
            if s.no_faults { " (faults off)" } else { "" },
            self.namespace
        );
        let _ = writeln!(
            out,
            "services: command-api ×2, query-api ×1, projectors ×2, sagas ×2, withdrawal-worker ×2, relay ×1 (+ the stand-by relay of each command-api)\n"
        );
        let _ = writeln!(
            out,
            "repeat: `bash scripts/chaos.sh --seed {} --duration {}`\n",
            s.seed,
            s.duration.as_secs()
        );

        let _ = writeln!(out, "## Faults ({})\n", self.faults.len());
        let _ = writeln!(
            out,
            "| at (s) | fault | down (s) | back in (s) | result |\n|---:|---|---:|---:|---|"
        );
        for f in &self.faults {
            let _ = writeln!(
                out,
                "| {:.1} | {} | {:.1} | {:.1} | {} |",
                f.at.as_secs_f64(),
                f.fault,
                f.down.as_secs_f64(),
                f.recovery.as_secs_f64(),
                match &f.outcome {
                    Ok(()) => "recovered".to_owned(),
                    Err(e) => format!("**did not recover**: {e}"),
                }
            );
        }

        let _ = writeln!(out, "\n## Commands ({})\n", self.sent.len());
        let _ = writeln!(
            out,
            "Final answers after the client's retries (same `Idempotency-Key`, on no answer, 5xx or 429).\n"
        );
        let _ = writeln!(
            out,
            "| route | sent | 2xx | 4xx | 5xx | no answer | retried |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        let mut by_route: BTreeMap<&str, [usize; 6]> = BTreeMap::new();
        for sent in &self.sent {
            let row = by_route.entry(sent.route).or_default();
            row[0] += 1;
            match sent.status {
                Some(200..=299) => row[1] += 1,
                Some(400..=499) => row[2] += 1,
                Some(_) => row[3] += 1,
                None => row[4] += 1,
            }
            if sent.attempts > 1 {
                row[5] += 1;
            }
        }
        let mut total = [0; 6];
        for (route, row) in &by_route {
            let _ = writeln!(
                out,
                "| `{route}` | {} | {} | {} | {} | {} | {} |",
                row[0], row[1], row[2], row[3], row[4], row[5]
            );
            for (t, n) in total.iter_mut().zip(row) {
                *t += n;
            }
        }
        let _ = writeln!(
            out,
            "| **all** | {} | {} | {} | {} | {} | {} |",
            total[0], total[1], total[2], total[3], total[4], total[5]
        );
        let mut problems: BTreeMap<(&str, u16, &str), usize> = BTreeMap::new();
        for sent in &self.sent {
            if let Some(status) = sent.status.filter(|s| *s >= 400) {
                *problems
                    .entry((sent.route, status, sent.problem.as_deref().unwrap_or("-")))
                    .or_default() += 1;
            }
        }
        let _ = writeln!(out, "\nRefusals and errors by problem type:\n");
        for ((route, status, problem), n) in &problems {
            let _ = writeln!(out, "- `{route}` {status} `{problem}`: {n}");
        }
        let _ = writeln!(out, "\n## Flows\n");
        for (how, n) in &self.flows {
            let _ = writeln!(out, "- {how}: {n}");
        }
        let _ = writeln!(
            out,
            "\n## Drain\n\n{}\n",
            match self.drained {
                Some(d) => format!("drained in {:.1} s after the load stopped", d.as_secs_f64()),
                None => "**did not drain**".to_owned(),
            }
        );
        let _ = writeln!(out, "## Invariants\n");
        for check in &self.checks {
            let _ = writeln!(
                out,
                "- {} {} ({})",
                if check.passed() { "PASS" } else { "**FAIL**" },
                check.name,
                check.scope
            );
            for v in check.violations.iter().take(SHOWN) {
                let _ = writeln!(out, "    - {v}");
            }
            if check.violations.len() > SHOWN {
                let _ = writeln!(out, "    - … {} more", check.violations.len() - SHOWN);
            }
        }
        let failed = self.checks.iter().filter(|c| !c.passed()).count()
            + self.faults.iter().filter(|f| f.outcome.is_err()).count();
        let _ = writeln!(
            out,
            "\n**{}** (seed {})",
            if failed == 0 {
                "PASSED: every invariant held".to_owned()
            } else {
                format!("FAILED: {failed} invariant(s) or recoveries failed")
            },
            s.seed
        );
        out
    }
}

/// One progress line while the load runs.
pub fn progress(elapsed: Duration, of: Duration, gateway: &Gateway, faults: usize) -> String {
    let sent = gateway.sent();
    let ok = sent
        .iter()
        .filter(|s| s.status.is_some_and(|x| (200..300).contains(&x)))
        .count();
    let refused = sent
        .iter()
        .filter(|s| s.status.is_some_and(|x| (400..500).contains(&x)))
        .count();
    let completed = gateway.flows().get("completed").copied().unwrap_or(0);
    format!(
        "chaos: t={:>5.1}s/{}s · {} commands ({ok} 2xx, {refused} 4xx) · {completed} flows completed · {faults} faults",
        elapsed.as_secs_f64(),
        of.as_secs(),
        sent.len()
    )
}
