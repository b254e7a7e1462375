//! The simulated provider itself: payouts keyed by withdrawal id, settled once at their deadline.
//!
//! Everything lives behind one `std::sync::Mutex` (never held across an `.await`). Each payout
//! carries a `watch` channel of its status, so any number of waiting requests learn about the
//! settlement or a cancellation without polling.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio::{sync::watch, time::Instant};
use uuid::Uuid;

/// No payout takes longer than this, whatever the settings say (keeps deadline arithmetic finite).
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The reason given for every declined payout.
pub const DECLINE_REASON: &str = "declined by the simulated provider";

/// How the provider behaves for payouts created from now on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Time from a payout's creation to its settlement.
    pub latency: Duration,
    /// Extra random delay, uniform in `0..jitter`, added per payout.
    pub jitter: Duration,
    /// Share of withdrawal ids that are declined, in `[0, 1]`. The verdict for an id is a
    /// deterministic function of the id, so every retry of a payout gets the same answer.
    pub failure_rate: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(200),
            jitter: Duration::ZERO,
            failure_rate: 0.0,
        }
    }
}

/// Counters over the provider's lifetime; `paid` is the number of payouts whose money left.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// `POST /payouts` calls that reached a payout (first requests and retries).
    pub requests: u64,
    /// Payouts settled as paid.
    pub paid: u64,
    /// Payouts settled as declined.
    pub declined: u64,
    /// Payouts cancelled, including tombstones for ids cancelled before any request.
    pub cancelled: u64,
    /// Sum of the paid amounts in minor units (all currencies together).
    pub paid_minor: i64,
}

/// An amount of money in minor units (cents).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Amount {
    /// Minor units; a payout request must carry a positive amount.
    pub minor: i64,
    /// ISO 4217 code, three upper-case letters.
    pub currency: String,
}

/// Where a payout stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PayoutStatus {
    /// Accepted, not yet settled.
    Pending,
    /// The money left; `reference` is set.
    Paid,
    /// The provider refused it; `reason` is set.
    Declined,
    /// Cancelled before it settled (or before it was ever requested).
    Cancelled,
}

/// One payout, identified by the withdrawal it pays out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Payout {
    /// The withdrawal id, which is also the idempotency key.
    pub withdrawal_id: Uuid,
    /// The amount asked for (`0 XXX` for a tombstone).
    pub amount: Amount,
    /// Current status.
    pub status: PayoutStatus,
    /// Provider reference (`po_<uuid>`) once paid.
    pub reference: Option<String>,
    /// Why it was declined.
    pub reason: Option<String>,
    /// How many `POST /payouts` calls asked for it.
    pub requests: u32,
    /// When the provider first heard of it (RFC 3339).
    pub created_at: DateTime<Utc>,
    /// When it settles, or settled (RFC 3339).
    pub completes_at: DateTime<Utc>,
}

/// Why a payout request was refused before waiting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RequestError {
    /// The id is known with a different amount.
    #[error("idempotency-key-reused")]
    KeyReused,
}

/// What a `DELETE` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cancellation {
    /// The payout is (now, or already) cancelled or declined: no money leaves.
    Stopped(Payout),
    /// Too late: the payout was paid.
    TooLate(Payout),
}

/// Handle to wait for one payout's settlement.
pub(crate) struct Ticket {
    withdrawal_id: Uuid,
    status: watch::Receiver<PayoutStatus>,
    deadline: Instant,
}

struct Entry {
    payout: Payout,
    /// Decided when the payout is created, from the id and the failure rate then in force.
    declines: bool,
    deadline: Instant,
    /// A tombstone left by a `DELETE` for an id never requested: any amount is accepted later.
    tombstone: bool,
    status: watch::Sender<PayoutStatus>,
}

struct State {
    settings: Settings,
    stats: Stats,
    payouts: HashMap<Uuid, Entry>,
}

/// The simulated provider: cheap to clone, every clone sees the same payouts.
#[derive(Clone)]
pub struct Provider {
    state: Arc<Mutex<State>>,
}

impl Provider {
    /// A provider with no payouts yet.
    pub fn new(settings: Settings) -> Self {
        let state = State {
            settings,
            stats: Stats::default(),
            payouts: HashMap::new(),
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Change the behaviour; payouts already created keep their deadline and verdict.
    pub fn set_settings(&self, settings: Settings) {
        self.lock().settings = settings;
        tracing::info!(
            latency_ms = settings.latency.as_millis() as u64,
            jitter_ms = settings.jitter.as_millis() as u64,
            failure_rate = settings.failure_rate,
            "settings changed"
        );
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.lock().settings
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// The payout for a withdrawal, if the provider knows it.
    pub fn payout(&self, withdrawal_id: Uuid) -> Option<Payout> {
        self.lock().payouts.get(&withdrawal_id).map(|e| e.payout.clone())
    }

    /// Record a payout request: creates the payout on first sight (and schedules its settlement,
    /// so it completes even if every client goes away), counts a retry otherwise.
    ///
    /// Must be called inside a tokio runtime.
    pub(crate) fn request(&self, withdrawal_id: Uuid, amount: Amount) -> Result<Ticket, RequestError> {
        let mut state = self.lock();
        state.stats.requests += 1;
        if let Some(entry) = state.payouts.get_mut(&withdrawal_id) {
            entry.payout.requests = entry.payout.requests.saturating_add(1);
            if !entry.tombstone && entry.payout.amount != amount {
                tracing::warn!(%withdrawal_id, "idempotency key reused with another amount");
                return Err(RequestError::KeyReused);
            }
            tracing::info!(
                %withdrawal_id,
                status = ?entry.payout.status,
                requests = entry.payout.requests,
                "payout requested again"
            );
            return Ok(Ticket {
                withdrawal_id,
                status: entry.status.subscribe(),
                deadline: entry.deadline,
            });
        }

        let settings = state.settings;
        let delay = (settings.latency.saturating_add(random_below(settings.jitter))).min(MAX_DELAY);
        let deadline = Instant::now() + delay;
        let created_at = Utc::now();
        let completes_at = created_at + TimeDelta::from_std(delay).unwrap_or(TimeDelta::zero());
        let declines = unit_interval(withdrawal_id) < settings.failure_rate;
        let (status, receiver) = watch::channel(PayoutStatus::Pending);
        let payout = Payout {
            withdrawal_id,
            amount,
            status: PayoutStatus::Pending,
            reference: None,
            reason: None,
            requests: 1,
            created_at,
            completes_at,
        };
        tracing::info!(
            %withdrawal_id,
            minor = payout.amount.minor,
            currency = %payout.amount.currency,
            delay_ms = delay.as_millis() as u64,
            "payout created"
        );
        state.payouts.insert(
            withdrawal_id,
            Entry {
                payout,
                declines,
                deadline,
                tombstone: false,
                status,
            },
        );
        drop(state);

        // The provider settles the payout on its own: a client that disconnects changes nothing.
        let provider = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            provider.settle(withdrawal_id);
        });
        Ok(Ticket {
            withdrawal_id,
            status: receiver,
            deadline,
        })
    }

    /// Wait until the payout behind `ticket` is no longer pending and return it.
    pub(crate) async fn wait(&self, mut ticket: Ticket) -> Option<Payout> {
        loop {
            if *ticket.status.borrow_and_update() != PayoutStatus::Pending {
                break;
            }
            tokio::select! {
                changed = ticket.status.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                // Settle it ourselves if the scheduled task is late; `settle` runs at most once.
                () = tokio::time::sleep_until(ticket.deadline) => self.settle(ticket.withdrawal_id),
            }
        }
        self.payout(ticket.withdrawal_id)
    }

    /// Pending → Paid or Declined, exactly once whoever calls it; anything else is left alone.
    fn settle(&self, withdrawal_id: Uuid) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(entry) = state.payouts.get_mut(&withdrawal_id) else {
            return;
        };
        if entry.payout.status != PayoutStatus::Pending {
            return;
        }
        entry.payout.completes_at = Utc::now();
        if entry.declines {
            entry.payout.status = PayoutStatus::Declined;
            entry.payout.reason = Some(DECLINE_REASON.to_owned());
            state.stats.declined += 1;
            tracing::info!(%withdrawal_id, "payout declined");
        } else {
            let reference = format!("po_{}", Uuid::new_v4().simple());
            entry.payout.status = PayoutStatus::Paid;
            entry.payout.reference = Some(reference.clone());
            state.stats.paid += 1;
            state.stats.paid_minor = state.stats.paid_minor.saturating_add(entry.payout.amount.minor);
            tracing::info!(
                %withdrawal_id,
                %reference,
                minor = entry.payout.amount.minor,
                currency = %entry.payout.amount.currency,
                "payout paid"
            );
        }
        entry.status.send_replace(entry.payout.status);
    }

    /// Cancel a payout. Unknown ids get a cancelled tombstone, so a late request is refused.
    pub(crate) fn cancel(&self, withdrawal_id: Uuid) -> Cancellation {
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = Utc::now();
        let Some(entry) = state.payouts.get_mut(&withdrawal_id) else {
            let payout = Payout {
                withdrawal_id,
                amount: Amount {
                    minor: 0,
                    currency: "XXX".to_owned(),
                },
                status: PayoutStatus::Cancelled,
                reference: None,
                reason: None,
                requests: 0,
                created_at: now,
                completes_at: now,
            };
            let (status, _) = watch::channel(PayoutStatus::Cancelled);
            state.stats.cancelled += 1;
            state.payouts.insert(
                withdrawal_id,
                Entry {
                    payout: payout.clone(),
                    declines: false,
                    deadline: Instant::now(),
                    tombstone: true,
                    status,
                },
            );
            tracing::info!(%withdrawal_id, "unknown payout cancelled (tombstone)");
            return Cancellation::Stopped(payout);
        };
        match entry.payout.status {
            PayoutStatus::Pending => {
                entry.payout.status = PayoutStatus::Cancelled;
                entry.payout.completes_at = now;
                entry.status.send_replace(PayoutStatus::Cancelled);
                state.stats.cancelled += 1;
                tracing::info!(%withdrawal_id, "payout cancelled");
                Cancellation::Stopped(entry.payout.clone())
            }
            PayoutStatus::Cancelled | PayoutStatus::Declined => Cancellation::Stopped(entry.payout.clone()),
            PayoutStatus::Paid => {
                tracing::info!(%withdrawal_id, "cancel refused: payout already paid");
                Cancellation::TooLate(entry.payout.clone())
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the counters are still
        // consistent (each update is a single step), so keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Map an id to `[0, 1)` with a fixed mixing function (stable across builds and restarts, unlike
/// `std`'s hasher), so the decline verdict for an id never changes.
fn unit_interval(id: Uuid) -> f64 {
    let (high, low) = id.as_u64_pair();
    let mixed = splitmix64(high ^ splitmix64(low));
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

/// The finaliser of SplitMix64: a cheap, well-spread 64-bit mix.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A random duration in `0..bound` (zero when `bound` is zero), drawn from a v4 uuid's random bits.
fn random_below(bound: Duration) -> Duration {
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(Uuid::new_v4().as_u64_pair().1 % nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_for_an_id_is_stable_and_roughly_follows_the_rate() {
        let id = Uuid::from_u128(0x0192_3456_789a_7bcd_8ef0_1234_5678_9abc);
        assert_eq!(unit_interval(id), unit_interval(id));
        let below = (0..10_000u128)
            .filter(|i| unit_interval(Uuid::from_u128(*i)) < 0.3)
            .count();
        assert!((2_700..3_300).contains(&below), "{below} of 10000 under 0.3");
        assert!((0..1_000u128).all(|i| (0.0..1.0).contains(&unit_interval(Uuid::from_u128(i)))));
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        assert_eq!(random_below(Duration::ZERO), Duration::ZERO);
        let bound = Duration::from_millis(5);
        assert!((0..1_000).all(|_| random_below(bound) < bound));
    }
}
