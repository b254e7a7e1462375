//! Master keys: they wrap the per-person data keys stored in the ledger database, so a copy of
//! that table alone reveals nothing. Configured as `WORKUP_MASTER_KEYS=id:base64key[,id:base64key]`:
//! the first key wraps new data keys; the others only unwrap keys wrapped before a rotation
//! (`control privacy rotate` rewraps them with the first).

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use chacha20poly1305::{
    Key, XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::PrivacyError;

/// Bytes of a nonce of XChaCha20-Poly1305.
pub(crate) const NONCE_BYTES: usize = 24;

/// The master key of the local stack when `WORKUP_MASTER_KEYS` is unset (`WORKUP_ENV=dev` only).
const DEV_MASTER_KEY_ID: &str = "dev";

/// One master key and its id (stored beside every key it wraps).
struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The master keys in force: the first wraps, all unwrap.
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring")
            .field("ids", &ids)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Parse `id:base64key[,id:base64key...]`: each key 32 bytes, ids distinct and non-empty.
    pub fn parse(raw: &SecretString) -> Result<Self, PrivacyError> {
        let mut keys: Vec<MasterKey> = Vec::new();
        for entry in raw
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let invalid = |why: &str| PrivacyError::MasterKeys(format!("{why} (entries are id:base64key)"));
            let (id, encoded) = entry
                .split_once(':')
                .ok_or_else(|| invalid("an entry has no id"))?;
            let bytes = BASE64
                .decode(encoded)
                .map_err(|_| invalid(&format!("key {id} is not base64")))?;
            let key = <[u8; 32]>::try_from(bytes.as_slice())
                .ok()
                .filter(|_| !id.is_empty())
                .ok_or_else(|| invalid(&format!("key {id:?} must have an id and 32 bytes")))?;
            if keys.iter().any(|k| k.id == id) {
                return Err(invalid(&format!("key id {id} appears twice")));
            }
            keys.push(MasterKey {
                id: id.to_owned(),
                cipher: XChaCha20Poly1305::new(&Key::from(key)),
            });
        }
        if keys.is_empty() {
            return Err(PrivacyError::MasterKeys("no master key is set".into()));
        }
        Ok(Self { keys })
    }

    /// The fixed master key of the local stack (never for production: anyone can derive it).
    pub fn development() -> Self {
        let key: [u8; 32] = Sha256::digest(b"workup-local-development-master-key-not-for-production").into();
        Self {
            keys: vec![MasterKey {
                id: DEV_MASTER_KEY_ID.to_owned(),
                cipher: XChaCha20Poly1305::new(&Key::from(key)),
            }],
        }
    }

    /// A fresh random key (base64), e.g. for `WORKUP_MASTER_KEYS`.
    pub fn generate_key() -> String {
        BASE64.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// The id of the key that wraps new data keys.
    pub fn current_id(&self) -> &str {
        self.current().id.as_str()
    }

    fn current(&self) -> &MasterKey {
        // `parse` and `development` never build an empty keyring.
        &self.keys[0]
    }

    /// Wrap `data_key` with the current master key: `(its id, nonce ‖ ciphertext)`. The subject
    /// is bound as associated data: a wrapped key copied to another person's row does not unwrap.
    pub(crate) fn wrap(
        &self,
        subject: uuid::Uuid,
        data_key: &Key,
    ) -> Result<(String, Vec<u8>), PrivacyError> {
        let master = self.current();
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = master
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &data_key[..],
                    aad: subject.as_bytes(),
                },
            )
            .map_err(|_| PrivacyError::Crypto)?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend(sealed);
        Ok((master.id.clone(), wrapped))
    }

    /// Unwrap a data key wrapped by master key `id`.
    pub(crate) fn unwrap_key(
        &self,
        subject: uuid::Uuid,
        id: &str,
        wrapped: &[u8],
    ) -> Result<Key, PrivacyError> {
        let master = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| PrivacyError::UnknownMasterKey(id.to_owned()))?;
        let (nonce, sealed) = split_nonce(wrapped)?;
        let key = master
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: subject.as_bytes(),
                },
            )
            .map_err(|_| PrivacyError::Crypto)?;
        let key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| PrivacyError::Crypto)?;
        Ok(Key::from(key))
    }
}

/// Split `nonce ‖ ciphertext`.
pub(crate) fn split_nonce(blob: &[u8]) -> Result<(XNonce, &[u8]), PrivacyError> {
    if blob.len() <= NONCE_BYTES {
        return Err(PrivacyError::Crypto);
    }
    let (nonce, sealed) = blob.split_at(NONCE_BYTES);
    let nonce = <[u8; NONCE_BYTES]>::try_from(nonce).map_err(|_| PrivacyError::Crypto)?;
    Ok((XNonce::from(nonce), sealed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn keyring(raw: &str) -> Result<Keyring, PrivacyError> {
        Keyring::parse(&SecretString::from(raw.to_owned()))
    }

    #[test]
    fn a_rotated_keyring_unwraps_what_the_old_one_wrapped() {
        let (old, new) = (Keyring::generate_key(), Keyring::generate_key());
        let before = keyring(&format!("k1:{old}")).expect("one key");
        let after = keyring(&format!("k2:{new}, k1:{old}")).expect("two keys");
        assert_eq!(after.current_id(), "k2");
        let subject = Uuid::now_v7();
        let data_key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let (id, wrapped) = before.wrap(subject, &data_key).expect("wrap");
        assert_eq!(id, "k1");
        assert_eq!(
            after.unwrap_key(subject, &id, &wrapped).expect("unwrap"),
            data_key
        );
        assert!(matches!(
            after.unwrap_key(Uuid::now_v7(), &id, &wrapped),
            Err(PrivacyError::Crypto)
        ));
        let retired = keyring(&format!("k2:{new}")).expect("one key");
        assert!(matches!(
            retired.unwrap_key(subject, &id, &wrapped),
            Err(PrivacyError::UnknownMasterKey(_))
        ));
    }

    #[test]
    fn malformed_master_keys_are_refused() {
        let key = Keyring::generate_key();
        for raw in [
            "",
            "nokey",
            "k1:not-base64!",
            "k1:AAAA",
            &format!(":{key}"),
            &format!("a:{key},a:{key}"),
        ] {
            assert!(keyring(raw).is_err(), "{raw:?} accepted");
        }
    }
}
