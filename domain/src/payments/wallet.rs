//! The Wallet aggregate: one per user; its balance never goes below zero (DESIGN §2).
//!
//! The balance includes funds reserved for pending withdrawals; what may be spent or withdrawn is the
//! available part (balance − reserved). Payments and withdrawals change a wallet through their own
//! decisions ([`super::pay_request`], [`super::withdrawal`]); this file holds opening and deposits.
//! Every balance-changing event carries the balance after it, so read models upsert absolute values.

use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoundedContext, Context, Currency, DomainError, DomainEvent, FieldError, Money,
    PaymentRequestId, Role, Timestamp, UserId, WalletId, WithdrawalId,
};

/// Largest single deposit, in minor units (1,000,000.00).
pub const MAX_DEPOSIT_MINOR: i64 = 100_000_000;

/// Commands on a wallet (stream id: [`WalletId::for_user`] of the owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletCommand {
    /// The actor opens their wallet in `currency`.
    Open {
        /// The actor's wallet: [`WalletId::for_user`] of the actor.
        wallet_id: WalletId,
        /// The wallet's currency.
        currency: Currency,
    },
    /// The owner adds funds (the wallet opens in the amount's currency if it is not open yet).
    Deposit {
        /// The actor's wallet: [`WalletId::for_user`] of the actor.
        wallet_id: WalletId,
        /// Positive, at most [`MAX_DEPOSIT_MINOR`].
        amount: Money,
    },
}

/// Events of a wallet stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum WalletEvent {
    /// A user's wallet was opened, empty.
    WalletOpened {
        /// The wallet.
        wallet_id: WalletId,
        /// Its owner.
        owner_id: UserId,
        /// Its currency.
        currency: Currency,
        /// When.
        opened_at: Timestamp,
    },
    /// The owner deposited funds.
    FundsDeposited {
        /// The wallet.
        wallet_id: WalletId,
        /// How much.
        amount: Money,
        /// The balance after.
        balance: Money,
        /// When.
        deposited_at: Timestamp,
    },
    /// A payment request was paid from this wallet.
    WalletDebited {
        /// The wallet.
        wallet_id: WalletId,
        /// The request paid.
        payment_request_id: PaymentRequestId,
        /// How much.
        amount: Money,
        /// The balance after.
        balance: Money,
        /// When.
        debited_at: Timestamp,
    },
    /// A payment request was paid into this wallet.
    WalletCredited {
        /// The wallet.
        wallet_id: WalletId,
        /// The request paid.
        payment_request_id: PaymentRequestId,
        /// How much.
        amount: Money,
        /// The balance after.
        balance: Money,
        /// When.
        credited_at: Timestamp,
    },
    /// Funds were set aside for a withdrawal; the balance is unchanged, the available part shrinks.
    FundsReserved {
        /// The wallet.
        wallet_id: WalletId,
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// How much.
        amount: Money,
        /// The reserved total after.
        reserved: Money,
        /// When.
        reserved_at: Timestamp,
        /// The withdrawal's scheduled time, when the cooldown deferred it past `reserved_at`
        /// (`None` also for events written before the cooldown).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<Timestamp>,
    },
    /// A failed or cancelled withdrawal's reservation was released.
    ReservationReleased {
        /// The wallet.
        wallet_id: WalletId,
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// How much.
        amount: Money,
        /// The reserved total after.
        reserved: Money,
        /// When.
        released_at: Timestamp,
    },
    /// A succeeded withdrawal took its reserved funds out of the wallet.
    FundsWithdrawn {
        /// The wallet.
        wallet_id: WalletId,
        /// The withdrawal.
        withdrawal_id: WithdrawalId,
        /// How much.
        amount: Money,
        /// The balance after.
        balance: Money,
        /// The reserved total after.
        reserved: Money,
        /// When.
        withdrawn_at: Timestamp,
    },
}

impl DomainEvent for WalletEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::WalletOpened { .. } => "WalletOpened",
            Self::FundsDeposited { .. } => "FundsDeposited",
            Self::WalletDebited { .. } => "WalletDebited",
            Self::WalletCredited { .. } => "WalletCredited",
            Self::FundsReserved { .. } => "FundsReserved",
            Self::ReservationReleased { .. } => "ReservationReleased",
            Self::FundsWithdrawn { .. } => "FundsWithdrawn",
        }
    }
}

/// What decisions need to know about a wallet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wallet {
    /// Set once opened.
    pub opened: Option<OpenWallet>,
}

/// An open wallet's decision state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenWallet {
    /// The wallet.
    pub id: WalletId,
    /// Its owner.
    pub owner_id: UserId,
    /// Its currency.
    pub currency: Currency,
    /// Everything in it, in minor units, reserved funds included. Never negative.
    pub balance_minor: i64,
    /// Funds set aside for pending withdrawals, in minor units; at most the balance.
    pub reserved_minor: i64,
    /// The slot of the latest withdrawal requested (its scheduled time, else when it was
    /// reserved): the cooldown window runs from it. A released reservation keeps its slot, since
    /// the window counts requests.
    pub last_withdrawal_slot: Option<Timestamp>,
}

impl OpenWallet {
    /// Everything in the wallet.
    pub fn balance(&self) -> Money {
        Money::new(self.balance_minor, self.currency)
    }

    /// Funds set aside for withdrawals.
    pub fn reserved(&self) -> Money {
        Money::new(self.reserved_minor, self.currency)
    }

    /// What may be paid or withdrawn.
    pub fn available(&self) -> Money {
        Money::new(
            self.balance_minor.saturating_sub(self.reserved_minor),
            self.currency,
        )
    }

    /// Refuse unless `amount` is positive and in the wallet's currency (`field` names the input).
    pub(crate) fn check_amount(&self, amount: Money, field: &str) -> Result<(), DomainError> {
        if !amount.is_positive() {
            Err(DomainError::invalid(field, "must be positive"))
        } else if amount.currency != self.currency {
            Err(DomainError::invalid(
                format!("{field}.currency"),
                format!("the wallet holds {}", self.currency),
            ))
        } else {
            Ok(())
        }
    }

    /// Refuse unless `amount` is available.
    pub(crate) fn ensure_available(&self, amount: Money) -> Result<(), DomainError> {
        if amount.currency != self.currency {
            Err(DomainError::Conflict("currency-mismatch"))
        } else if self.available().minor < amount.minor {
            Err(DomainError::Conflict("insufficient-funds"))
        } else {
            Ok(())
        }
    }

    /// The balance after adding `amount`, or 409 when it would overflow.
    pub(crate) fn balance_plus(&self, amount: Money) -> Result<Money, DomainError> {
        if amount.currency != self.currency {
            return Err(DomainError::Conflict("currency-mismatch"));
        }
        self.balance()
            .checked_add(amount)
            .ok_or(DomainError::Conflict("wallet-limit-exceeded"))
    }
}

impl Wallet {
    /// The open wallet, or 404.
    pub fn existing(&self) -> Result<&OpenWallet, DomainError> {
        self.opened.as_ref().ok_or(DomainError::NotFound("wallet"))
    }
}

impl Aggregate for Wallet {
    const STREAM_TYPE: &'static str = "wallet";
    const CONTEXT: BoundedContext = BoundedContext::Payments;
    type Event = WalletEvent;

    fn evolve(&mut self, event: &WalletEvent) {
        if let WalletEvent::WalletOpened {
            wallet_id,
            owner_id,
            currency,
            ..
        } = event
        {
            self.opened = Some(OpenWallet {
                id: *wallet_id,
                owner_id: *owner_id,
                currency: *currency,
                balance_minor: 0,
                reserved_minor: 0,
                last_withdrawal_slot: None,
            });
            return;
        }
        let Some(w) = &mut self.opened else { return };
        // Events carry the absolute values after them: apply those, never recompute.
        match event {
            WalletEvent::WalletOpened { .. } => {}
            WalletEvent::FundsDeposited { balance, .. }
            | WalletEvent::WalletDebited { balance, .. }
            | WalletEvent::WalletCredited { balance, .. } => w.balance_minor = balance.minor,
            WalletEvent::FundsReserved {
                reserved,
                reserved_at,
                not_before,
                ..
            } => {
                w.reserved_minor = reserved.minor;
                w.last_withdrawal_slot = Some(not_before.unwrap_or(*reserved_at));
            }
            WalletEvent::ReservationReleased { reserved, .. } => w.reserved_minor = reserved.minor,
            WalletEvent::FundsWithdrawn {
                balance, reserved, ..
            } => {
                w.balance_minor = balance.minor;
                w.reserved_minor = reserved.minor;
            }
        }
    }
}

/// The event opening `owner`'s wallet in `currency`.
pub(crate) fn opened(owner: UserId, currency: Currency, at: Timestamp) -> (WalletEvent, OpenWallet) {
    let wallet_id = WalletId::for_user(owner);
    (
        WalletEvent::WalletOpened {
            wallet_id,
            owner_id: owner,
            currency,
            opened_at: at,
        },
        OpenWallet {
            id: wallet_id,
            owner_id: owner,
            currency,
            balance_minor: 0,
            reserved_minor: 0,
            last_withdrawal_slot: None,
        },
    )
}

/// Refuse unless the actor owns the wallet.
pub(crate) fn ensure_owner(w: &OpenWallet, ctx: &Context) -> Result<(), DomainError> {
    if w.owner_id == ctx.actor.id {
        Ok(())
    } else {
        Err(DomainError::Forbidden("not-the-wallet-owner"))
    }
}

/// Decide what a command on `wallet` emits.
pub fn decide(
    wallet: &Wallet,
    command: &WalletCommand,
    ctx: &Context,
) -> Result<Vec<WalletEvent>, DomainError> {
    if ctx.actor.role == Role::Admin && wallet.opened.is_none() {
        return Err(DomainError::Forbidden("admins-have-no-wallet"));
    }
    let (WalletCommand::Open { wallet_id, .. } | WalletCommand::Deposit { wallet_id, .. }) = command;
    // The stream addressed must be the actor's own wallet, even before it exists; the system
    // actor (the nil user) owns none.
    if ctx.actor.is_system() || *wallet_id != WalletId::for_user(ctx.actor.id) {
        return Err(DomainError::Forbidden("not-the-wallet-owner"));
    }
    if wallet.opened.as_ref().is_some_and(|w| w.id != *wallet_id) {
        return Err(DomainError::Conflict("wallet-mismatch"));
    }
    match command {
        WalletCommand::Open { currency, .. } => {
            if let Some(w) = &wallet.opened {
                ensure_owner(w, ctx)?;
                return Err(DomainError::Conflict("wallet-already-open"));
            }
            Ok(vec![opened(ctx.actor.id, *currency, ctx.now).0])
        }
        WalletCommand::Deposit { amount, .. } => {
            let mut events = Vec::new();
            let w = match &wallet.opened {
                Some(w) => {
                    ensure_owner(w, ctx)?;
                    w.clone()
                }
                None => {
                    let (event, w) = opened(ctx.actor.id, amount.currency, ctx.now);
                    events.push(event);
                    w
                }
            };
            w.check_amount(*amount, "amount")?;
            if amount.minor > MAX_DEPOSIT_MINOR {
                return Err(DomainError::Invalid(vec![FieldError::new(
                    "amount",
                    "at most 1000000.00 per deposit",
                )]));
            }
            let balance = w.balance_plus(*amount)?;
            events.push(WalletEvent::FundsDeposited {
                wallet_id: w.id,
                amount: *amount,
                balance,
                deposited_at: ctx.now,
            });
            Ok(events)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::Actor;
    use crate::testing::*;

    fn open(owner: UserId) -> WalletCommand {
        WalletCommand::Open {
            wallet_id: WalletId::for_user(owner),
            currency: Currency::Usd,
        }
    }

    fn deposit(owner: UserId, amount: Money) -> WalletCommand {
        WalletCommand::Deposit {
            wallet_id: WalletId::for_user(owner),
            amount,
        }
    }

    /// The wallet of `owner`, opened in USD.
    pub fn opened_usd(owner: UserId) -> WalletEvent {
        opened(owner, Currency::Usd, now()).0
    }

    /// `minor` USD cents deposited into `owner`'s wallet, leaving `balance`.
    pub fn deposited(owner: UserId, minor: i64, balance: i64) -> WalletEvent {
        WalletEvent::FundsDeposited {
            wallet_id: WalletId::for_user(owner),
            amount: usd(minor),
            balance: usd(balance),
            deposited_at: now(),
        }
    }

    /// `owner`'s wallet holding `minor` USD cents.
    pub fn wallet_with(owner: UserId, minor: i64) -> Wallet {
        if minor == 0 {
            Wallet::fold(&[opened_usd(owner)])
        } else {
            Wallet::fold(&[opened_usd(owner), deposited(owner, minor, minor)])
        }
    }

    #[test]
    fn a_user_opens_their_wallet() {
        given::<Wallet>([])
            .when(|w| decide(w, &open(CLIENT_ID), &ctx(CLIENT)))
            .then([opened_usd(CLIENT_ID)]);
    }

    #[test]
    fn a_wallet_is_opened_once() {
        given::<Wallet>([opened_usd(CLIENT_ID)])
            .when(|w| decide(w, &open(CLIENT_ID), &ctx(CLIENT)))
            .then_err(DomainError::Conflict("wallet-already-open"));
    }

    #[test]
    fn only_the_owner_acts_on_a_wallet() {
        given::<Wallet>([opened_usd(CLIENT_ID)])
            .when(|w| decide(w, &deposit(CLIENT_ID, usd(100)), &ctx(FREELANCER)))
            .then_err(DomainError::Forbidden("not-the-wallet-owner"));
        given::<Wallet>([opened_usd(CLIENT_ID)])
            .when(|w| decide(w, &open(CLIENT_ID), &ctx(OTHER_CLIENT)))
            .then_err(DomainError::Forbidden("not-the-wallet-owner"));
    }

    #[test]
    fn nobody_deposits_into_a_wallet_not_yet_theirs() {
        given::<Wallet>([])
            .when(|w| decide(w, &deposit(FREELANCER_ID, usd(100)), &ctx(CLIENT)))
            .then_err(DomainError::Forbidden("not-the-wallet-owner"));
    }

    #[test]
    fn a_command_must_address_the_stream_it_runs_on() {
        let owner = Actor::new(OTHER_CLIENT_ID, Role::Client);
        given::<Wallet>([opened_usd(CLIENT_ID)])
            .when(|w| decide(w, &deposit(OTHER_CLIENT_ID, usd(100)), &ctx(owner)))
            .then_err(DomainError::Conflict("wallet-mismatch"));
    }

    #[test]
    fn admins_have_no_wallet() {
        given::<Wallet>([])
            .when(|w| decide(w, &deposit(CLIENT_ID, usd(100)), &ctx(ADMIN)))
            .then_err(DomainError::Forbidden("admins-have-no-wallet"));
    }

    #[test]
    fn the_system_has_no_wallet() {
        // Its id is the nil user: the stream that would be "its" wallet is nobody's.
        for command in [
            open(SYSTEM.id),
            deposit(SYSTEM.id, usd(100)),
            deposit(CLIENT_ID, usd(100)),
        ] {
            given::<Wallet>([])
                .when(|w| decide(w, &command, &ctx(SYSTEM)))
                .then_err(DomainError::Forbidden("not-the-wallet-owner"));
        }
        given::<Wallet>([opened_usd(CLIENT_ID)])
            .when(|w| decide(w, &deposit(CLIENT_ID, usd(100)), &ctx(SYSTEM)))
            .then_err(DomainError::Forbidden("not-the-wallet-owner"));
    }

    #[test]
    fn the_owner_deposits_funds() {
        given::<Wallet>([opened_usd(CLIENT_ID), deposited(CLIENT_ID, 500, 500)])
            .when(|w| decide(w, &deposit(CLIENT_ID, usd(250)), &ctx(CLIENT)))
            .then([deposited(CLIENT_ID, 250, 750)]);
    }

    #[test]
    fn a_first_deposit_opens_the_wallet() {
        given::<Wallet>([])
            .when(|w| decide(w, &deposit(CLIENT_ID, usd(250)), &ctx(CLIENT)))
            .then([opened_usd(CLIENT_ID), deposited(CLIENT_ID, 250, 250)]);
    }

    #[test]
    fn a_deposit_is_positive_bounded_and_in_the_wallet_currency() {
        for (amount, field) in [
            (usd(0), "amount"),
            (usd(-5), "amount"),
            (usd(MAX_DEPOSIT_MINOR + 1), "amount"),
            (eur(100), "amount.currency"),
        ] {
            given::<Wallet>([opened_usd(CLIENT_ID)])
                .when(|w| decide(w, &deposit(CLIENT_ID, amount), &ctx(CLIENT)))
                .then_invalid(&[field]);
        }
    }

    #[test]
    fn a_deposit_that_would_overflow_is_refused() {
        let near_max = Wallet::fold(&[opened_usd(CLIENT_ID), deposited(CLIENT_ID, 1, i64::MAX - 10)]);
        given_state(near_max)
            .when(|w| decide(w, &deposit(CLIENT_ID, usd(100)), &ctx(CLIENT)))
            .then_err(DomainError::Conflict("wallet-limit-exceeded"));
    }

    #[test]
    fn available_funds_exclude_reservations() {
        let mut w = wallet_with(CLIENT_ID, 1_000);
        w.evolve(&WalletEvent::FundsReserved {
            wallet_id: WalletId::for_user(CLIENT_ID),
            withdrawal_id: WithdrawalId::from_uuid(uuid::Uuid::from_u128(1)),
            amount: usd(300),
            reserved: usd(300),
            reserved_at: now(),
            not_before: None,
        });
        let open = w.existing().unwrap();
        assert_eq!(
            (open.balance(), open.reserved(), open.available()),
            (usd(1_000), usd(300), usd(700))
        );
    }
}
