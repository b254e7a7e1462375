//! The Withdrawal aggregate: tracked background work against the payout provider (DESIGN §9).
//!
//! PENDING | SCHEDULED → PROCESSING → SUCCEEDED | FAILED | CANCELLED. Requesting reserves the funds
//! in the wallet first; success takes the reserved funds out, failure or cancellation releases them.
//! Every decision reads the wallet and may append to it, in the same transaction as the withdrawal.
//!
//! One withdrawal per wallet per [`Cooldown`] window (§9), decided on the wallet stream: each
//! reservation records its slot (when it may be paid out) in the wallet, and the next request reads
//! it. Inside the window, policy [`CooldownPolicy::Reject`] refuses with the time to retry;
//! [`CooldownPolicy::Defer`] reserves at once and schedules the withdrawal for the next free slot,
//! so concurrent requests queue one window apart. Since the request appends to the wallet with an
//! expected version, two racing requests cannot take the same slot.
//!
//! The payout worker is the system actor ([`crate::Actor::system`]); it starts a scheduled
//! withdrawal only once due. The owner requests and may cancel a withdrawal that has not started.

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoundedContext, Context, DomainError, DomainEvent, Money, Timestamp, UserId, WalletId,
    WithdrawalId,
    payments::wallet::{self, Wallet, WalletEvent},
};

/// What to do with a withdrawal requested inside the wallet's cooldown window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CooldownPolicy {
    /// Refuse it (429), naming when the wallet's next slot opens.
    Reject,
    /// Accept it, reserving the funds at once, and schedule it for the wallet's next free slot.
    Defer,
}

/// One withdrawal per wallet per `window` (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    /// The time between two withdrawals of a wallet; zero (or negative) means no limit.
    pub window: TimeDelta,
    /// What happens to a request inside the window.
    pub policy: CooldownPolicy,
}

impl Cooldown {
    /// No cooldown: every request is paid out as soon as a worker takes it.
    pub const NONE: Cooldown = Cooldown {
        window: TimeDelta::zero(),
        policy: CooldownPolicy::Reject,
    };

    /// The earliest time of the next withdrawal after one at slot `last`; `None` when nothing
    /// limits it (no previous withdrawal, no window, or a window past the end of time).
    pub fn next_slot(self, last: Option<Timestamp>) -> Option<Timestamp> {
        if self.window <= TimeDelta::zero() {
            return None;
        }
        last?
            .as_datetime()
            .checked_add_signed(self.window)
            .map(Timestamp::from_datetime)
    }
}

/// Commands on a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithdrawalCommand {
    /// The wallet's owner asks to withdraw `amount`; it is reserved at once.
    Request {
        /// The new withdrawal's id (v7, chosen by the caller).
        withdrawal_id: WithdrawalId,
        /// Positive, in the wallet's currency, at most the available funds.
        amount: Money,
        /// The deployment's cooldown: inside the window the request is refused or scheduled.
        cooldown: Cooldown,
    },
    /// The payout worker picked it up (a replay on a processing withdrawal changes nothing); a
    /// scheduled one only once its time has come.
    Start,
    /// The provider paid out (a replay on a succeeded withdrawal changes nothing).
    Succeed {
        /// The provider's reference for the payout.
        provider_reference: String,
    },
    /// The provider refused: the reservation is released.
    Fail {
        /// Why.
        reason: String,
    },
    /// Stopped (by the owner while pending or scheduled, or by the worker on timeout): the
    /// reservation is released.
    Cancel {
        /// Why.
        reason: String,
    },
}

/// Events of a withdrawal stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum WithdrawalEvent {
    /// A withdrawal was requested (the wallet got `FundsReserved`).
    WithdrawalRequested {
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// The wallet.
        wallet_id: WalletId,
        /// Its owner.
        owner_id: UserId,
        /// How much.
        amount: Money,
        /// When.
        requested_at: Timestamp,
        /// When it may be paid out, if deferred past `requested_at` by the cooldown (else `None`).
        /// Schema 2 always writes it (`null` when not deferred) and requires it on read; schema 1
        /// left it out when `None` and is lifted by the ledger's upcaster
        /// (`withdrawal_requested_v1_to_v2` in infra), so no serde default stands in for it here.
        // `deserialize_with` turns off serde's implicit "a missing `Option` reads as `None`".
        #[serde(deserialize_with = "Option::deserialize")]
        scheduled_for: Option<Timestamp>,
    },
    /// PENDING | SCHEDULED → PROCESSING.
    WithdrawalStarted {
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// When.
        started_at: Timestamp,
    },
    /// PROCESSING → SUCCEEDED (the wallet got `FundsWithdrawn`).
    WithdrawalSucceeded {
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// The provider's reference.
        provider_reference: String,
        /// When.
        succeeded_at: Timestamp,
    },
    /// → FAILED (the wallet got `ReservationReleased`).
    WithdrawalFailed {
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// Why.
        reason: String,
        /// When.
        failed_at: Timestamp,
    },
    /// → CANCELLED (the wallet got `ReservationReleased`).
    WithdrawalCancelled {
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// Why.
        reason: String,
        /// When.
        cancelled_at: Timestamp,
    },
}

impl DomainEvent for WithdrawalEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::WithdrawalRequested { .. } => "WithdrawalRequested",
            Self::WithdrawalStarted { .. } => "WithdrawalStarted",
            Self::WithdrawalSucceeded { .. } => "WithdrawalSucceeded",
            Self::WithdrawalFailed { .. } => "WithdrawalFailed",
            Self::WithdrawalCancelled { .. } => "WithdrawalCancelled",
        }
    }

    fn schema_version(&self) -> u16 {
        match self {
            // 2: `scheduled_for` always written (1 left it out when not deferred).
            Self::WithdrawalRequested { .. } => 2,
            Self::WithdrawalStarted { .. }
            | Self::WithdrawalSucceeded { .. }
            | Self::WithdrawalFailed { .. }
            | Self::WithdrawalCancelled { .. } => 1,
        }
    }
}

/// Where a withdrawal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WithdrawalStatus {
    /// Funds reserved, waiting for a worker.
    Pending,
    /// Requested inside the cooldown window; funds reserved; waits for its time.
    Scheduled,
    /// A worker is paying out.
    Processing,
    /// Paid out.
    Succeeded,
    /// The provider refused; funds released.
    Failed,
    /// Stopped; funds released.
    Cancelled,
}

impl WithdrawalStatus {
    /// Is the withdrawal over?
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// What decisions need to know about a withdrawal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Withdrawal {
    /// Set once requested.
    pub requested: Option<RequestedWithdrawal>,
}

/// A requested withdrawal's decision state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedWithdrawal {
    /// The withdrawal.
    pub id: WithdrawalId,
    /// The wallet.
    pub wallet_id: WalletId,
    /// Its owner.
    pub owner_id: UserId,
    /// How much.
    pub amount: Money,
    /// Where it stands.
    pub status: WithdrawalStatus,
    /// When it may start, if deferred by the cooldown.
    pub scheduled_for: Option<Timestamp>,
}

impl Aggregate for Withdrawal {
    const STREAM_TYPE: &'static str = "withdrawal";
    const CONTEXT: BoundedContext = BoundedContext::Payments;
    type Event = WithdrawalEvent;

    fn evolve(&mut self, event: &WithdrawalEvent) {
        let status = match event {
            WithdrawalEvent::WithdrawalRequested {
                withdrawal_id,
                wallet_id,
                owner_id,
                amount,
                scheduled_for,
                ..
            } => {
                self.requested = Some(RequestedWithdrawal {
                    id: *withdrawal_id,
                    wallet_id: *wallet_id,
                    owner_id: *owner_id,
                    amount: *amount,
                    status: if scheduled_for.is_some() {
                        WithdrawalStatus::Scheduled
                    } else {
                        WithdrawalStatus::Pending
                    },
                    scheduled_for: *scheduled_for,
                });
                return;
            }
            WithdrawalEvent::WithdrawalStarted { .. } => WithdrawalStatus::Processing,
            WithdrawalEvent::WithdrawalSucceeded { .. } => WithdrawalStatus::Succeeded,
            WithdrawalEvent::WithdrawalFailed { .. } => WithdrawalStatus::Failed,
            WithdrawalEvent::WithdrawalCancelled { .. } => WithdrawalStatus::Cancelled,
        };
        if let Some(w) = &mut self.requested {
            w.status = status;
        }
    }
}

/// What a withdrawal decision appends, per stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WithdrawalEvents {
    /// To the wallet stream.
    pub wallet: Vec<WalletEvent>,
    /// To the withdrawal stream.
    pub withdrawal: Vec<WithdrawalEvent>,
}

/// Decide a command on `withdrawal`, reading and changing its `wallet`.
pub fn decide(
    (wallet, withdrawal): (&Wallet, &Withdrawal),
    command: &WithdrawalCommand,
    ctx: &Context,
) -> Result<WithdrawalEvents, DomainError> {
    let is_worker = ctx.actor.is_system();
    if let WithdrawalCommand::Request {
        withdrawal_id,
        amount,
        cooldown,
    } = command
    {
        let w = wallet.existing()?;
        wallet::ensure_owner(w, ctx)?;
        if withdrawal.requested.is_some() {
            return Err(DomainError::Conflict("withdrawal-exists"));
        }
        w.check_amount(*amount, "amount")?;
        w.ensure_available(*amount)?;
        let reserved = w
            .reserved()
            .checked_add(*amount)
            .ok_or(DomainError::Conflict("insufficient-funds"))?;
        // The cooldown comes last: an invalid or unaffordable request is refused as such, not
        // told to come back later.
        let scheduled_for = match cooldown.next_slot(w.last_withdrawal_slot) {
            Some(next) if next > ctx.now => match cooldown.policy {
                CooldownPolicy::Reject => {
                    return Err(DomainError::TooSoon {
                        code: "withdrawal-cooldown",
                        retry_at: next,
                    });
                }
                CooldownPolicy::Defer => Some(next),
            },
            _ => None,
        };
        return Ok(WithdrawalEvents {
            wallet: vec![WalletEvent::FundsReserved {
                wallet_id: w.id,
                withdrawal_id: *withdrawal_id,
                amount: *amount,
                reserved,
                reserved_at: ctx.now,
                not_before: scheduled_for,
            }],
            withdrawal: vec![WithdrawalEvent::WithdrawalRequested {
                withdrawal_id: *withdrawal_id,
                wallet_id: w.id,
                owner_id: w.owner_id,
                amount: *amount,
                requested_at: ctx.now,
                scheduled_for,
            }],
        });
    }

    let wd = withdrawal
        .requested
        .as_ref()
        .ok_or(DomainError::NotFound("withdrawal"))?;
    if ctx.actor.id != wd.owner_id && !is_worker {
        return Err(DomainError::Forbidden("not-the-wallet-owner"));
    }
    let w = wallet.existing()?;
    if w.id != wd.wallet_id {
        return Err(DomainError::Conflict("wallet-mismatch"));
    }
    let only_worker = || {
        if is_worker {
            Ok(())
        } else {
            Err(DomainError::Forbidden("only-the-payout-worker"))
        }
    };
    let withdrawal_only = |event| {
        Ok(WithdrawalEvents {
            wallet: vec![],
            withdrawal: vec![event],
        })
    };
    let released = || -> Result<WalletEvent, DomainError> {
        let reserved = w
            .reserved()
            .checked_sub(wd.amount)
            .filter(|r| r.minor >= 0)
            .ok_or(DomainError::Conflict("reservation-missing"))?;
        Ok(WalletEvent::ReservationReleased {
            wallet_id: w.id,
            withdrawal_id: wd.id,
            amount: wd.amount,
            reserved,
            released_at: ctx.now,
        })
    };
    match command {
        WithdrawalCommand::Request { .. } => Err(DomainError::Conflict("withdrawal-exists")),
        WithdrawalCommand::Start => {
            only_worker()?;
            match wd.status {
                WithdrawalStatus::Scheduled if wd.scheduled_for.is_some_and(|at| ctx.now < at) => {
                    Err(DomainError::Conflict("withdrawal-not-due"))
                }
                WithdrawalStatus::Pending | WithdrawalStatus::Scheduled => {
                    withdrawal_only(WithdrawalEvent::WithdrawalStarted {
                        withdrawal_id: wd.id,
                        started_at: ctx.now,
                    })
                }
                // DESIGN §9: a redelivered task resumes the same withdrawal.
                WithdrawalStatus::Processing => Ok(WithdrawalEvents::default()),
                _ => Err(DomainError::Conflict("withdrawal-finished")),
            }
        }
        WithdrawalCommand::Succeed { provider_reference } => {
            only_worker()?;
            match wd.status {
                WithdrawalStatus::Processing => {}
                WithdrawalStatus::Succeeded => return Ok(WithdrawalEvents::default()),
                WithdrawalStatus::Pending | WithdrawalStatus::Scheduled => {
                    return Err(DomainError::Conflict("withdrawal-not-processing"));
                }
                _ => return Err(DomainError::Conflict("withdrawal-finished")),
            }
            let (balance, reserved) = match (
                w.balance().checked_sub(wd.amount),
                w.reserved().checked_sub(wd.amount),
            ) {
                (Some(b), Some(r)) if b.minor >= 0 && r.minor >= 0 => (b, r),
                _ => return Err(DomainError::Conflict("reservation-missing")),
            };
            Ok(WithdrawalEvents {
                wallet: vec![WalletEvent::FundsWithdrawn {
                    wallet_id: w.id,
                    withdrawal_id: wd.id,
                    amount: wd.amount,
                    balance,
                    reserved,
                    withdrawn_at: ctx.now,
                }],
                withdrawal: vec![WithdrawalEvent::WithdrawalSucceeded {
                    withdrawal_id: wd.id,
                    provider_reference: provider_reference.clone(),
                    succeeded_at: ctx.now,
                }],
            })
        }
        WithdrawalCommand::Fail { reason } => {
            only_worker()?;
            if wd.status.is_final() {
                return Err(DomainError::Conflict("withdrawal-finished"));
            }
            Ok(WithdrawalEvents {
                wallet: vec![released()?],
                withdrawal: vec![WithdrawalEvent::WithdrawalFailed {
                    withdrawal_id: wd.id,
                    reason: reason.clone(),
                    failed_at: ctx.now,
                }],
            })
        }
        WithdrawalCommand::Cancel { reason } => {
            if wd.status.is_final() {
                return Err(DomainError::Conflict("withdrawal-finished"));
            }
            // The owner may cancel a pending or scheduled withdrawal, not one being paid out.
            if wd.status == WithdrawalStatus::Processing && !is_worker {
                return Err(DomainError::Conflict("withdrawal-processing"));
            }
            Ok(WithdrawalEvents {
                wallet: vec![released()?],
                withdrawal: vec![WithdrawalEvent::WithdrawalCancelled {
                    withdrawal_id: wd.id,
                    reason: reason.clone(),
                    cancelled_at: ctx.now,
                }],
            })
        }
    }
}

#[cfg(test)]
mod tests;
