//! Property tests: random deposits, payment requests, payments and withdrawals over four users'
//! wallets, checking after every step that no balance goes below zero, that reservations match the
//! open withdrawals, that money is conserved, that a payment request is paid once and finishes
//! (paid, expired or cancelled) once, that only the
//! system actor sends the sagas' and the payout worker's commands and never a user's, and that
//! replaying the events reproduces every state.

use proptest::prelude::*;
use std::fmt::Debug;
use uuid::Uuid;

use super::{
    pay_request::{self, PayRequest},
    payment_request::{
        self, PaymentRequest, PaymentRequestCommand, PaymentRequestEvent, PaymentRequestStatus,
    },
    wallet::{self, Wallet, WalletCommand, WalletEvent},
    withdrawal::{self, Withdrawal, WithdrawalCommand, WithdrawalEvent, WithdrawalStatus},
};
use crate::testing::*;
use crate::{Actor, ContractId, DomainError, MilestoneId, PaymentRequestId, WalletId, WithdrawalId};

/// Wallet owners; index 4 is the admin and index 5 the system actor (the payment and deadline
/// sagas, the payout worker), neither of whom owns a wallet.
const ACTORS: [Actor; 6] = [CLIENT, OTHER_CLIENT, FREELANCER, OTHER_FREELANCER, ADMIN, SYSTEM];
const USERS: usize = 4;
const THE_SYSTEM: usize = 5;
const SLOTS: usize = 4;
const DAY: i64 = 86_400;

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
    },
    Start {
        slot: usize,
        actor: usize,
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
    prop_oneof![
        3 => (0..USERS, user.clone(), -100..6_000i64)
            .prop_map(|(user, actor, minor)| Op::Deposit { user, actor, minor }),
        2 => (s.clone(), 0..2usize, 2..4usize, -10..5_000i64, system.clone())
            .prop_map(|(slot, payer, payee, minor, actor)| Op::CreateRequest { slot, payer, payee, minor, actor }),
        3 => (s.clone(), payer).prop_map(|(slot, actor)| Op::Pay { slot, actor }),
        1 => (s.clone(), system.clone(), 0..10i64).prop_map(|(slot, actor, days)| Op::Expire { slot, actor, days }),
        1 => (s.clone(), system.clone()).prop_map(|(slot, actor)| Op::CancelRequest { slot, actor }),
        3 => (s.clone(), 0..USERS, user, -10..3_000i64)
            .prop_map(|(slot, user, actor, minor)| Op::Withdraw { slot, user, actor, minor }),
        2 => (s.clone(), system.clone()).prop_map(|(slot, actor)| Op::Start { slot, actor }),
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
            } => {
                let command = WithdrawalCommand::Request {
                    withdrawal_id: wid(slot),
                    amount: usd(minor),
                };
                let outcome = withdrawal::decide(
                    (&self.wallets[user].state, &self.withdrawals[slot].state),
                    &command,
                    &ctx(ACTORS[actor]),
                );
                let out = user_only(ACTORS[actor], outcome)?;
                assert_eq!(user_index(&ACTORS[actor]), Some(user), "only the owner withdraws");
                self.owners[slot] = Some(user);
                self.wallets[user].apply(&out.wallet);
                self.withdrawals[slot].apply(&out.withdrawal);
            }
            Op::Start { slot, actor }
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
                let user = self.owners[slot].unwrap_or(2);
                let before = self.withdrawals[slot].state.requested.clone();
                let outcome = withdrawal::decide(
                    (&self.wallets[user].state, &self.withdrawals[slot].state),
                    &command,
                    &ctx(ACTORS[actor]),
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
                if !ACTORS[actor].is_system() {
                    let wd = before.expect("a decided withdrawal exists");
                    assert!(cancel, "only the payout worker moves a withdrawal on");
                    assert_eq!(user_index(&ACTORS[actor]), Some(user), "only the owner cancels");
                    assert_eq!(
                        wd.status,
                        WithdrawalStatus::Pending,
                        "the owner cancels a pending one only"
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
                            WithdrawalStatus::Pending | WithdrawalStatus::Processing
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
}
