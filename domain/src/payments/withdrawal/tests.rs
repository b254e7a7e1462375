//! Given / when / then for every withdrawal command and rule.

use super::*;
use crate::payments::wallet::tests::wallet_with;
use crate::testing::*;
use crate::{Actor, Currency};
use chrono::TimeDelta;
use uuid::Uuid;

const WD: WithdrawalId = WithdrawalId::from_uuid(Uuid::from_u128(0xD1));

fn wallet_id() -> WalletId {
    WalletId::for_user(FREELANCER_ID)
}

fn request(minor: i64) -> WithdrawalCommand {
    WithdrawalCommand::Request {
        withdrawal_id: WD,
        amount: usd(minor),
        cooldown: Cooldown::NONE,
    }
}

fn requested(minor: i64) -> WithdrawalEvent {
    WithdrawalEvent::WithdrawalRequested {
        withdrawal_id: WD,
        wallet_id: wallet_id(),
        owner_id: FREELANCER_ID,
        amount: usd(minor),
        requested_at: now(),
        scheduled_for: None,
    }
}

fn reserved(minor: i64, total: i64) -> WalletEvent {
    WalletEvent::FundsReserved {
        wallet_id: wallet_id(),
        withdrawal_id: WD,
        amount: usd(minor),
        reserved: usd(total),
        reserved_at: now(),
        not_before: None,
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
        cooldown: Cooldown::NONE,
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
        cooldown: Cooldown::NONE,
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

// ---- The cooldown window (DESIGN §9) ----

/// Five minutes, in seconds.
const WINDOW: i64 = 300;

fn cooldown(policy: CooldownPolicy) -> Cooldown {
    Cooldown {
        window: TimeDelta::seconds(WINDOW),
        policy,
    }
}

fn wd(n: u128) -> WithdrawalId {
    WithdrawalId::from_uuid(Uuid::from_u128(0xE000 + n))
}

fn request_as(id: WithdrawalId, minor: i64, cooldown: Cooldown) -> WithdrawalCommand {
    WithdrawalCommand::Request {
        withdrawal_id: id,
        amount: usd(minor),
        cooldown,
    }
}

/// The freelancer's wallet holding 1,000 cents after a withdrawal of 100 was requested at `now()`.
fn wallet_after_a_withdrawal() -> Wallet {
    let mut wallet = wallet_with(FREELANCER_ID, 1_000);
    wallet.evolve(&WalletEvent::FundsReserved {
        wallet_id: wallet_id(),
        withdrawal_id: wd(0),
        amount: usd(100),
        reserved: usd(100),
        reserved_at: now(),
        not_before: None,
    });
    wallet
}

fn run_at(
    state: (Wallet, Withdrawal),
    actor: Actor,
    at: Timestamp,
    command: WithdrawalCommand,
) -> Then<WithdrawalEvents> {
    given_state(state).when(move |(w, wd)| decide((w, wd), &command, &ctx_at(actor, at)))
}

/// `WD` requested at `now()` for 400 cents and scheduled for `at`.
fn scheduled_requested(at: Timestamp) -> WithdrawalEvent {
    WithdrawalEvent::WithdrawalRequested {
        withdrawal_id: WD,
        wallet_id: wallet_id(),
        owner_id: FREELANCER_ID,
        amount: usd(400),
        requested_at: now(),
        scheduled_for: Some(at),
    }
}

/// The freelancer's wallet with `WD`'s 400 reserved, and `WD` scheduled for `later(WINDOW)`.
fn scheduled_state(events: &[WithdrawalEvent]) -> (Wallet, Withdrawal) {
    let mut wallet = wallet_with(FREELANCER_ID, 1_000);
    wallet.evolve(&WalletEvent::FundsReserved {
        wallet_id: wallet_id(),
        withdrawal_id: WD,
        amount: usd(400),
        reserved: usd(400),
        reserved_at: now(),
        not_before: Some(later(WINDOW)),
    });
    let mut all = vec![scheduled_requested(later(WINDOW))];
    all.extend_from_slice(events);
    (wallet, Withdrawal::fold(&all))
}

#[test]
fn a_withdrawal_inside_the_cooldown_window_is_refused_until_it_ends() {
    for at in [now(), later(1), later(WINDOW - 1)] {
        run_at(
            (wallet_after_a_withdrawal(), Withdrawal::default()),
            FREELANCER,
            at,
            request_as(WD, 100, cooldown(CooldownPolicy::Reject)),
        )
        .then_err(DomainError::TooSoon {
            code: "withdrawal-cooldown",
            retry_at: later(WINDOW),
        });
    }
    assert_eq!(
        DomainError::TooSoon {
            code: "withdrawal-cooldown",
            retry_at: later(WINDOW),
        }
        .code(),
        "withdrawal-cooldown"
    );
}

#[test]
fn a_withdrawal_at_or_after_the_window_end_is_accepted() {
    for policy in [CooldownPolicy::Reject, CooldownPolicy::Defer] {
        for at in [later(WINDOW), later(WINDOW + 1), later(10 * WINDOW)] {
            run_at(
                (wallet_after_a_withdrawal(), Withdrawal::default()),
                FREELANCER,
                at,
                request_as(WD, 400, cooldown(policy)),
            )
            .then(WithdrawalEvents {
                wallet: vec![WalletEvent::FundsReserved {
                    wallet_id: wallet_id(),
                    withdrawal_id: WD,
                    amount: usd(400),
                    reserved: usd(500),
                    reserved_at: at,
                    not_before: None,
                }],
                withdrawal: vec![WithdrawalEvent::WithdrawalRequested {
                    withdrawal_id: WD,
                    wallet_id: wallet_id(),
                    owner_id: FREELANCER_ID,
                    amount: usd(400),
                    requested_at: at,
                    scheduled_for: None,
                }],
            });
        }
    }
}

#[test]
fn a_deferred_withdrawal_is_scheduled_at_the_window_end() {
    let at = later(60);
    let outcome = run_at(
        (wallet_after_a_withdrawal(), Withdrawal::default()),
        FREELANCER,
        at,
        request_as(WD, 400, cooldown(CooldownPolicy::Defer)),
    )
    .then_ok();
    assert_eq!(
        outcome,
        WithdrawalEvents {
            wallet: vec![WalletEvent::FundsReserved {
                wallet_id: wallet_id(),
                withdrawal_id: WD,
                amount: usd(400),
                reserved: usd(500),
                reserved_at: at,
                not_before: Some(later(WINDOW)),
            }],
            withdrawal: vec![WithdrawalEvent::WithdrawalRequested {
                withdrawal_id: WD,
                wallet_id: wallet_id(),
                owner_id: FREELANCER_ID,
                amount: usd(400),
                requested_at: at,
                scheduled_for: Some(later(WINDOW)),
            }],
        }
    );
    let scheduled = Withdrawal::fold(&outcome.withdrawal);
    let scheduled = scheduled.requested.unwrap();
    assert_eq!(
        (scheduled.status, scheduled.scheduled_for),
        (WithdrawalStatus::Scheduled, Some(later(WINDOW)))
    );
    // A third request chains after the second's slot, not after the first's.
    let mut wallet = wallet_after_a_withdrawal();
    outcome.wallet.iter().for_each(|e| wallet.evolve(e));
    let third = run_at(
        (wallet, Withdrawal::default()),
        FREELANCER,
        later(61),
        request_as(wd(3), 100, cooldown(CooldownPolicy::Defer)),
    )
    .then_ok();
    assert_eq!(
        third.withdrawal[0],
        WithdrawalEvent::WithdrawalRequested {
            withdrawal_id: wd(3),
            wallet_id: wallet_id(),
            owner_id: FREELANCER_ID,
            amount: usd(100),
            requested_at: later(61),
            scheduled_for: Some(later(2 * WINDOW)),
        }
    );
}

#[test]
fn concurrent_deferred_withdrawals_take_consecutive_slots() {
    // Twenty requests at the same instant, serialised by the wallet stream's expected version.
    let mut wallet = wallet_with(FREELANCER_ID, 1_000);
    for n in 0..20 {
        let out = run_at(
            (wallet.clone(), Withdrawal::default()),
            FREELANCER,
            now(),
            request_as(wd(n), 10, cooldown(CooldownPolicy::Defer)),
        )
        .then_ok();
        let expected = (n > 0).then(|| later(WINDOW * i64::try_from(n).unwrap()));
        let requested = Withdrawal::fold(&out.withdrawal).requested.unwrap();
        assert_eq!(requested.scheduled_for, expected, "request {n}");
        out.wallet.iter().for_each(|e| wallet.evolve(e));
    }
    let open = wallet.existing().unwrap();
    assert_eq!(open.reserved(), usd(200));
    assert_eq!(open.last_withdrawal_slot, Some(later(19 * WINDOW)));
}

#[test]
fn deferring_without_a_previous_withdrawal_schedules_nothing() {
    let outcome = run_at(
        (wallet_with(FREELANCER_ID, 1_000), Withdrawal::default()),
        FREELANCER,
        now(),
        request_as(WD, 400, cooldown(CooldownPolicy::Defer)),
    )
    .then_ok();
    assert_eq!(
        outcome,
        WithdrawalEvents {
            wallet: vec![reserved(400, 400)],
            withdrawal: vec![requested(400)],
        }
    );
    let requested = Withdrawal::fold(&outcome.withdrawal).requested.unwrap();
    assert_eq!(requested.status, WithdrawalStatus::Pending);
}

#[test]
fn no_cooldown_never_limits() {
    let zero_defer = Cooldown {
        window: TimeDelta::zero(),
        policy: CooldownPolicy::Defer,
    };
    let negative = Cooldown {
        window: TimeDelta::seconds(-WINDOW),
        policy: CooldownPolicy::Reject,
    };
    for cooldown in [Cooldown::NONE, zero_defer, negative] {
        assert_eq!(cooldown.next_slot(Some(now())), None);
        // Even a wallet whose last withdrawal is scheduled in the future.
        let mut wallet = wallet_after_a_withdrawal();
        wallet.evolve(&WalletEvent::FundsReserved {
            wallet_id: wallet_id(),
            withdrawal_id: wd(1),
            amount: usd(100),
            reserved: usd(200),
            reserved_at: now(),
            not_before: Some(later(WINDOW)),
        });
        for n in 2..5 {
            let out = run_at(
                (wallet.clone(), Withdrawal::default()),
                FREELANCER,
                now(),
                request_as(wd(n), 100, cooldown),
            )
            .then_ok();
            let requested = Withdrawal::fold(&out.withdrawal).requested.unwrap();
            assert_eq!(requested.scheduled_for, None);
            out.wallet.iter().for_each(|e| wallet.evolve(e));
        }
    }
}

#[test]
fn a_released_reservation_keeps_its_cooldown_slot() {
    // The window counts requests: cancelling the first does not free the wallet for a second.
    let mut wallet = wallet_after_a_withdrawal();
    wallet.evolve(&WalletEvent::ReservationReleased {
        wallet_id: wallet_id(),
        withdrawal_id: wd(0),
        amount: usd(100),
        reserved: usd(0),
        released_at: later(10),
    });
    run_at(
        (wallet, Withdrawal::default()),
        FREELANCER,
        later(20),
        request_as(WD, 100, cooldown(CooldownPolicy::Reject)),
    )
    .then_err(DomainError::TooSoon {
        code: "withdrawal-cooldown",
        retry_at: later(WINDOW),
    });
}

#[test]
fn validation_ownership_and_funds_are_checked_before_the_cooldown() {
    for policy in [CooldownPolicy::Reject, CooldownPolicy::Defer] {
        let inside = |command| {
            run_at(
                (wallet_after_a_withdrawal(), Withdrawal::default()),
                FREELANCER,
                later(1),
                command,
            )
        };
        inside(request_as(WD, 0, cooldown(policy))).then_invalid(&["amount"]);
        inside(WithdrawalCommand::Request {
            withdrawal_id: WD,
            amount: Money::new(100, Currency::Eur),
            cooldown: cooldown(policy),
        })
        .then_invalid(&["amount.currency"]);
        // 100 of the 1,000 are reserved.
        inside(request_as(WD, 901, cooldown(policy))).then_err(DomainError::Conflict("insufficient-funds"));
        run_at(
            (wallet_after_a_withdrawal(), Withdrawal::default()),
            CLIENT,
            later(1),
            request_as(WD, 100, cooldown(policy)),
        )
        .then_err(DomainError::Forbidden("not-the-wallet-owner"));
        let (_, existing) = state(&[]);
        run_at(
            (wallet_after_a_withdrawal(), existing),
            FREELANCER,
            later(1),
            request_as(WD, 100, cooldown(policy)),
        )
        .then_err(DomainError::Conflict("withdrawal-exists"));
    }
}

#[test]
fn a_scheduled_withdrawal_starts_only_when_due() {
    run_at(
        scheduled_state(&[]),
        SYSTEM,
        later(WINDOW - 1),
        WithdrawalCommand::Start,
    )
    .then_err(DomainError::Conflict("withdrawal-not-due"));
    for at in [later(WINDOW), later(WINDOW + 30)] {
        run_at(scheduled_state(&[]), SYSTEM, at, WithdrawalCommand::Start).then(WithdrawalEvents {
            wallet: vec![],
            withdrawal: vec![WithdrawalEvent::WithdrawalStarted {
                withdrawal_id: WD,
                started_at: at,
            }],
        });
    }
    // Once started it is processing, and a redelivered start changes nothing.
    let (_, withdrawal) = scheduled_state(&[started()]);
    assert_eq!(withdrawal.requested.unwrap().status, WithdrawalStatus::Processing);
    run_at(
        scheduled_state(&[started()]),
        SYSTEM,
        later(WINDOW),
        WithdrawalCommand::Start,
    )
    .then(WithdrawalEvents::default());
}

#[test]
fn a_scheduled_withdrawal_cannot_succeed_before_it_starts() {
    run_at(
        scheduled_state(&[]),
        SYSTEM,
        later(WINDOW),
        WithdrawalCommand::Succeed {
            provider_reference: "p".into(),
        },
    )
    .then_err(DomainError::Conflict("withdrawal-not-processing"));
}

#[test]
fn the_owner_cancels_a_scheduled_withdrawal_and_the_reservation_is_released() {
    run(
        scheduled_state(&[]),
        FREELANCER,
        WithdrawalCommand::Cancel {
            reason: "changed my mind".into(),
        },
    )
    .then(WithdrawalEvents {
        wallet: vec![released()],
        withdrawal: vec![WithdrawalEvent::WithdrawalCancelled {
            withdrawal_id: WD,
            reason: "changed my mind".into(),
            cancelled_at: now(),
        }],
    });
    run(
        scheduled_state(&[]),
        CLIENT,
        WithdrawalCommand::Cancel { reason: "x".into() },
    )
    .then_err(DomainError::Forbidden("not-the-wallet-owner"));
}

#[test]
fn reservations_written_before_the_cooldown_still_read() {
    let old_reserved = serde_json::json!({
        "type": "FundsReserved",
        "wallet_id": wallet_id(),
        "withdrawal_id": WD,
        "amount": usd(400),
        "reserved": usd(400),
        "reserved_at": now(),
    });
    let event: WalletEvent = serde_json::from_value(old_reserved.clone()).unwrap();
    assert_eq!(event, reserved(400, 400));
    // A reservation not deferred is written exactly as before.
    assert_eq!(serde_json::to_value(reserved(400, 400)).unwrap(), old_reserved);
}

#[test]
fn withdrawal_requested_is_at_schema_2_and_always_writes_its_slot() {
    let v2 = serde_json::json!({
        "type": "WithdrawalRequested",
        "withdrawal_id": WD,
        "wallet_id": wallet_id(),
        "owner_id": FREELANCER_ID,
        "amount": usd(400),
        "requested_at": now(),
        "scheduled_for": null,
    });
    assert_eq!(requested(400).schema_version(), 2);
    assert_eq!(started().schema_version(), 1);
    assert_eq!(serde_json::to_value(requested(400)).unwrap(), v2);
    assert_eq!(
        serde_json::from_value::<WithdrawalEvent>(v2.clone()).unwrap(),
        requested(400)
    );
    // A schema-1 payload (slot left out) is the upcaster's to lift: it does not read as is.
    let mut v1 = v2;
    v1.as_object_mut().unwrap().remove("scheduled_for");
    let error = serde_json::from_value::<WithdrawalEvent>(v1).unwrap_err();
    assert!(
        error.to_string().contains("missing field `scheduled_for`"),
        "{error}"
    );
}

#[test]
fn payment_events_round_trip() {
    use crate::payments::wallet::tests::{deposited, opened_usd};
    assert_round_trip(&[
        requested(400),
        scheduled_requested(later(WINDOW)),
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
        WalletEvent::FundsReserved {
            wallet_id: wallet_id(),
            withdrawal_id: WD,
            amount: usd(400),
            reserved: usd(400),
            reserved_at: now(),
            not_before: Some(later(WINDOW)),
        },
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
