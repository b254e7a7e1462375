//! The PaymentRequest aggregate: what a client owes for an accepted milestone. Paid once
//! (through [`super::pay_request`], which also moves the money), expired when left unpaid, or
//! cancelled by a saga while pending. PENDING → PAID | EXPIRED | CANCELLED; the last three are final.

use serde::{Deserialize, Serialize};

use crate::{
    Aggregate, BoundedContext, Context, ContractId, DomainError, DomainEvent, FieldError, MilestoneId, Money,
    PaymentRequestId, Timestamp, UserId,
};

/// Commands on a payment request (paying spans the wallets: see [`super::pay_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentRequestCommand {
    /// Request payment for an accepted milestone (sent by the payment saga as the system actor, DESIGN §7).
    Create {
        /// Must be [`PaymentRequestId::for_milestone`] of `milestone_id`.
        payment_request_id: PaymentRequestId,
        /// The contract.
        contract_id: ContractId,
        /// The accepted milestone.
        milestone_id: MilestoneId,
        /// Who pays.
        client_id: UserId,
        /// Who is paid.
        freelancer_id: UserId,
        /// The milestone's amount: positive.
        amount: Money,
        /// When it expires if unpaid: after now.
        due_at: Timestamp,
    },
    /// Close a request left unpaid past its due time (sent by the deadline saga as the system actor).
    Expire,
    /// Withdraw a pending request that must no longer be paid (sent by a saga as the system actor);
    /// a request that is not pending answers `payment-request-not-pending`. A cancelled request is
    /// neither paid nor expired.
    Cancel {
        /// Why (free text, recorded in the event).
        reason: String,
    },
}

/// Events of a payment request stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PaymentRequestEvent {
    /// Payment was requested for a milestone.
    PaymentRequestCreated {
        /// The request.
        payment_request_id: PaymentRequestId,
        /// The contract.
        contract_id: ContractId,
        /// The milestone.
        milestone_id: MilestoneId,
        /// Who pays.
        client_id: UserId,
        /// Who is paid.
        freelancer_id: UserId,
        /// How much.
        amount: Money,
        /// When it expires if unpaid.
        due_at: Timestamp,
        /// When.
        created_at: Timestamp,
    },
    /// The client paid it (the wallets were debited and credited in the same append).
    PaymentRequestPaid {
        /// The request.
        payment_request_id: PaymentRequestId,
        /// The contract (the saga marks its milestone paid).
        contract_id: ContractId,
        /// The milestone.
        milestone_id: MilestoneId,
        /// Who paid.
        client_id: UserId,
        /// Who was paid.
        freelancer_id: UserId,
        /// How much.
        amount: Money,
        /// When.
        paid_at: Timestamp,
    },
    /// It was left unpaid past its due time.
    PaymentRequestExpired {
        /// The request.
        payment_request_id: PaymentRequestId,
        /// When.
        expired_at: Timestamp,
    },
    /// A saga cancelled it while pending: it will not be paid.
    PaymentRequestCancelled {
        /// The request.
        payment_request_id: PaymentRequestId,
        /// The contract.
        contract_id: ContractId,
        /// Why.
        reason: String,
        /// When.
        cancelled_at: Timestamp,
    },
}

impl DomainEvent for PaymentRequestEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::PaymentRequestCreated { .. } => "PaymentRequestCreated",
            Self::PaymentRequestPaid { .. } => "PaymentRequestPaid",
            Self::PaymentRequestExpired { .. } => "PaymentRequestExpired",
            Self::PaymentRequestCancelled { .. } => "PaymentRequestCancelled",
        }
    }
}

/// Where a payment request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentRequestStatus {
    /// Waiting for the client.
    Pending,
    /// Paid (once).
    Paid,
    /// Left unpaid past its due time.
    Expired,
    /// Cancelled by a saga while pending.
    Cancelled,
}

/// What decisions need to know about a payment request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentRequest {
    /// Set once created.
    pub created: Option<CreatedPaymentRequest>,
}

/// A created payment request's decision state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedPaymentRequest {
    /// The request.
    pub id: PaymentRequestId,
    /// The contract.
    pub contract_id: ContractId,
    /// The milestone.
    pub milestone_id: MilestoneId,
    /// Who pays.
    pub client_id: UserId,
    /// Who is paid.
    pub freelancer_id: UserId,
    /// How much.
    pub amount: Money,
    /// When it expires if unpaid.
    pub due_at: Timestamp,
    /// Where it stands.
    pub status: PaymentRequestStatus,
}

impl PaymentRequest {
    /// The created request, or 404.
    pub fn existing(&self) -> Result<&CreatedPaymentRequest, DomainError> {
        self.created
            .as_ref()
            .ok_or(DomainError::NotFound("payment-request"))
    }
}

impl CreatedPaymentRequest {
    /// Refuse unless the request still waits for payment.
    pub(crate) fn ensure_pending(&self) -> Result<(), DomainError> {
        match self.status {
            PaymentRequestStatus::Pending => Ok(()),
            PaymentRequestStatus::Paid => Err(DomainError::Conflict("payment-request-already-paid")),
            PaymentRequestStatus::Expired => Err(DomainError::Conflict("payment-request-expired")),
            PaymentRequestStatus::Cancelled => Err(DomainError::Conflict("payment-request-cancelled")),
        }
    }
}

impl Aggregate for PaymentRequest {
    const STREAM_TYPE: &'static str = "payment_request";
    const CONTEXT: BoundedContext = BoundedContext::Payments;
    type Event = PaymentRequestEvent;

    fn evolve(&mut self, event: &PaymentRequestEvent) {
        match event {
            PaymentRequestEvent::PaymentRequestCreated {
                payment_request_id,
                contract_id,
                milestone_id,
                client_id,
                freelancer_id,
                amount,
                due_at,
                ..
            } => {
                self.created = Some(CreatedPaymentRequest {
                    id: *payment_request_id,
                    contract_id: *contract_id,
                    milestone_id: *milestone_id,
                    client_id: *client_id,
                    freelancer_id: *freelancer_id,
                    amount: *amount,
                    due_at: *due_at,
                    status: PaymentRequestStatus::Pending,
                });
            }
            PaymentRequestEvent::PaymentRequestPaid { .. } => self.set_status(PaymentRequestStatus::Paid),
            PaymentRequestEvent::PaymentRequestExpired { .. } => {
                self.set_status(PaymentRequestStatus::Expired)
            }
            PaymentRequestEvent::PaymentRequestCancelled { .. } => {
                self.set_status(PaymentRequestStatus::Cancelled)
            }
        }
    }
}

impl PaymentRequest {
    fn set_status(&mut self, status: PaymentRequestStatus) {
        if let Some(r) = &mut self.created {
            r.status = status;
        }
    }
}

/// Decide what a command on `request` emits.
pub fn decide(
    request: &PaymentRequest,
    command: &PaymentRequestCommand,
    ctx: &Context,
) -> Result<Vec<PaymentRequestEvent>, DomainError> {
    match command {
        PaymentRequestCommand::Create {
            payment_request_id,
            contract_id,
            milestone_id,
            client_id,
            freelancer_id,
            amount,
            due_at,
        } => {
            ctx.ensure_system()?;
            if let Some(r) = &request.created {
                // DESIGN §7: a replayed MilestoneAccepted creates nothing more.
                return if r.milestone_id == *milestone_id {
                    Ok(vec![])
                } else {
                    Err(DomainError::Conflict("payment-request-exists"))
                };
            }
            let mut errors = Vec::new();
            if *payment_request_id != PaymentRequestId::for_milestone(*milestone_id) {
                errors.push(FieldError::new(
                    "payment_request_id",
                    "must be derived from the milestone id",
                ));
            }
            if client_id == freelancer_id {
                errors.push(FieldError::new("freelancer_id", "must differ from the client"));
            }
            if !amount.is_positive() {
                errors.push(FieldError::new("amount", "must be positive"));
            }
            if *due_at <= ctx.now {
                errors.push(FieldError::new("due_at", "must be in the future"));
            }
            if !errors.is_empty() {
                return Err(DomainError::Invalid(errors));
            }
            Ok(vec![PaymentRequestEvent::PaymentRequestCreated {
                payment_request_id: *payment_request_id,
                contract_id: *contract_id,
                milestone_id: *milestone_id,
                client_id: *client_id,
                freelancer_id: *freelancer_id,
                amount: *amount,
                due_at: *due_at,
                created_at: ctx.now,
            }])
        }
        PaymentRequestCommand::Expire => {
            let r = request.existing()?;
            ctx.ensure_system()?;
            r.ensure_pending()?;
            if ctx.now < r.due_at {
                return Err(DomainError::Conflict("payment-request-not-due"));
            }
            Ok(vec![PaymentRequestEvent::PaymentRequestExpired {
                payment_request_id: r.id,
                expired_at: ctx.now,
            }])
        }
        PaymentRequestCommand::Cancel { reason } => {
            let r = request.existing()?;
            ctx.ensure_system()?;
            if r.status != PaymentRequestStatus::Pending {
                return Err(DomainError::Conflict("payment-request-not-pending"));
            }
            Ok(vec![PaymentRequestEvent::PaymentRequestCancelled {
                payment_request_id: r.id,
                contract_id: r.contract_id,
                reason: reason.clone(),
                cancelled_at: ctx.now,
            }])
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::contracts::contract::tests::{USERS, contract_id, m};
    use crate::testing::*;

    /// One day, in seconds.
    pub const DAY: i64 = 86_400;

    pub fn request_id() -> PaymentRequestId {
        PaymentRequestId::for_milestone(m(0))
    }

    fn create() -> PaymentRequestCommand {
        PaymentRequestCommand::Create {
            payment_request_id: request_id(),
            contract_id: contract_id(),
            milestone_id: m(0),
            client_id: CLIENT_ID,
            freelancer_id: FREELANCER_ID,
            amount: usd(10_000),
            due_at: later(7 * DAY),
        }
    }

    /// The request for milestone 0: 100.00 USD from the client to the freelancer, due in a week.
    pub fn created() -> PaymentRequestEvent {
        PaymentRequestEvent::PaymentRequestCreated {
            payment_request_id: request_id(),
            contract_id: contract_id(),
            milestone_id: m(0),
            client_id: CLIENT_ID,
            freelancer_id: FREELANCER_ID,
            amount: usd(10_000),
            due_at: later(7 * DAY),
            created_at: now(),
        }
    }

    /// The request for milestone 0 was paid.
    pub fn paid() -> PaymentRequestEvent {
        PaymentRequestEvent::PaymentRequestPaid {
            payment_request_id: request_id(),
            contract_id: contract_id(),
            milestone_id: m(0),
            client_id: CLIENT_ID,
            freelancer_id: FREELANCER_ID,
            amount: usd(10_000),
            paid_at: now(),
        }
    }

    /// The request for milestone 0 was cancelled.
    pub fn cancelled() -> PaymentRequestEvent {
        PaymentRequestEvent::PaymentRequestCancelled {
            payment_request_id: request_id(),
            contract_id: contract_id(),
            reason: "contract-terminated".into(),
            cancelled_at: now(),
        }
    }

    fn cancel() -> PaymentRequestCommand {
        PaymentRequestCommand::Cancel {
            reason: "contract-terminated".into(),
        }
    }

    fn expired(at: Timestamp) -> PaymentRequestEvent {
        PaymentRequestEvent::PaymentRequestExpired {
            payment_request_id: request_id(),
            expired_at: at,
        }
    }

    #[test]
    fn the_saga_creates_a_payment_request_as_the_system() {
        given::<PaymentRequest>([])
            .when(|r| decide(r, &create(), &ctx(SYSTEM)))
            .then([created()]);
    }

    #[test]
    fn only_the_system_creates_a_payment_request() {
        for actor in USERS {
            given::<PaymentRequest>([])
                .when(|r| decide(r, &create(), &ctx(actor)))
                .then_err(DomainError::Forbidden("system-only"));
            // Not even as a replay of the saga's own command.
            given::<PaymentRequest>([created()])
                .when(|r| decide(r, &create(), &ctx(actor)))
                .then_err(DomainError::Forbidden("system-only"));
        }
    }

    #[test]
    fn a_replayed_creation_changes_nothing() {
        given::<PaymentRequest>([created()])
            .when(|r| decide(r, &create(), &ctx(SYSTEM)))
            .then([]);
    }

    #[test]
    fn a_request_stream_holds_one_milestone() {
        let other = PaymentRequestCommand::Create {
            payment_request_id: PaymentRequestId::for_milestone(m(1)),
            contract_id: contract_id(),
            milestone_id: m(1),
            client_id: CLIENT_ID,
            freelancer_id: FREELANCER_ID,
            amount: usd(10_000),
            due_at: later(DAY),
        };
        given::<PaymentRequest>([created()])
            .when(|r| decide(r, &other, &ctx(SYSTEM)))
            .then_err(DomainError::Conflict("payment-request-exists"));
    }

    #[test]
    fn a_request_needs_a_derived_id_a_positive_amount_and_a_future_due_time() {
        let bad = PaymentRequestCommand::Create {
            payment_request_id: PaymentRequestId::from_uuid(uuid::Uuid::from_u128(5)),
            contract_id: contract_id(),
            milestone_id: m(0),
            client_id: CLIENT_ID,
            freelancer_id: CLIENT_ID,
            amount: usd(0),
            due_at: now(),
        };
        given::<PaymentRequest>([])
            .when(|r| decide(r, &bad, &ctx(SYSTEM)))
            .then_invalid(&["payment_request_id", "freelancer_id", "amount", "due_at"]);
    }

    #[test]
    fn an_unpaid_request_expires_after_its_due_time() {
        let at = later(8 * DAY);
        given::<PaymentRequest>([created()])
            .when(|r| decide(r, &PaymentRequestCommand::Expire, &ctx_at(SYSTEM, at)))
            .then([expired(at)]);
    }

    #[test]
    fn a_request_does_not_expire_before_its_due_time() {
        given::<PaymentRequest>([created()])
            .when(|r| decide(r, &PaymentRequestCommand::Expire, &ctx(SYSTEM)))
            .then_err(DomainError::Conflict("payment-request-not-due"));
    }

    #[test]
    fn a_paid_request_does_not_expire() {
        given::<PaymentRequest>([created(), paid()])
            .when(|r| decide(r, &PaymentRequestCommand::Expire, &ctx_at(SYSTEM, later(8 * DAY))))
            .then_err(DomainError::Conflict("payment-request-already-paid"));
    }

    #[test]
    fn a_request_expires_once() {
        given::<PaymentRequest>([created(), expired(later(8 * DAY))])
            .when(|r| decide(r, &PaymentRequestCommand::Expire, &ctx_at(SYSTEM, later(9 * DAY))))
            .then_err(DomainError::Conflict("payment-request-expired"));
    }

    #[test]
    fn only_the_system_expires_a_request() {
        for actor in USERS {
            given::<PaymentRequest>([created()])
                .when(|r| decide(r, &PaymentRequestCommand::Expire, &ctx_at(actor, later(8 * DAY))))
                .then_err(DomainError::Forbidden("system-only"));
        }
    }

    #[test]
    fn expiring_a_missing_request_is_not_found() {
        given::<PaymentRequest>([])
            .when(|r| decide(r, &PaymentRequestCommand::Expire, &ctx(SYSTEM)))
            .then_err(DomainError::NotFound("payment-request"));
    }

    #[test]
    fn payment_request_events_round_trip() {
        assert_round_trip(&[created(), paid(), expired(later(DAY)), cancelled()]);
    }

    #[test]
    fn the_saga_cancels_a_pending_request_as_the_system() {
        given::<PaymentRequest>([created()])
            .when(|r| decide(r, &cancel(), &ctx(SYSTEM)))
            .then([cancelled()]);
        let request = PaymentRequest::fold(&[created(), cancelled()]);
        assert_eq!(
            request.existing().map(|r| r.status),
            Ok(PaymentRequestStatus::Cancelled)
        );
    }

    #[test]
    fn only_the_system_cancels_a_request() {
        for actor in USERS {
            given::<PaymentRequest>([created()])
                .when(|r| decide(r, &cancel(), &ctx(actor)))
                .then_err(DomainError::Forbidden("system-only"));
        }
    }

    #[test]
    fn only_a_pending_request_is_cancelled() {
        for history in [
            vec![created(), paid()],
            vec![created(), expired(later(8 * DAY))],
            // A replayed cancel: the saga dedupes its steps by command id.
            vec![created(), cancelled()],
        ] {
            given::<PaymentRequest>(history)
                .when(|r| decide(r, &cancel(), &ctx(SYSTEM)))
                .then_err(DomainError::Conflict("payment-request-not-pending"));
        }
    }

    #[test]
    fn a_cancelled_request_does_not_expire() {
        given::<PaymentRequest>([created(), cancelled()])
            .when(|r| decide(r, &PaymentRequestCommand::Expire, &ctx_at(SYSTEM, later(8 * DAY))))
            .then_err(DomainError::Conflict("payment-request-cancelled"));
    }

    #[test]
    fn a_cancelled_request_is_not_created_again() {
        // A replayed MilestoneAccepted after the cancel creates nothing.
        given::<PaymentRequest>([created(), cancelled()])
            .when(|r| decide(r, &create(), &ctx(SYSTEM)))
            .then([]);
    }

    #[test]
    fn cancelling_a_missing_request_is_not_found() {
        given::<PaymentRequest>([])
            .when(|r| decide(r, &cancel(), &ctx(SYSTEM)))
            .then_err(DomainError::NotFound("payment-request"));
    }

    #[test]
    fn cancelled_is_recorded_in_screaming_snake_case() {
        assert_eq!(
            serde_json::to_value(PaymentRequestStatus::Cancelled).unwrap(),
            "CANCELLED"
        );
    }
}
