//! Payments → the payments read model: wallets, their recent transactions and withdrawal
//! statuses in Redis; payment requests by id, by client and by freelancer in Cassandra
//! (see [`infra::read_models::payments`]). Consumer group `payments`.
//!
//! Every write is keyed by the event's stream version and skipped at or below the stored one, so
//! a redelivered or older event changes nothing (DESIGN §6).

use domain::{
    Aggregate,
    payments::{PaymentRequest, PaymentRequestEvent, Wallet, WalletEvent, Withdrawal, WithdrawalEvent},
};
use infra::{
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
    read_models::payments::{
        NewTransaction, PaymentRequestStatusView, PaymentRequestView, Payments, Settlement, TransactionKind,
        WalletChange, WithdrawalChange,
    },
};

/// Projects wallet, payment request and withdrawal streams.
pub struct PaymentsProjector {
    /// The read model written.
    pub store: Payments,
    /// Upcasters for old event versions.
    pub upcasters: Upcasters,
}

impl EventHandler for PaymentsProjector {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        match event.stream_type.as_str() {
            Wallet::STREAM_TYPE => {
                let change = wallet_change(event, event.decode::<WalletEvent>(&self.upcasters)?);
                self.store.apply_wallet(&change).await?;
            }
            Withdrawal::STREAM_TYPE => {
                let change = withdrawal_change(event.decode::<WithdrawalEvent>(&self.upcasters)?);
                self.store
                    .apply_withdrawal(event.stream_id, event.version, &change)
                    .await?;
            }
            PaymentRequest::STREAM_TYPE => {
                self.payment_request(event, event.decode::<PaymentRequestEvent>(&self.upcasters)?)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl PaymentsProjector {
    async fn payment_request(
        &self,
        event: &RecordedEvent,
        e: PaymentRequestEvent,
    ) -> Result<(), HandlerError> {
        match e {
            PaymentRequestEvent::PaymentRequestCreated {
                payment_request_id,
                contract_id,
                milestone_id,
                client_id,
                freelancer_id,
                amount,
                due_at,
                created_at,
            } => {
                let view = PaymentRequestView {
                    payment_request_id: payment_request_id.as_uuid(),
                    contract_id: contract_id.as_uuid(),
                    milestone_id: milestone_id.as_uuid(),
                    client_id: client_id.as_uuid(),
                    freelancer_id: freelancer_id.as_uuid(),
                    amount,
                    status: PaymentRequestStatusView::Pending,
                    due_at: due_at.as_datetime(),
                    created_at: created_at.as_datetime(),
                    paid_at: None,
                    expired_at: None,
                    cancelled_at: None,
                    cancel_reason: None,
                    version: event.version,
                };
                self.store.create_payment_request(&view).await?;
            }
            PaymentRequestEvent::PaymentRequestPaid { paid_at, .. } => {
                self.store
                    .settle_payment_request(
                        event.stream_id,
                        event.version,
                        Settlement::Paid,
                        paid_at.as_datetime(),
                    )
                    .await?;
            }
            PaymentRequestEvent::PaymentRequestCancelled {
                reason, cancelled_at, ..
            } => {
                self.store
                    .settle_payment_request(
                        event.stream_id,
                        event.version,
                        Settlement::Cancelled { reason },
                        cancelled_at.as_datetime(),
                    )
                    .await?;
            }
            PaymentRequestEvent::PaymentRequestExpired { expired_at, .. } => {
                self.store
                    .settle_payment_request(
                        event.stream_id,
                        event.version,
                        Settlement::Expired,
                        expired_at.as_datetime(),
                    )
                    .await?;
            }
        }
        Ok(())
    }
}

/// What a wallet event changes: events carry the balances after them (absolute values).
fn wallet_change(event: &RecordedEvent, e: WalletEvent) -> WalletChange {
    let change = |at: domain::Timestamp, currency| WalletChange {
        wallet_id: event.stream_id,
        version: event.version,
        at: at.as_datetime(),
        currency,
        opened_by: None,
        balance: None,
        reserved: None,
        transaction: None,
    };
    let transaction = |kind, amount, reference_id: Option<uuid::Uuid>| {
        Some(NewTransaction {
            kind,
            amount,
            reference_id,
        })
    };
    match e {
        WalletEvent::WalletOpened {
            owner_id,
            currency,
            opened_at,
            ..
        } => WalletChange {
            opened_by: Some(owner_id.as_uuid()),
            balance: Some(0),
            reserved: Some(0),
            ..change(opened_at, currency)
        },
        WalletEvent::FundsDeposited {
            amount,
            balance,
            deposited_at,
            ..
        } => WalletChange {
            balance: Some(balance.minor),
            transaction: transaction(TransactionKind::Deposit, amount, None),
            ..change(deposited_at, balance.currency)
        },
        WalletEvent::WalletDebited {
            payment_request_id,
            amount,
            balance,
            debited_at,
            ..
        } => WalletChange {
            balance: Some(balance.minor),
            transaction: transaction(TransactionKind::Debit, amount, Some(payment_request_id.as_uuid())),
            ..change(debited_at, balance.currency)
        },
        WalletEvent::WalletCredited {
            payment_request_id,
            amount,
            balance,
            credited_at,
            ..
        } => WalletChange {
            balance: Some(balance.minor),
            transaction: transaction(
                TransactionKind::Credit,
                amount,
                Some(payment_request_id.as_uuid()),
            ),
            ..change(credited_at, balance.currency)
        },
        WalletEvent::FundsReserved {
            withdrawal_id,
            amount,
            reserved,
            reserved_at,
            ..
        } => WalletChange {
            reserved: Some(reserved.minor),
            transaction: transaction(
                TransactionKind::Reservation,
                amount,
                Some(withdrawal_id.as_uuid()),
            ),
            ..change(reserved_at, reserved.currency)
        },
        WalletEvent::ReservationReleased {
            withdrawal_id,
            amount,
            reserved,
            released_at,
            ..
        } => WalletChange {
            reserved: Some(reserved.minor),
            transaction: transaction(TransactionKind::Release, amount, Some(withdrawal_id.as_uuid())),
            ..change(released_at, reserved.currency)
        },
        WalletEvent::FundsWithdrawn {
            withdrawal_id,
            amount,
            balance,
            reserved,
            withdrawn_at,
            ..
        } => WalletChange {
            balance: Some(balance.minor),
            reserved: Some(reserved.minor),
            transaction: transaction(TransactionKind::Withdrawal, amount, Some(withdrawal_id.as_uuid())),
            ..change(withdrawn_at, balance.currency)
        },
    }
}

/// What a withdrawal event changes.
fn withdrawal_change(e: WithdrawalEvent) -> WithdrawalChange {
    match e {
        WithdrawalEvent::WithdrawalRequested {
            wallet_id,
            owner_id,
            amount,
            requested_at,
            scheduled_for,
            ..
        } => WithdrawalChange::Requested {
            wallet_id: wallet_id.as_uuid(),
            owner_id: owner_id.as_uuid(),
            amount,
            at: requested_at.as_datetime(),
            scheduled_for: scheduled_for.map(|t| t.as_datetime()),
        },
        WithdrawalEvent::WithdrawalStarted { started_at, .. } => WithdrawalChange::Started {
            at: started_at.as_datetime(),
        },
        WithdrawalEvent::WithdrawalSucceeded {
            provider_reference,
            succeeded_at,
            ..
        } => WithdrawalChange::Succeeded {
            provider_reference,
            at: succeeded_at.as_datetime(),
        },
        WithdrawalEvent::WithdrawalFailed {
            reason, failed_at, ..
        } => WithdrawalChange::Failed {
            reason,
            at: failed_at.as_datetime(),
        },
        WithdrawalEvent::WithdrawalCancelled {
            reason, cancelled_at, ..
        } => WithdrawalChange::Cancelled {
            reason,
            at: cancelled_at.as_datetime(),
        },
    }
}
