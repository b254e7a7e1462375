//! What the ledger database tells about the platform's activity: commands and events recorded
//! per second over the last minute (DESIGN §4: every event carries its command id and when it
//! was recorded), and withdrawal tasks by state (DESIGN §9).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::{PgPool, postgres::PgPoolOptions};
use std::time::Duration;

use super::OpsError;
use crate::{
    config::PostgresConfig,
    ledger::{Ledger, upcast::Upcasters},
    withdrawals::{TaskCounts, WithdrawalTasks},
};

/// Connections at most: the page's reads are few and short.
const MAX_CONNECTIONS: u32 = 2;

/// Commands and events recorded in each second of a window, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRate {
    /// The database's clock when measured: the window ends here.
    pub until: DateTime<Utc>,
    /// One entry per second of the window (the last one still running), gaps filled with 0.
    pub seconds: Vec<SecondCount>,
}

/// What the ledger recorded in one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondCount {
    /// The second's start.
    pub at: DateTime<Utc>,
    /// Commands that appended events (distinct command ids).
    pub commands: i64,
    /// Events appended.
    pub events: i64,
}

impl CommandRate {
    /// Commands in the whole window.
    pub fn commands(&self) -> i64 {
        self.seconds.iter().map(|s| s.commands).sum()
    }

    /// Events in the whole window.
    pub fn events(&self) -> i64 {
        self.seconds.iter().map(|s| s.events).sum()
    }

    /// Commands per second, averaged over the window.
    pub fn per_second(&self) -> f64 {
        if self.seconds.is_empty() {
            return 0.0;
        }
        self.commands() as f64 / self.seconds.len() as f64
    }
}

/// Reads of the ledger database for the operations page (a cheap handle).
#[derive(Debug, Clone)]
pub struct LedgerActivity {
    pool: PgPool,
    tasks: WithdrawalTasks,
}

impl LedgerActivity {
    /// A small pool on the ledger database that connects when first used (so the reader starts
    /// while the database is down); the schema is command-api's, never migrated from here.
    pub fn connect_lazy(config: &PostgresConfig) -> Result<Self, OpsError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(&config.url)?;
        let ledger = Ledger::new(pool.clone(), Upcasters::current()).with_aggregate_cache(0);
        Ok(Self {
            pool,
            tasks: WithdrawalTasks::new(ledger),
        })
    }

    /// Withdrawal tasks by state.
    pub async fn withdrawal_tasks(&self) -> Result<TaskCounts, OpsError> {
        Ok(self.tasks.counts().await?)
    }

    /// Commands and events recorded in each second of the last `window` (whole seconds).
    pub async fn command_rate(&self, window: Duration) -> Result<CommandRate, OpsError> {
        let seconds = i64::try_from(window.as_secs().max(1)).unwrap_or(i64::MAX);
        // The newest event older than the window, found walking the primary key backwards
        // from the end (positions grow with recorded_at), so only the window's events are read,
        // however long the ledger.
        let (until, floor): (DateTime<Utc>, i64) = sqlx::query_as(
            "SELECT now(), COALESCE((SELECT global_position FROM events
                 WHERE recorded_at < now() - make_interval(secs => $1)
                 ORDER BY global_position DESC LIMIT 1), 0)",
        )
        .bind(seconds as f64)
        .fetch_one(&self.pool)
        .await?;
        let first =
            until.duration_trunc(TimeDelta::seconds(1)).unwrap_or(until) - TimeDelta::seconds(seconds - 1);
        // Planned for this floor each time (not a generic plan), so the key's range is used.
        let counted: Vec<(DateTime<Utc>, i64, i64)> = sqlx::query_as(
            "SELECT date_trunc('second', recorded_at), count(DISTINCT metadata->>'command_id'), count(*)
             FROM events WHERE global_position > $1 AND recorded_at >= $2
             GROUP BY 1 ORDER BY 1",
        )
        .bind(floor)
        .bind(first)
        .persistent(false)
        .fetch_all(&self.pool)
        .await?;
        Ok(CommandRate {
            until,
            seconds: fill(first, seconds, &counted),
        })
    }
}

/// One entry per second from `first`, `seconds` of them, with the counts found (0 elsewhere).
fn fill(first: DateTime<Utc>, seconds: i64, counted: &[(DateTime<Utc>, i64, i64)]) -> Vec<SecondCount> {
    (0..seconds)
        .map(|i| {
            let at = first + TimeDelta::seconds(i);
            let (commands, events) = counted
                .iter()
                .find(|(second, _, _)| *second == at)
                .map_or((0, 0), |(_, c, e)| (*c, *e));
            SecondCount { at, commands, events }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_second_of_the_window_has_an_entry_and_the_rate_is_its_average() {
        let first = DateTime::from_timestamp(1_000, 0).expect("a time");
        let counted = [
            (first + TimeDelta::seconds(1), 3, 5),
            (first + TimeDelta::seconds(3), 1, 1),
        ];
        let rate = CommandRate {
            until: first + TimeDelta::seconds(3),
            seconds: fill(first, 4, &counted),
        };
        let commands: Vec<i64> = rate.seconds.iter().map(|s| s.commands).collect();
        assert_eq!(commands, [0, 3, 0, 1]);
        assert_eq!((rate.commands(), rate.events()), (4, 6));
        assert!((rate.per_second() - 1.0).abs() < f64::EPSILON);
    }
}
