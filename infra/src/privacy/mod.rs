//! Personal data in the ledger (crypto-shredding): each person's personal fields are sealed with
//! a data key of their own ([`envelope`]); the data keys live in the ledger database, wrapped by a
//! master key ([`keyring`], [`keys`]); erasing a person destroys their data key, after which every
//! reader sees their fields as placeholders ([`domain::privacy`]).

pub mod envelope;
pub mod erasure;
pub mod keyring;
pub mod keys;

pub use erasure::erase_account;
pub use keyring::Keyring;

/// Why personal data could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// The person was erased: nothing personal about them may be written again.
    #[error("the person {0} was erased")]
    Erased(uuid::Uuid),
    /// `WORKUP_MASTER_KEYS` is malformed or empty.
    #[error("WORKUP_MASTER_KEYS: {0}")]
    MasterKeys(String),
    /// A data key is wrapped by a master key that is not configured.
    #[error("no master key {0} is configured (WORKUP_MASTER_KEYS)")]
    UnknownMasterKey(String),
    /// A seal did not open: wrong key, or altered data.
    #[error("sealed data does not open with its key")]
    Crypto,
    /// The key table could not be read or written.
    #[error("personal data keys: database error")]
    Database(#[from] sqlx::Error),
}
