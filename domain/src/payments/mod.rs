//! Payments context: wallets, payment requests and withdrawals.
//!
//! - [`wallet`]: the Wallet aggregate (one per user; open, deposit; never below zero).
//! - [`payment_request`]: the PaymentRequest aggregate (create, expire, cancel).
//! - [`pay_request`]: paying, over the request and both wallets.
//! - [`withdrawal`]: the Withdrawal aggregate, over its wallet (reserve, then take out or release;
//!   one per wallet per cooldown window, refused or scheduled).

pub mod pay_request;
pub mod payment_request;
pub mod wallet;
pub mod withdrawal;

#[cfg(test)]
mod properties;

pub use pay_request::{PayRequest, PayRequestEvents};
pub use payment_request::{PaymentRequest, PaymentRequestCommand, PaymentRequestEvent, PaymentRequestStatus};
pub use wallet::{Wallet, WalletCommand, WalletEvent};
pub use withdrawal::{
    Cooldown, CooldownPolicy, Withdrawal, WithdrawalCommand, WithdrawalEvent, WithdrawalEvents,
    WithdrawalStatus,
};
