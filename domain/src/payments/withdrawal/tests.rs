//! Given / when / then for every withdrawal command and rule.

use super::*;
use crate::payments::wallet::tests::wallet_with;
use crate::testing::*;
use crate::{Actor, Currency};
use uuid::Uuid;

const WD: WithdrawalId = WithdrawalId::from_uuid(Uuid::from_u128(0xD1));

fn wallet_id() -> WalletId {
    WalletId::for_user(FREELANCER_ID)
}

fn request(minor: i64) -> WithdrawalCommand {
    WithdrawalCommand::Request {
        withdrawal_id: WD,
        amount: usd(minor),
    }
}

fn requested(minor: i64) -> WithdrawalEvent {
    WithdrawalEvent::WithdrawalRequested {
        withdrawal_id: WD,
        wallet_id: wallet_id(),
        owner_id: FREELANCER_ID,
        amount: usd(minor),
        requested_at: now(),
    }
}

fn reserved(minor: i64, total: i64) -> WalletEvent {
    WalletEvent::FundsReserved {
        wallet_id: wallet_id(),
        withdrawal_id: WD,
        amount: usd(minor),
        reserved: usd(total),
        reserved_at: now(),
    }
}

fn started() -> WithdrawalEvent {
    WithdrawalEvent::WithdrawalStarted {
        withdrawal_id: WD,
        started_at: now(),
    }
}

/// The freelancer's wallet holding 1,000 cents with 400 reserved by `WD`, and `WD` after `events`.
fn state(events: &[WithdrawalEvent]) -> (Wallet, Withdrawal) {
    let mut wallet = wallet_with(FREELANCER_ID, 1_000);
    wallet.evolve(&reserved(400, 400));
    let mut all = vec![requested(400)];
    all.extend_from_slice(events);
    (wallet, Withdrawal::fold(&all))
}

fn run(state: (Wallet, Withdrawal), actor: Actor, command: WithdrawalCommand) -> Then<WithdrawalEvents> {
    given_state(state).when(move |(w, wd)| decide((w, wd), &command, &ctx(actor)))
}

fn released() -> WalletEvent {
    WalletEvent::ReservationReleased {
        wallet_id: wallet_id(),
        withdrawal_id: WD,
        amount: usd(400),
        reserved: usd(0),
        released_at: now(),
    }
}

#[test]
fn requesting_a_withdrawal_reserves_the_funds_first() {
    run(
        (wallet_with(FREELANCER_ID, 1_000), Withdrawal::default()),
        FREELANCER,
        request(400),
    )
    .then(WithdrawalEvents {
        wallet: vec![reserved(400, 400)],
        withdrawal: vec![requested(400)],
    });
}

#[test]
fn only_the_owner_withdraws_from_a_wallet() {
    for actor in [CLIENT, OTHER_FREELANCER, ADMIN, SYSTEM] {
        run(
            (wallet_with(FREELANCER_ID, 1_000), Withdrawal::default()),
            actor,
            request(400),
        )
        .then_err(DomainError::Forbidden("not-the-wallet-owner"));
    }
}

#[test]
fn a_withdrawal_cannot_exceed_the_available_funds() {
    run(
        (wallet_with(FREELANCER_ID, 1_000), Withdrawal::default()),
        FREELANCER,
        request(1_001),
    )
    .then_err(DomainError::Conflict("insufficient-funds"));
    // 400 of the 1,000 are already reserved.
    let (wallet, _) = state(&[]);
    let second = WithdrawalCommand::Request {
        withdrawal_id: WithdrawalId::from_uuid(Uuid::from_u128(0xD2)),
        amount: usd(601),
    };
    run((wallet, Withdrawal::default()), FREELANCER, second)
        .then_err(DomainError::Conflict("insufficient-funds"));
}

#[test]
fn a_withdrawal_amount_is_positive_and_in_the_wallet_currency() {
    run(
        (wallet_with(FREELANCER_ID, 1_000), Withdrawal::default()),
        FREELANCER,
        request(0),
    )
    .then_invalid(&["amount"]);
    let eur = WithdrawalCommand::Request {
        withdrawal_id: WD,
        amount: Money::new(100, Currency::Eur),
    };
    run(
        (wallet_with(FREELANCER_ID, 1_000), Withdrawal::default()),
        FREELANCER,
        eur,
    )
    .then_invalid(&["amount.currency"]);
}

#[test]
fn withdrawing_from_a_missing_wallet_is_not_found() {
    run((Wallet::default(), Withdrawal::default()), FREELANCER, request(1))
        .then_err(DomainError::NotFound("wallet"));
}

#[test]
fn a_withdrawal_is_requested_once() {
    run(state(&[]), FREELANCER, request(100)).then_err(DomainError::Conflict("withdrawal-exists"));
}

#[test]
fn the_worker_starts_a_pending_withdrawal() {
    run(state(&[]), SYSTEM, WithdrawalCommand::Start).then(WithdrawalEvents {
        wallet: vec![],
        withdrawal: vec![started()],
    });
}

#[test]
fn a_redelivered_start_changes_nothing() {
    run(state(&[started()]), SYSTEM, WithdrawalCommand::Start).then(WithdrawalEvents::default());
}

#[test]
fn only_the_worker_moves_a_withdrawal_on() {
    for command in [
        WithdrawalCommand::Start,
        WithdrawalCommand::Succeed {
            provider_reference: "p".into(),
        },
        WithdrawalCommand::Fail { reason: "x".into() },
    ] {
        run(state(&[started()]), FREELANCER, command)
            .then_err(DomainError::Forbidden("only-the-payout-worker"));
    }
    run(state(&[]), CLIENT, WithdrawalCommand::Start)
        .then_err(DomainError::Forbidden("not-the-wallet-owner"));
}

#[test]
fn an_admin_is_not_the_payout_worker() {
    run(state(&[]), ADMIN, WithdrawalCommand::Start).then_err(DomainError::Forbidden("not-the-wallet-owner"));
    for command in [
        WithdrawalCommand::Start,
        WithdrawalCommand::Succeed {
            provider_reference: "p".into(),
        },
        WithdrawalCommand::Fail { reason: "x".into() },
        WithdrawalCommand::Cancel {
            reason: "timeout".into(),
        },
    ] {
        run(state(&[started()]), ADMIN, command).then_err(DomainError::Forbidden("not-the-wallet-owner"));
    }
}

#[test]
fn a_succeeded_withdrawal_takes_the_reserved_funds_out() {
    run(
        state(&[started()]),
        SYSTEM,
        WithdrawalCommand::Succeed {
            provider_reference: "po_1".into(),
        },
    )
    .then(WithdrawalEvents {
        wallet: vec![WalletEvent::FundsWithdrawn {
            wallet_id: wallet_id(),
            withdrawal_id: WD,
            amount: usd(400),
            balance: usd(600),
            reserved: usd(0),
            withdrawn_at: now(),
        }],
        withdrawal: vec![WithdrawalEvent::WithdrawalSucceeded {
            withdrawal_id: WD,
            provider_reference: "po_1".into(),
            succeeded_at: now(),
        }],
    });
}

#[test]
fn a_pending_withdrawal_cannot_succeed() {
    run(
        state(&[]),
        SYSTEM,
        WithdrawalCommand::Succeed {
            provider_reference: "p".into(),
        },
    )
    .then_err(DomainError::Conflict("withdrawal-not-processing"));
}

#[test]
fn a_withdrawal_completes_exactly_once() {
    let done = WithdrawalEvent::WithdrawalSucceeded {
        withdrawal_id: WD,
        provider_reference: "p".into(),
        succeeded_at: now(),
    };
    run(
        state(&[started(), done.clone()]),
        SYSTEM,
        WithdrawalCommand::Succeed {
            provider_reference: "p".into(),
        },
    )
    .then(WithdrawalEvents::default());
    for command in [
        WithdrawalCommand::Fail { reason: "x".into() },
        WithdrawalCommand::Cancel { reason: "x".into() },
        WithdrawalCommand::Start,
    ] {
        run(state(&[started(), done.clone()]), SYSTEM, command)
            .then_err(DomainError::Conflict("withdrawal-finished"));
    }
}

#[test]
fn a_failed_withdrawal_releases_the_reservation() {
    run(
        state(&[started()]),
        SYSTEM,
        WithdrawalCommand::Fail {
            reason: "refused".into(),
        },
    )
    .then(WithdrawalEvents {
        wallet: vec![released()],
        withdrawal: vec![WithdrawalEvent::WithdrawalFailed {
            withdrawal_id: WD,
            reason: "refused".into(),
            failed_at: now(),
        }],
    });
}

#[test]
fn the_owner_cancels_a_pending_withdrawal_and_the_reservation_is_released() {
    run(
        state(&[]),
        FREELANCER,
        WithdrawalCommand::Cancel {
            reason: "oops".into(),
        },
    )
    .then(WithdrawalEvents {
        wallet: vec![released()],
        withdrawal: vec![WithdrawalEvent::WithdrawalCancelled {
            withdrawal_id: WD,
            reason: "oops".into(),
            cancelled_at: now(),
        }],
    });
}

#[test]
fn the_owner_cannot_cancel_a_processing_withdrawal_but_a_timeout_can() {
    run(
        state(&[started()]),
        FREELANCER,
        WithdrawalCommand::Cancel { reason: "x".into() },
    )
    .then_err(DomainError::Conflict("withdrawal-processing"));
    let outcome = run(
        state(&[started()]),
        SYSTEM,
        WithdrawalCommand::Cancel {
            reason: "timeout".into(),
        },
    )
    .then_ok();
    assert_eq!(outcome.wallet, vec![released()]);
}

#[test]
fn acting_on_a_missing_withdrawal_is_not_found() {
    run(
        (wallet_with(FREELANCER_ID, 1), Withdrawal::default()),
        SYSTEM,
        WithdrawalCommand::Start,
    )
    .then_err(DomainError::NotFound("withdrawal"));
}

#[test]
fn the_wallet_must_be_the_withdrawal_s() {
    let (_, withdrawal) = state(&[started()]);
    run(
        (wallet_with(CLIENT_ID, 1_000), withdrawal),
        SYSTEM,
        WithdrawalCommand::Start,
    )
    .then_err(DomainError::Conflict("wallet-mismatch"));
}

#[test]
fn payment_events_round_trip() {
    use crate::payments::wallet::tests::{deposited, opened_usd};
    assert_round_trip(&[
        requested(400),
        started(),
        WithdrawalEvent::WithdrawalSucceeded {
            withdrawal_id: WD,
            provider_reference: "p".into(),
            succeeded_at: now(),
        },
        WithdrawalEvent::WithdrawalFailed {
            withdrawal_id: WD,
            reason: "r".into(),
            failed_at: now(),
        },
        WithdrawalEvent::WithdrawalCancelled {
            withdrawal_id: WD,
            reason: "r".into(),
            cancelled_at: now(),
        },
    ]);
    let pr = crate::PaymentRequestId::from_uuid(Uuid::from_u128(3));
    assert_round_trip(&[
        opened_usd(FREELANCER_ID),
        deposited(FREELANCER_ID, 5, 5),
        WalletEvent::WalletDebited {
            wallet_id: wallet_id(),
            payment_request_id: pr,
            amount: usd(1),
            balance: usd(4),
            debited_at: now(),
        },
        WalletEvent::WalletCredited {
            wallet_id: wallet_id(),
            payment_request_id: pr,
            amount: usd(1),
            balance: usd(5),
            credited_at: now(),
        },
        reserved(400, 400),
        released(),
        WalletEvent::FundsWithdrawn {
            wallet_id: wallet_id(),
            withdrawal_id: WD,
            amount: usd(1),
            balance: usd(4),
            reserved: usd(0),
            withdrawn_at: now(),
        },
    ]);
}
