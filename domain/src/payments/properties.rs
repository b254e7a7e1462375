//! Property tests: random deposits, payment requests, payments and withdrawals over four users'
//! wallets, checking after every step that no balance goes below zero, that reservations match the
//! open withdrawals, that money is conserved, that a payment request is paid once and finishes
//! (paid, expired or cancelled) once, that a withdrawal keeps the cooldown window (refused or
//! scheduled for the next free slot, and started only once due), that only the
//! system actor sends the sagas' and the payout worker's commands and never a user's, and that
//! replaying the events reproduces every state. A second, narrower property drives many requests
//! into one wallet under each cooldown policy.

use proptest::prelude::*;
use std::fmt::Debug;
use uuid::Uuid;

use super::{
    pay_request::{self, PayRequest},
    payment_request::{
        self, PaymentRequest, PaymentRequestCommand, PaymentRequestEvent, PaymentRequestStatus,
    },
    wallet::{self, Wallet, WalletCommand, WalletEvent},
    withdrawal::{
        self, Cooldown, CooldownPolicy, Withdrawal, WithdrawalCommand, WithdrawalEvent, WithdrawalStatus,
    },
};
use crate::testing::*;
use crate::{
    Actor, Aggregate, ContractId, DomainError, MilestoneId, PaymentRequestId, WalletId, WithdrawalId,
};

/// Wallet owners; index 4 is the admin and index 5 the system actor (the payment and deadline
/// sagas, the payout worker), neither of whom owns a wallet.
const ACTORS: [Actor; 6] = [CLIENT, OTHER_CLIENT, FREELANCER, OTHER_FREELANCER, ADMIN, SYSTEM];
const USERS: usize = 4;
const THE_SYSTEM: usize = 5;
const SLOTS: usize = 4;
const DAY: i64 = 86_400;
/// The cooldown window of the property tests, in seconds.
const WINDOW: i64 = 300;

/// No limit, then a window with each policy.
fn cooldowns() -> [Cooldown; 3] {
    let window = chrono::TimeDelta::seconds(WINDOW);
    [
        Cooldown::NONE,
        Cooldown {
            window,
            policy: CooldownPolicy::Reject,
        },
        Cooldown {
            window,
            policy: CooldownPolicy::Defer,
        },
    ]
}

fn milestone(slot: usize) -> MilestoneId {
    MilestoneId::from_uuid(Uuid::from_u128(0x8000 + slot as u128))
}

fn wid(slot: usize) -> WithdrawalId {
    WithdrawalId::from_uuid(Uuid::from_u128(0x9000 + slot as u128))
}

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        user: usize,
        actor: usize,
        minor: i64,
    },
    CreateRequest {
        slot: usize,
        payer: usize,
        payee: usize,
        minor: i64,
        actor: usize,
    },
    Pay {
        slot: usize,
        actor: usize,
    },
    Expire {
        slot: usize,
        actor: usize,
        days: i64,
    },
    CancelRequest {
        slot: usize,
        actor: usize,
    },
    Withdraw {
        slot: usize,
        user: usize,
        actor: usize,
        minor: i64,
        /// Index into [`COOLDOWNS`].
        cooldown: usize,
        /// Seconds the withdrawal clock moves on first.
        tick: i64,
    },
    Start {
        slot: usize,
        actor: usize,
        /// Seconds the withdrawal clock moves on first.
        tick: i64,
    },
    Succeed {
        slot: usize,
        actor: usize,
    },
    Fail {
        slot: usize,
        actor: usize,
    },
    Cancel {
        slot: usize,
        actor: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SLOTS;
    // Mostly the plausible actor (owners deposit and withdraw, payers pay, the system runs the sagas
    // and the payout worker), sometimes anyone.
    let user = prop_oneof![4 => 0..USERS, 1 => 0..ACTORS.len()];
    let payer = prop_oneof![3 => 0..2usize, 1 => 0..ACTORS.len()];
    let system = prop_oneof![3 => Just(THE_SYSTEM), 1 => 0..ACTORS.len()];
    // The owner cancels a pending withdrawal, the worker one that timed out.
    let canceller = prop_oneof![2 => Just(THE_SYSTEM), 2 => 0..USERS, 1 => 0..ACTORS.len()];
    // A withdrawal is mostly asked by its wallet's owner (so the cooldown is reached), else anyone.
    let stranger = prop_oneof![4 => Just(None), 1 => (0..ACTORS.len()).prop_map(Some)];
    // Mostly inside the cooldown window, sometimes past it.
    let tick = prop_oneof![3 => 0..WINDOW / 5, 1 => 0..2 * WINDOW];
    prop_oneof![
        3 => (0..USERS, user, -100..6_000i64)
            .prop_map(|(user, actor, minor)| Op::Deposit { user, actor, minor }),
        2 => (s.clone(), 0..2usize, 2..4usize, -10..5_000i64, system.clone())
            .prop_map(|(slot, payer, payee, minor, actor)| Op::CreateRequest { slot, payer, payee, minor, actor }),
        3 => (s.clone(), payer).prop_map(|(slot, actor)| Op::Pay { slot, actor }),
        1 => (s.clone(), system.clone(), 0..10i64).prop_map(|(slot, actor, days)| Op::Expire { slot, actor, days }),
        1 => (s.clone(), system.clone()).prop_map(|(slot, actor)| Op::CancelRequest { slot, actor }),
        3 => (s.clone(), 0..USERS, stranger, -10..3_000i64, 0..3usize, tick.clone())
            .prop_map(|(slot, user, stranger, minor, cooldown, tick)| {
                Op::Withdraw { slot, user, actor: stranger.unwrap_or(user), minor, cooldown, tick }
            }),
        2 => (s.clone(), system.clone(), tick)
            .prop_map(|(slot, actor, tick)| Op::Start { slot, actor, tick }),
        2 => (s.clone(), system.clone()).prop_map(|(slot, actor)| Op::Succeed { slot, actor }),
        1 => (s.clone(), system.clone()).prop_map(|(slot, actor)| Op::Fail { slot, actor }),
        1 => (s, canceller).prop_map(|(slot, actor)| Op::Cancel { slot, actor }),
    ]
}

#[derive(Default)]
struct World {
    wallets: [Stream<Wallet>; USERS],
    requests: [Stream<PaymentRequest>; SLOTS],
    /// Each request slot's (payer, payee) wallet indices once created.
    parties: [Option<(usize, usize)>; SLOTS],
    withdrawals: [Stream<Withdrawal>; SLOTS],
    /// Each withdrawal slot's wallet index once requested.
    owners: [Option<usize>; SLOTS],
    /// Seconds after `now()` of the withdrawal commands: moves forward only.
    clock: i64,
}

fn user_index(actor: &Actor) -> Option<usize> {
    (0..USERS).find(|i| ACTORS[*i].id == actor.id)
}

/// A saga's command: a user is refused with `system-only` (or `NotFound` when the stream is missing,
/// which is checked first); the system never is.
#[track_caller]
fn saga_only<T: Debug>(actor: Actor, outcome: Result<T, DomainError>) -> Result<T, DomainError> {
    match &outcome {
        Err(DomainError::NotFound(_)) => {}
        Err(DomainError::Forbidden("system-only")) => {
            assert!(!actor.is_system(), "the system is refused its own command")
        }
        other => assert!(
            actor.is_system(),
            "only the system sends a saga's command: got {other:?}"
        ),
    }
    outcome
}

/// A user's command: never done by the system actor, which is nobody (the nil user id).
#[track_caller]
fn user_only<T: Debug>(actor: Actor, outcome: Result<T, DomainError>) -> Result<T, DomainError> {
    if actor.is_system() {
        assert!(
            matches!(outcome, Err(DomainError::Forbidden(_) | DomainError::NotFound(_))),
            "the system does no user's command: got {outcome:?}"
        );
    }
    outcome
}

impl World {
    fn step(&mut self, op: &Op) -> Result<(), DomainError> {
        match *op {
            Op::Deposit { user, actor, minor } => {
                let command = WalletCommand::Deposit {
                    wallet_id: WalletId::for_user(ACTORS[user].id),
                    amount: usd(minor),
                };
                let outcome = wallet::decide(&self.wallets[user].state, &command, &ctx(ACTORS[actor]));
                let events = user_only(ACTORS[actor], outcome)?;
                assert_eq!(user_index(&ACTORS[actor]), Some(user), "only the owner deposits");
                self.wallets[user].apply(&events);
            }
            Op::CreateRequest {
                slot,
                payer,
                payee,
                minor,
                actor,
            } => {
                let command = PaymentRequestCommand::Create {
                    payment_request_id: PaymentRequestId::for_milestone(milestone(slot)),
                    contract_id: ContractId::from_uuid(Uuid::from_u128(0xC0)),
                    milestone_id: milestone(slot),
                    client_id: ACTORS[payer].id,
                    freelancer_id: ACTORS[payee].id,
                    amount: usd(minor),
                    due_at: later(7 * DAY),
                };
                let outcome =
                    payment_request::decide(&self.requests[slot].state, &command, &ctx(ACTORS[actor]));
                let events = saga_only(ACTORS[actor], outcome)?;
                assert_eq!(ACTORS[actor], SYSTEM, "only the payment saga requests payment");
                if self.parties[slot].is_none() {
                    self.parties[slot] = Some((payer, payee));
                }
                self.requests[slot].apply(&events);
            }
            Op::Pay { slot, actor } => {
                let (payer, payee) = self.parties[slot].unwrap_or((0, 2));
                let outcome = pay_request::decide(
                    (
                        &self.requests[slot].state,
                        &self.wallets[payer].state,
                        &self.wallets[payee].state,
                    ),
                    &PayRequest,
                    &ctx(ACTORS[actor]),
                );
                let out = user_only(ACTORS[actor], outcome)?;
                assert_eq!(actor, payer, "only the payer pays");
                self.requests[slot].apply(&out.request);
                self.wallets[payer].apply(&out.client_wallet);
                self.wallets[payee].apply(&out.freelancer_wallet);
            }
            Op::Expire { slot, actor, days } => {
                let outcome = payment_request::decide(
                    &self.requests[slot].state,
                    &PaymentRequestCommand::Expire,
                    &ctx_at(ACTORS[actor], later(days * DAY)),
                );
                let events = saga_only(ACTORS[actor], outcome)?;
                assert_eq!(ACTORS[actor], SYSTEM, "only the deadline saga expires a request");
                self.requests[slot].apply(&events);
            }
            Op::CancelRequest { slot, actor } => {
                let before = self.requests[slot].state.created.clone();
                let command = PaymentRequestCommand::Cancel {
                    reason: "stop".into(),
                };
                let outcome =
                    payment_request::decide(&self.requests[slot].state, &command, &ctx(ACTORS[actor]));
                let events = saga_only(ACTORS[actor], outcome)?;
                assert_eq!(ACTORS[actor], SYSTEM, "only a saga cancels a request");
                assert_eq!(
                    before.map(|r| r.status),
                    Some(PaymentRequestStatus::Pending),
                    "only a pending request is cancelled"
                );
                self.requests[slot].apply(&events);
            }
            Op::Withdraw {
                slot,
                user,
                actor,
                minor,
                cooldown,
                tick,
            } => {
                self.clock += tick;
                let at = later(self.clock);
                let cooldown = cooldowns()[cooldown];
                let command = WithdrawalCommand::Request {
                    withdrawal_id: wid(slot),
                    amount: usd(minor),
                    cooldown,
                };
                let last_slot = self.wallets[user]
                    .state
                    .opened
                    .as_ref()
                    .and_then(|w| w.last_withdrawal_slot);
                let outcome = withdrawal::decide(
                    (&self.wallets[user].state, &self.withdrawals[slot].state),
                    &command,
                    &ctx_at(ACTORS[actor], at),
                );
                let next = cooldown.next_slot(last_slot).filter(|next| *next > at);
                if let Err(DomainError::TooSoon { code, retry_at }) = &outcome {
                    assert_eq!(*code, "withdrawal-cooldown");
                    assert_eq!(cooldown.policy, CooldownPolicy::Reject, "only reject refuses");
                    assert_eq!(Some(*retry_at), next, "retry when the window ends");
                }
                let out = user_only(ACTORS[actor], outcome)?;
                assert_eq!(user_index(&ACTORS[actor]), Some(user), "only the owner withdraws");
                let requested = Withdrawal::fold(&out.withdrawal).requested.expect("requested");
                match cooldown.policy {
                    CooldownPolicy::Reject => {
                        assert_eq!(next, None, "reject accepts outside the window only")
                    }
                    CooldownPolicy::Defer => {
                        assert_eq!(
                            requested.scheduled_for, next,
                            "defer schedules at the next free slot"
                        )
                    }
                }
                self.owners[slot] = Some(user);
                self.wallets[user].apply(&out.wallet);
                self.withdrawals[slot].apply(&out.withdrawal);
            }
            Op::Start { slot, actor, .. }
            | Op::Succeed { slot, actor }
            | Op::Fail { slot, actor }
            | Op::Cancel { slot, actor } => {
                let command = match op {
                    Op::Start { .. } => WithdrawalCommand::Start,
                    Op::Succeed { .. } => WithdrawalCommand::Succeed {
                        provider_reference: "po".into(),
                    },
                    Op::Fail { .. } => WithdrawalCommand::Fail { reason: "no".into() },
                    _ => WithdrawalCommand::Cancel {
                        reason: "stop".into(),
                    },
                };
                if let Op::Start { tick, .. } = op {
                    self.clock += tick;
                }
                let at = later(self.clock);
                let user = self.owners[slot].unwrap_or(2);
                let before = self.withdrawals[slot].state.requested.clone();
                let outcome = withdrawal::decide(
                    (&self.wallets[user].state, &self.withdrawals[slot].state),
                    &command,
                    &ctx_at(ACTORS[actor], at),
                );
                let cancel = matches!(command, WithdrawalCommand::Cancel { .. });
                if ACTORS[actor].is_system() {
                    assert!(
                        !matches!(outcome, Err(DomainError::Forbidden(_))),
                        "the system is the payout worker: got {outcome:?}"
                    );
                } else if before.is_some() && !cancel {
                    assert!(
                        matches!(outcome, Err(DomainError::Forbidden(_))),
                        "only the payout worker moves a withdrawal on: got {outcome:?}"
                    );
                }
                let out = outcome?;
                if matches!(command, WithdrawalCommand::Start) && !out.withdrawal.is_empty() {
                    let wd = before.as_ref().expect("a started withdrawal exists");
                    assert!(
                        wd.scheduled_for.is_none_or(|due| due <= at),
                        "a scheduled withdrawal starts once due: {wd:?} at {at}"
                    );
                }
                if !ACTORS[actor].is_system() {
                    let wd = before.expect("a decided withdrawal exists");
                    assert!(cancel, "only the payout worker moves a withdrawal on");
                    assert_eq!(user_index(&ACTORS[actor]), Some(user), "only the owner cancels");
                    assert!(
                        matches!(wd.status, WithdrawalStatus::Pending | WithdrawalStatus::Scheduled),
                        "the owner cancels a pending or scheduled one only: {wd:?}"
                    );
                }
                self.wallets[user].apply(&out.wallet);
                self.withdrawals[slot].apply(&out.withdrawal);
            }
        }
        Ok(())
    }

    fn check(&self) {
        let mut total = 0i64;
        let mut deposited = 0i64;
        let mut withdrawn = 0i64;
        for (i, w) in self.wallets.iter().enumerate() {
            if let Some(open) = &w.state.opened {
                assert!(open.balance_minor >= 0, "balance never negative: {open:?}");
                assert!(
                    (0..=open.balance_minor).contains(&open.reserved_minor),
                    "0 <= reserved <= balance: {open:?}"
                );
                let open_withdrawals: i64 = (0..SLOTS)
                    .filter(|s| self.owners[*s] == Some(i))
                    .filter_map(|s| self.withdrawals[s].state.requested.as_ref())
                    .filter(|wd| {
                        matches!(
                            wd.status,
                            WithdrawalStatus::Pending
                                | WithdrawalStatus::Scheduled
                                | WithdrawalStatus::Processing
                        )
                    })
                    .map(|wd| wd.amount.minor)
                    .sum();
                assert_eq!(
                    open.reserved_minor, open_withdrawals,
                    "reservations match open withdrawals"
                );
                total += open.balance_minor;
            }
            for e in &w.history {
                match e {
                    WalletEvent::FundsDeposited { amount, .. } => deposited += amount.minor,
                    WalletEvent::FundsWithdrawn { amount, .. } => withdrawn += amount.minor,
                    _ => {}
                }
            }
            w.assert_replays();
        }
        assert_eq!(total, deposited - withdrawn, "money is conserved");
        for (slot, r) in self.requests.iter().enumerate() {
            let paid = r
                .history
                .iter()
                .filter(|e| matches!(e, PaymentRequestEvent::PaymentRequestPaid { .. }))
                .count();
            assert!(paid <= 1, "a payment request is paid once");
            let finals = r
                .history
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        PaymentRequestEvent::PaymentRequestPaid { .. }
                            | PaymentRequestEvent::PaymentRequestExpired { .. }
                            | PaymentRequestEvent::PaymentRequestCancelled { .. }
                    )
                })
                .count();
            assert!(finals <= 1, "a payment request finishes once");
            let id = PaymentRequestId::for_milestone(milestone(slot));
            let debits = self
                .wallets
                .iter()
                .flat_map(|w| &w.history)
                .filter(|e| matches!(e, WalletEvent::WalletDebited { payment_request_id, .. } if *payment_request_id == id))
                .count();
            assert_eq!(debits, paid, "one debit per payment");
            r.assert_replays();
        }
        for w in &self.withdrawals {
            let finals = w
                .history
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        WithdrawalEvent::WithdrawalSucceeded { .. }
                            | WithdrawalEvent::WithdrawalFailed { .. }
                            | WithdrawalEvent::WithdrawalCancelled { .. }
                    )
                })
                .count();
            assert!(finals <= 1, "a withdrawal finishes once");
            w.assert_replays();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_payment_commands_keep_the_money_invariants(ops in prop::collection::vec(op(), 1..120)) {
        let mut world = World::default();
        for op in &ops {
            let wallets: Vec<Wallet> = world.wallets.iter().map(|w| w.state.clone()).collect();
            let requests: Vec<PaymentRequest> = world.requests.iter().map(|r| r.state.clone()).collect();
            let withdrawals: Vec<Withdrawal> = world.withdrawals.iter().map(|w| w.state.clone()).collect();
            if world.step(op).is_err() {
                let now_wallets: Vec<Wallet> = world.wallets.iter().map(|w| w.state.clone()).collect();
                prop_assert_eq!(now_wallets, wallets, "a refused command changes nothing");
                let now_requests: Vec<PaymentRequest> = world.requests.iter().map(|r| r.state.clone()).collect();
                prop_assert_eq!(now_requests, requests);
                let now_withdrawals: Vec<Withdrawal> = world.withdrawals.iter().map(|w| w.state.clone()).collect();
                prop_assert_eq!(now_withdrawals, withdrawals);
            }
            world.check();
        }
    }

    /// Many requests into one funded wallet, each at a random time under a random cooldown; after
    /// each, the worker tries to start every open withdrawal.
    #[test]
    fn withdrawals_keep_the_cooldown_window(
        steps in prop::collection::vec((0..3usize, 0..2 * WINDOW, 1..400i64), 1..40),
    ) {
        let mut wallet = Stream::<Wallet>::default();
        let deposit = WalletCommand::Deposit {
            wallet_id: WalletId::for_user(FREELANCER_ID),
            amount: usd(5_000),
        };
        wallet.apply(&wallet::decide(&wallet.state, &deposit, &ctx(FREELANCER)).unwrap());
        let mut withdrawals: Vec<Stream<Withdrawal>> = Vec::new();
        let mut clock = 0;
        let mut last_slot = None;
        for (n, (cooldown, tick, minor)) in steps.into_iter().enumerate() {
            clock += tick;
            let at = later(clock);
            let cooldown = cooldowns()[cooldown];
            let command = WithdrawalCommand::Request {
                withdrawal_id: WithdrawalId::from_uuid(Uuid::from_u128(0xA000 + n as u128)),
                amount: usd(minor),
                cooldown,
            };
            let mut withdrawal = Stream::<Withdrawal>::default();
            let outcome = withdrawal::decide((&wallet.state, &withdrawal.state), &command, &ctx_at(FREELANCER, at));
            let next = cooldown.next_slot(last_slot).filter(|next| *next > at);
            match outcome {
                Ok(out) => {
                    let requested = Withdrawal::fold(&out.withdrawal).requested.unwrap();
                    let slot = requested.scheduled_for.unwrap_or(at);
                    prop_assert_eq!(requested.scheduled_for, next, "scheduled at the next free slot only");
                    if cooldown != Cooldown::NONE
                        && let Some(last) = last_slot
                    {
                        let gap = slot.as_datetime() - last.as_datetime();
                        prop_assert!(gap >= cooldown.window, "slots one window apart");
                    }
                    last_slot = Some(slot);
                    wallet.apply(&out.wallet);
                    withdrawal.apply(&out.withdrawal);
                    withdrawals.push(withdrawal);
                }
                Err(DomainError::TooSoon { retry_at, .. }) => {
                    prop_assert_eq!(cooldown.policy, CooldownPolicy::Reject);
                    prop_assert_eq!(Some(retry_at), next, "retry when the window ends");
                }
                Err(DomainError::Conflict("insufficient-funds")) => {}
                Err(e) => prop_assert!(false, "unexpected {:?}", e),
            }
            let open = wallet.state.existing().unwrap();
            prop_assert!(open.available().minor >= 0 && open.reserved_minor <= open.balance_minor);
            prop_assert_eq!(open.last_withdrawal_slot, last_slot);
            for w in &mut withdrawals {
                let requested = w.state.requested.clone().unwrap();
                let outcome = withdrawal::decide((&wallet.state, &w.state), &WithdrawalCommand::Start, &ctx_at(SYSTEM, at));
                let due = requested.scheduled_for.is_none_or(|due| due <= at);
                match outcome {
                    Ok(out) => {
                        prop_assert!(due, "started once due only: {:?} at {}", requested, at);
                        w.apply(&out.withdrawal);
                    }
                    Err(e) => {
                        prop_assert!(!due, "a due withdrawal starts: {:?}", requested);
                        prop_assert_eq!(e, DomainError::Conflict("withdrawal-not-due"));
                    }
                }
                w.assert_replays();
            }
            wallet.assert_replays();
        }
    }
}
