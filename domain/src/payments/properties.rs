//! Property tests: random deposits, payment requests, payments and withdrawals over four users'
//! wallets, checking after every step that no balance goes below zero, that reservations match the
//! open withdrawals, that money is conserved, that a payment request is paid once, and that
//! replaying the events reproduces every state.

use proptest::prelude::*;
use uuid::Uuid;

use super::{
    pay_request::{self, PayRequest},
    payment_request::{self, PaymentRequest, PaymentRequestCommand, PaymentRequestEvent},
    wallet::{self, Wallet, WalletCommand, WalletEvent},
    withdrawal::{self, Withdrawal, WithdrawalCommand, WithdrawalEvent, WithdrawalStatus},
};
use crate::testing::*;
use crate::{Actor, ContractId, DomainError, MilestoneId, PaymentRequestId, WalletId, WithdrawalId};

/// Wallet owners; index 4 is the admin (the payout worker), who owns no wallet.
const ACTORS: [Actor; 5] = [CLIENT, OTHER_CLIENT, FREELANCER, OTHER_FREELANCER, ADMIN];
const USERS: usize = 4;
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
    let a = 0..ACTORS.len();
    let s = 0..SLOTS;
    // Mostly the plausible actor (payers pay, the worker works), sometimes anyone.
    let payer = prop_oneof![3 => 0..2usize, 1 => 0..ACTORS.len()];
    let worker = prop_oneof![3 => Just(4usize), 1 => 0..ACTORS.len()];
    prop_oneof![
        3 => (0..USERS, 0..USERS, -100..6_000i64)
            .prop_map(|(user, actor, minor)| Op::Deposit { user, actor, minor }),
        2 => (s.clone(), 0..2usize, 2..4usize, -10..5_000i64, a.clone())
            .prop_map(|(slot, payer, payee, minor, actor)| Op::CreateRequest { slot, payer, payee, minor, actor }),
        3 => (s.clone(), payer).prop_map(|(slot, actor)| Op::Pay { slot, actor }),
        1 => (s.clone(), a.clone(), 0..10i64).prop_map(|(slot, actor, days)| Op::Expire { slot, actor, days }),
        3 => (s.clone(), 0..USERS, 0..USERS, -10..3_000i64)
            .prop_map(|(slot, user, actor, minor)| Op::Withdraw { slot, user, actor, minor }),
        2 => (s.clone(), worker.clone()).prop_map(|(slot, actor)| Op::Start { slot, actor }),
        2 => (s.clone(), worker.clone()).prop_map(|(slot, actor)| Op::Succeed { slot, actor }),
        1 => (s.clone(), worker.clone()).prop_map(|(slot, actor)| Op::Fail { slot, actor }),
        1 => (s, worker).prop_map(|(slot, actor)| Op::Cancel { slot, actor }),
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

impl World {
    fn step(&mut self, op: &Op) -> Result<(), DomainError> {
        match *op {
            Op::Deposit { user, actor, minor } => {
                let command = WalletCommand::Deposit {
                    wallet_id: WalletId::for_user(ACTORS[user].id),
                    amount: usd(minor),
                };
                let events = wallet::decide(&self.wallets[user].state, &command, &ctx(ACTORS[actor]))?;
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
                let events =
                    payment_request::decide(&self.requests[slot].state, &command, &ctx(ACTORS[actor]))?;
                if self.parties[slot].is_none() {
                    self.parties[slot] = Some((payer, payee));
                }
                self.requests[slot].apply(&events);
            }
            Op::Pay { slot, actor } => {
                let (payer, payee) = self.parties[slot].unwrap_or((0, 2));
                let out = pay_request::decide(
                    (
                        &self.requests[slot].state,
                        &self.wallets[payer].state,
                        &self.wallets[payee].state,
                    ),
                    &PayRequest,
                    &ctx(ACTORS[actor]),
                )?;
                assert_eq!(actor, payer, "only the payer pays");
                self.requests[slot].apply(&out.request);
                self.wallets[payer].apply(&out.client_wallet);
                self.wallets[payee].apply(&out.freelancer_wallet);
            }
            Op::Expire { slot, actor, days } => {
                let events = payment_request::decide(
                    &self.requests[slot].state,
                    &PaymentRequestCommand::Expire,
                    &ctx_at(ACTORS[actor], later(days * DAY)),
                )?;
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
                let out = withdrawal::decide(
                    (&self.wallets[user].state, &self.withdrawals[slot].state),
                    &command,
                    &ctx(ACTORS[actor]),
                )?;
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
                let out = withdrawal::decide(
                    (&self.wallets[user].state, &self.withdrawals[slot].state),
                    &command,
                    &ctx(ACTORS[actor]),
                )?;
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
