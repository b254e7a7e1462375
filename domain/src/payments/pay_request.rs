//! Paying a payment request: a decision over the request and the client's and the freelancer's
//! wallets (DESIGN §2). The request is paid once; the client's wallet is debited and the
//! freelancer's credited in one append over the three streams; insufficient funds → 409, nothing
//! written. The freelancer's wallet opens on its first credit. Only a pending request is paid: not
//! one already paid, expired or cancelled.

use crate::{
    Context, DomainError,
    payments::{
        payment_request::{PaymentRequest, PaymentRequestEvent},
        wallet::{self, Wallet, WalletEvent},
    },
};

/// The client pays a payment request (the request is the stream addressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PayRequest;

/// What paying appends, per stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayRequestEvents {
    /// To the payment request stream.
    pub request: Vec<PaymentRequestEvent>,
    /// To the client's wallet stream.
    pub client_wallet: Vec<WalletEvent>,
    /// To the freelancer's wallet stream.
    pub freelancer_wallet: Vec<WalletEvent>,
}

/// Decide a payment. The wallets are those of [`crate::WalletId::for_user`] of the request's
/// client and freelancer.
pub fn decide(
    (request, client_wallet, freelancer_wallet): (&PaymentRequest, &Wallet, &Wallet),
    _command: &PayRequest,
    ctx: &Context,
) -> Result<PayRequestEvents, DomainError> {
    let r = request.existing()?;
    if ctx.actor.id != r.client_id {
        return Err(DomainError::Forbidden("not-the-payer"));
    }
    r.ensure_pending()?;
    let cw = client_wallet
        .opened
        .as_ref()
        .ok_or(DomainError::Conflict("insufficient-funds"))?;
    if cw.owner_id != r.client_id {
        return Err(DomainError::Conflict("wallet-mismatch"));
    }
    cw.ensure_available(r.amount)?;
    let client_balance = cw
        .balance()
        .checked_sub(r.amount)
        .ok_or(DomainError::Conflict("insufficient-funds"))?;

    let mut freelancer_events = Vec::new();
    let fw = match &freelancer_wallet.opened {
        Some(fw) if fw.owner_id != r.freelancer_id => return Err(DomainError::Conflict("wallet-mismatch")),
        Some(fw) => fw.clone(),
        None => {
            let (event, fw) = wallet::opened(r.freelancer_id, r.amount.currency, ctx.now);
            freelancer_events.push(event);
            fw
        }
    };
    let freelancer_balance = fw.balance_plus(r.amount)?;
    freelancer_events.push(WalletEvent::WalletCredited {
        wallet_id: fw.id,
        payment_request_id: r.id,
        amount: r.amount,
        balance: freelancer_balance,
        credited_at: ctx.now,
    });

    Ok(PayRequestEvents {
        request: vec![PaymentRequestEvent::PaymentRequestPaid {
            payment_request_id: r.id,
            contract_id: r.contract_id,
            milestone_id: r.milestone_id,
            client_id: r.client_id,
            freelancer_id: r.freelancer_id,
            amount: r.amount,
            paid_at: ctx.now,
        }],
        client_wallet: vec![WalletEvent::WalletDebited {
            wallet_id: cw.id,
            payment_request_id: r.id,
            amount: r.amount,
            balance: client_balance,
            debited_at: ctx.now,
        }],
        freelancer_wallet: freelancer_events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::payment_request::tests::{cancelled, created, paid, request_id};
    use crate::payments::wallet::tests::{deposited, opened_usd, wallet_with};
    use crate::testing::*;
    use crate::{Actor, Aggregate, WalletId};

    fn pending() -> PaymentRequest {
        PaymentRequest::fold(&[created()])
    }

    fn run(
        request: PaymentRequest,
        client: Wallet,
        freelancer: Wallet,
        actor: Actor,
    ) -> Then<PayRequestEvents> {
        given_state((request, client, freelancer))
            .when(move |(r, c, f)| decide((r, c, f), &PayRequest, &ctx(actor)))
    }

    #[test]
    fn paying_debits_the_client_and_credits_the_freelancer() {
        run(
            pending(),
            wallet_with(CLIENT_ID, 15_000),
            wallet_with(FREELANCER_ID, 100),
            CLIENT,
        )
        .then(PayRequestEvents {
            request: vec![paid()],
            client_wallet: vec![WalletEvent::WalletDebited {
                wallet_id: WalletId::for_user(CLIENT_ID),
                payment_request_id: request_id(),
                amount: usd(10_000),
                balance: usd(5_000),
                debited_at: now(),
            }],
            freelancer_wallet: vec![WalletEvent::WalletCredited {
                wallet_id: WalletId::for_user(FREELANCER_ID),
                payment_request_id: request_id(),
                amount: usd(10_000),
                balance: usd(10_100),
                credited_at: now(),
            }],
        });
    }

    #[test]
    fn the_freelancer_wallet_opens_on_its_first_credit() {
        let outcome = run(
            pending(),
            wallet_with(CLIENT_ID, 10_000),
            Wallet::default(),
            CLIENT,
        )
        .then_ok();
        assert_eq!(outcome.freelancer_wallet[0], opened_usd(FREELANCER_ID));
        assert_eq!(outcome.client_wallet.len(), 1);
    }

    #[test]
    fn only_the_client_pays_a_request() {
        for actor in [FREELANCER, OTHER_CLIENT, ADMIN] {
            run(
                pending(),
                wallet_with(CLIENT_ID, 10_000),
                Wallet::default(),
                actor,
            )
            .then_err(DomainError::Forbidden("not-the-payer"));
        }
    }

    #[test]
    fn a_payment_request_is_paid_once() {
        run(
            PaymentRequest::fold(&[created(), paid()]),
            wallet_with(CLIENT_ID, 10_000),
            Wallet::default(),
            CLIENT,
        )
        .then_err(DomainError::Conflict("payment-request-already-paid"));
    }

    #[test]
    fn a_cancelled_request_cannot_be_paid() {
        run(
            PaymentRequest::fold(&[created(), cancelled()]),
            wallet_with(CLIENT_ID, 10_000),
            Wallet::default(),
            CLIENT,
        )
        .then_err(DomainError::Conflict("payment-request-cancelled"));
    }

    #[test]
    fn insufficient_funds_write_nothing() {
        run(
            pending(),
            wallet_with(CLIENT_ID, 9_999),
            Wallet::default(),
            CLIENT,
        )
        .then_err(DomainError::Conflict("insufficient-funds"));
        run(pending(), Wallet::default(), Wallet::default(), CLIENT)
            .then_err(DomainError::Conflict("insufficient-funds"));
    }

    #[test]
    fn reserved_funds_cannot_pay() {
        let mut client = wallet_with(CLIENT_ID, 10_000);
        client.evolve(&WalletEvent::FundsReserved {
            wallet_id: WalletId::for_user(CLIENT_ID),
            withdrawal_id: crate::WithdrawalId::from_uuid(uuid::Uuid::from_u128(1)),
            amount: usd(1),
            reserved: usd(1),
            reserved_at: now(),
            not_before: None,
        });
        run(pending(), client, Wallet::default(), CLIENT)
            .then_err(DomainError::Conflict("insufficient-funds"));
    }

    #[test]
    fn wallets_in_another_currency_cannot_pay() {
        let eur_wallet = Wallet::fold(&[WalletEvent::WalletOpened {
            wallet_id: WalletId::for_user(CLIENT_ID),
            owner_id: CLIENT_ID,
            currency: crate::Currency::Eur,
            opened_at: now(),
        }]);
        run(pending(), eur_wallet, Wallet::default(), CLIENT)
            .then_err(DomainError::Conflict("currency-mismatch"));
    }

    #[test]
    fn the_wallets_must_be_the_parties() {
        run(
            pending(),
            wallet_with(OTHER_CLIENT_ID, 10_000),
            Wallet::default(),
            CLIENT,
        )
        .then_err(DomainError::Conflict("wallet-mismatch"));
        run(
            pending(),
            wallet_with(CLIENT_ID, 10_000),
            Wallet::fold(&[
                opened_usd(OTHER_FREELANCER_ID),
                deposited(OTHER_FREELANCER_ID, 1, 1),
            ]),
            CLIENT,
        )
        .then_err(DomainError::Conflict("wallet-mismatch"));
    }

    #[test]
    fn paying_a_missing_request_is_not_found() {
        run(
            PaymentRequest::default(),
            wallet_with(CLIENT_ID, 1),
            Wallet::default(),
            CLIENT,
        )
        .then_err(DomainError::NotFound("payment-request"));
    }
}
