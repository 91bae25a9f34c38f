//! Accounts without passwords. A user has a handle (unique on this server, lower case), a
//! display name, a bio and a small avatar; each of their devices holds an Ed25519 key. A device
//! signs in by signing a fresh challenge from the server and gets a bearer token that expires.
//!
//! What is signed is always `confab-auth-v1`, a purpose, and the challenge (plus, to register,
//! the handle), one per line: a signature made for one purpose or server challenge is useless
//! for any other. A challenge is good for one attempt, right or wrong, within
//! [`CHALLENGE_TTL`]. Tokens are random, kept only as SHA-256 hashes, and expire after
//! [`TOKEN_TTL`]. Time comes in as the `now` argument (Unix seconds) so tests can move it.
//!
//! Served over HTTP (`/api/auth/*`, `/api/accounts`, `/api/me`, `/api/users/{handle}`); not
//! yet used by signaling: the room core's stage takes an account per participant next.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use confab_proto::ErrorCode;
use ed25519_dalek::{Signature, VerifyingKey};
use rand::RngExt as _;
use sha2::{Digest, Sha256};

use crate::db::{AccountWrite, Db, UserRecord};

/// How long a challenge may be answered, in seconds.
pub const CHALLENGE_TTL: i64 = 60;
/// How long a token signs its holder in, in seconds (a day).
pub const TOKEN_TTL: i64 = 24 * 60 * 60;
/// Challenges waiting for an answer, at most (oldest expire first; more are refused).
const MAX_PENDING: usize = 10_000;
/// The largest avatar accepted, in bytes.
pub const MAX_AVATAR_BYTES: usize = 64 * 1024;
const MAX_DISPLAY_NAME: usize = 40;
const MAX_BIO: usize = 160;

/// Why an account request was refused. Refusals change nothing but consume the challenge.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("invalid handle: {0}")]
    InvalidHandle(&'static str),
    #[error("invalid profile: {0}")]
    InvalidProfile(&'static str),
    #[error("the handle is taken")]
    HandleTaken,
    #[error("this device key is registered already")]
    KeyTaken,
    #[error("no account has this device key")]
    UnknownKey,
    #[error("the public key or signature is malformed")]
    Malformed,
    #[error("no such challenge, or it expired: ask for a new one")]
    NoChallenge,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token is unknown or expired: sign in again")]
    BadToken,
    #[error("too many sign-ins in progress; retry shortly")]
    Busy,
    #[error("storage failed: {0}")]
    Storage(anyhow::Error),
}

impl AccountError {
    /// The stable code sent to clients.
    pub fn code(&self) -> ErrorCode {
        match self {
            AccountError::InvalidHandle(_)
            | AccountError::InvalidProfile(_)
            | AccountError::Malformed => ErrorCode::InvalidInput,
            AccountError::HandleTaken
            | AccountError::KeyTaken
            | AccountError::UnknownKey
            | AccountError::NoChallenge
            | AccountError::BadSignature => ErrorCode::NotAllowed,
            AccountError::BadToken => ErrorCode::BadToken,
            AccountError::Busy | AccountError::Storage(_) => ErrorCode::Internal,
        }
    }
}

impl From<AccountWrite> for AccountError {
    fn from(e: AccountWrite) -> AccountError {
        match e {
            AccountWrite::HandleTaken => AccountError::HandleTaken,
            AccountWrite::KeyTaken => AccountError::KeyTaken,
            AccountWrite::NoSuchUser => AccountError::BadToken,
            AccountWrite::Db(e) => AccountError::Storage(e),
        }
    }
}

/// A signed-in user's public profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub avatar: Option<Vec<u8>>,
}

impl From<UserRecord> for User {
    fn from(r: UserRecord) -> User {
        User {
            handle: r.handle,
            display_name: r.display_name,
            bio: r.bio,
            avatar: r.avatar,
        }
    }
}

/// A token and when it stops working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub expires_at: i64,
}

/// What a challenge may be used for; part of the signed text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Register,
    SignIn,
}

/// The exact bytes a device signs.
pub fn signed_text(purpose: Purpose, challenge: &str, handle: Option<&str>) -> Vec<u8> {
    let purpose = match purpose {
        Purpose::Register => "register",
        Purpose::SignIn => "sign-in",
    };
    let mut text = format!("confab-auth-v1\n{purpose}\n{challenge}");
    if let Some(h) = handle {
        text.push('\n');
        text.push_str(h);
    }
    text.into_bytes()
}

struct Pending {
    key: [u8; 32],
    expires_at: i64,
}

/// The accounts of one server.
pub struct Accounts {
    db: Arc<Db>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl Accounts {
    pub(crate) fn new(db: Arc<Db>) -> Accounts {
        Accounts {
            db,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Accounts on a throwaway in-memory database (tests).
    pub fn in_memory() -> anyhow::Result<Accounts> {
        Ok(Accounts::new(Arc::new(Db::open_in_memory()?)))
    }

    /// A fresh challenge for the device holding `public_key` (base64url, 32 bytes).
    pub fn challenge(&self, public_key: &str, now: i64) -> Result<String, AccountError> {
        let key = decode_key(public_key)?;
        let bytes: [u8; 24] = rand::rng().random();
        let challenge = URL_SAFE_NO_PAD.encode(bytes);
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        pending.retain(|_, p| p.expires_at > now);
        if pending.len() >= MAX_PENDING {
            return Err(AccountError::Busy);
        }
        pending.insert(
            challenge.clone(),
            Pending {
                key,
                expires_at: now + CHALLENGE_TTL,
            },
        );
        Ok(challenge)
    }

    /// Creates an account for the device that signed `challenge` (purpose register, with the
    /// handle) and signs it in.
    pub fn register(
        &self,
        handle: &str,
        display_name: &str,
        challenge: &str,
        signature: &str,
        now: i64,
    ) -> Result<(User, Token), AccountError> {
        let handle = valid_handle(handle)?;
        let display_name = valid_display_name(display_name)?;
        let key = self.answer(
            challenge,
            signature,
            &signed_text(Purpose::Register, challenge, Some(&handle)),
            now,
        )?;
        let record = UserRecord {
            handle,
            display_name,
            bio: String::new(),
            avatar: None,
            created_at: now,
        };
        self.db.insert_user(&record, &key)?;
        let token = self.issue(&record.handle, now)?;
        Ok((record.into(), token))
    }

    /// Signs in the account whose device signed `challenge` (purpose sign-in).
    pub fn sign_in(
        &self,
        challenge: &str,
        signature: &str,
        now: i64,
    ) -> Result<(User, Token), AccountError> {
        let key = self.answer(
            challenge,
            signature,
            &signed_text(Purpose::SignIn, challenge, None),
            now,
        )?;
        let user = self
            .db
            .user_by_key(&key)
            .map_err(AccountError::Storage)?
            .ok_or(AccountError::UnknownKey)?;
        let token = self.issue(&user.handle, now)?;
        Ok((user.into(), token))
    }

    /// The user a token signs in, if it is known and unexpired.
    pub fn user_for_token(&self, token: &str, now: i64) -> Result<User, AccountError> {
        self.db
            .user_by_token(&hash(token), now)
            .map_err(AccountError::Storage)?
            .map(User::from)
            .ok_or(AccountError::BadToken)
    }

    /// A user's public profile by handle (any case).
    pub fn user(&self, handle: &str) -> Result<Option<User>, AccountError> {
        Ok(self
            .db
            .user(&handle.trim().to_ascii_lowercase())
            .map_err(AccountError::Storage)?
            .map(User::from))
    }

    /// Adds another device's key to the signed-in user's account.
    pub fn add_device(&self, token: &str, public_key: &str, now: i64) -> Result<(), AccountError> {
        let user = self.user_for_token(token, now)?;
        let key = decode_key(public_key)?;
        self.db.add_device_key(&user.handle, &key, now)?;
        Ok(())
    }

    /// Replaces the signed-in user's display name, bio and avatar (PNG or JPEG, small).
    pub fn update_profile(
        &self,
        token: &str,
        display_name: &str,
        bio: &str,
        avatar: Option<Vec<u8>>,
        now: i64,
    ) -> Result<User, AccountError> {
        let user = self.user_for_token(token, now)?;
        let display_name = valid_display_name(display_name)?;
        let bio = bio.trim();
        if bio.chars().count() > MAX_BIO || bio.chars().any(char::is_control) {
            return Err(AccountError::InvalidProfile(
                "a bio is at most 160 characters, one line",
            ));
        }
        if let Some(a) = &avatar {
            if a.len() > MAX_AVATAR_BYTES {
                return Err(AccountError::InvalidProfile("an avatar is at most 64 KiB"));
            }
            let png = a.starts_with(b"\x89PNG\r\n\x1a\n");
            let jpeg = a.starts_with(&[0xff, 0xd8, 0xff]);
            if !png && !jpeg {
                return Err(AccountError::InvalidProfile(
                    "an avatar is a PNG or JPEG image",
                ));
            }
        }
        let record = UserRecord {
            handle: user.handle,
            display_name,
            bio: bio.to_owned(),
            avatar,
            created_at: 0,
        };
        self.db.update_profile(&record)?;
        Ok(record.into())
    }

    /// Consumes `challenge` and checks that its device signed `text`; returns the device key.
    fn answer(
        &self,
        challenge: &str,
        signature: &str,
        text: &[u8],
        now: i64,
    ) -> Result<[u8; 32], AccountError> {
        let pending = self
            .pending
            .lock()
            .map_err(|_| poisoned())?
            .remove(challenge)
            .filter(|p| p.expires_at > now)
            .ok_or(AccountError::NoChallenge)?;
        let key = VerifyingKey::from_bytes(&pending.key).map_err(|_| AccountError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AccountError::Malformed)?;
        let signature = Signature::from_slice(&bytes).map_err(|_| AccountError::Malformed)?;
        key.verify_strict(text, &signature)
            .map_err(|_| AccountError::BadSignature)?;
        Ok(pending.key)
    }

    fn issue(&self, handle: &str, now: i64) -> Result<Token, AccountError> {
        let bytes: [u8; 32] = rand::rng().random();
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let expires_at = now + TOKEN_TTL;
        self.db
            .insert_token(&hash(&token), handle, expires_at, now)
            .map_err(AccountError::Storage)?;
        Ok(Token { token, expires_at })
    }

    #[cfg(test)]
    fn stored_token_hashes(&self) -> Vec<Vec<u8>> {
        self.db.token_hashes().unwrap_or_default()
    }
}

fn poisoned() -> AccountError {
    AccountError::Storage(anyhow::anyhow!("accounts lock poisoned"))
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn decode_key(public_key: &str) -> Result<[u8; 32], AccountError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(public_key)
        .map_err(|_| AccountError::Malformed)?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| AccountError::Malformed)?;
    VerifyingKey::from_bytes(&key).map_err(|_| AccountError::Malformed)?;
    Ok(key)
}

/// Handles are 3 to 20 of `a-z`, `0-9` and `_`, starting with a letter; compared lower case.
fn valid_handle(handle: &str) -> Result<String, AccountError> {
    let h = handle.trim().to_ascii_lowercase();
    if !(3..=20).contains(&h.len()) {
        return Err(AccountError::InvalidHandle("3 to 20 characters"));
    }
    if !h.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(AccountError::InvalidHandle("it starts with a letter"));
    }
    if !h
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(AccountError::InvalidHandle("only letters, digits and _"));
    }
    Ok(h)
}

fn valid_display_name(name: &str) -> Result<String, AccountError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_DISPLAY_NAME || n.chars().any(char::is_control) {
        return Err(AccountError::InvalidProfile(
            "a display name is 1 to 40 characters, one line",
        ));
    }
    Ok(n.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn device(seed: u8) -> (SigningKey, String) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let public = URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
        (key, public)
    }

    fn sign(key: &SigningKey, purpose: Purpose, challenge: &str, handle: Option<&str>) -> String {
        URL_SAFE_NO_PAD.encode(
            key.sign(&signed_text(purpose, challenge, handle))
                .to_bytes(),
        )
    }

    fn register(
        accounts: &Accounts,
        seed: u8,
        handle: &str,
    ) -> Result<(User, Token), AccountError> {
        let (key, public) = device(seed);
        let c = accounts.challenge(&public, NOW).unwrap();
        let sig = sign(
            &key,
            Purpose::Register,
            &c,
            Some(&handle.to_ascii_lowercase()),
        );
        accounts.register(handle, "Ada", &c, &sig, NOW)
    }

    #[test]
    fn a_device_registers_signs_in_and_its_token_expires() {
        let accounts = Accounts::in_memory().unwrap();
        let (user, first) = register(&accounts, 1, "Ada_L").unwrap();
        assert_eq!(user.handle, "ada_l");
        assert_eq!(accounts.user_for_token(&first.token, NOW).unwrap(), user);

        let (key, public) = device(1);
        let c = accounts.challenge(&public, NOW + 10).unwrap();
        let sig = sign(&key, Purpose::SignIn, &c, None);
        let (again, token) = accounts.sign_in(&c, &sig, NOW + 10).unwrap();
        assert_eq!(again, user);
        assert_ne!(token.token, first.token);
        assert_eq!(token.expires_at, NOW + 10 + TOKEN_TTL);
        assert!(
            accounts
                .user_for_token(&token.token, token.expires_at - 1)
                .is_ok()
        );
        assert!(matches!(
            accounts.user_for_token(&token.token, token.expires_at),
            Err(AccountError::BadToken)
        ));
        // Only hashes are stored: the database alone signs no one in.
        let stored = accounts.stored_token_hashes();
        assert!(!stored.is_empty());
        assert!(
            stored
                .iter()
                .all(|h| h.len() == 32 && h.as_slice() != token.token.as_bytes())
        );
    }

    #[test]
    fn another_key_a_replayed_or_expired_challenge_and_another_purpose_are_refused() {
        let accounts = Accounts::in_memory().unwrap();
        register(&accounts, 1, "ada").unwrap();
        let (key, public) = device(1);
        let (mallory, _) = device(2);

        // Signed by someone else's key.
        let c = accounts.challenge(&public, NOW).unwrap();
        let forged = sign(&mallory, Purpose::SignIn, &c, None);
        assert!(matches!(
            accounts.sign_in(&c, &forged, NOW),
            Err(AccountError::BadSignature)
        ));
        // The challenge was used up by the failed attempt.
        let good = sign(&key, Purpose::SignIn, &c, None);
        assert!(matches!(
            accounts.sign_in(&c, &good, NOW),
            Err(AccountError::NoChallenge)
        ));

        // A good answer works once.
        let c = accounts.challenge(&public, NOW).unwrap();
        let good = sign(&key, Purpose::SignIn, &c, None);
        accounts.sign_in(&c, &good, NOW).unwrap();
        assert!(matches!(
            accounts.sign_in(&c, &good, NOW),
            Err(AccountError::NoChallenge)
        ));

        // Too late.
        let c = accounts.challenge(&public, NOW).unwrap();
        let good = sign(&key, Purpose::SignIn, &c, None);
        assert!(matches!(
            accounts.sign_in(&c, &good, NOW + CHALLENGE_TTL),
            Err(AccountError::NoChallenge)
        ));

        // A registration signature does not sign in.
        let c = accounts.challenge(&public, NOW).unwrap();
        let other = sign(&key, Purpose::Register, &c, Some("ada"));
        assert!(matches!(
            accounts.sign_in(&c, &other, NOW),
            Err(AccountError::BadSignature)
        ));

        // Garbage.
        assert!(matches!(
            accounts.challenge("not base64!", NOW),
            Err(AccountError::Malformed)
        ));
        assert!(matches!(
            accounts.challenge("AAAA", NOW),
            Err(AccountError::Malformed)
        ));
        let c = accounts.challenge(&public, NOW).unwrap();
        assert!(matches!(
            accounts.sign_in(&c, "AAAA", NOW),
            Err(AccountError::Malformed)
        ));
    }

    #[test]
    fn handles_are_unique_whatever_the_case_and_a_refusal_changes_nothing() {
        let accounts = Accounts::in_memory().unwrap();
        let (ada, token) = register(&accounts, 1, "ada").unwrap();
        assert!(matches!(
            register(&accounts, 2, "ADA"),
            Err(AccountError::HandleTaken)
        ));
        assert_eq!(accounts.user_for_token(&token.token, NOW).unwrap(), ada);
        // The same device key cannot open a second account.
        assert!(matches!(
            register(&accounts, 1, "ada2"),
            Err(AccountError::KeyTaken)
        ));
        for bad in ["ab", "1abc", "a-b-c", "abcdefghijklmnopqrstu", "ädä", ""] {
            assert!(
                matches!(
                    register(&accounts, 3, bad),
                    Err(AccountError::InvalidHandle(_))
                ),
                "{bad:?}"
            );
        }
        // A signature over another handle does not register this one.
        let (key, public) = device(4);
        let c = accounts.challenge(&public, NOW).unwrap();
        let sig = sign(&key, Purpose::Register, &c, Some("bob"));
        assert!(matches!(
            accounts.register("eve", "Eve", &c, &sig, NOW),
            Err(AccountError::BadSignature)
        ));
    }

    #[test]
    fn a_second_device_signs_in_as_the_same_user_and_profiles_are_checked() {
        let accounts = Accounts::in_memory().unwrap();
        let (ada, token) = register(&accounts, 1, "ada").unwrap();
        let (laptop, laptop_public) = device(5);
        accounts
            .add_device(&token.token, &laptop_public, NOW)
            .unwrap();
        let c = accounts.challenge(&laptop_public, NOW).unwrap();
        let sig = sign(&laptop, Purpose::SignIn, &c, None);
        assert_eq!(accounts.sign_in(&c, &sig, NOW).unwrap().0, ada);
        assert!(matches!(
            accounts.add_device("no-such-token", &laptop_public, NOW),
            Err(AccountError::BadToken)
        ));

        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        let updated = accounts
            .update_profile(
                &token.token,
                " Ada L. ",
                "Audio person",
                Some(png.clone()),
                NOW,
            )
            .unwrap();
        assert_eq!(updated.display_name, "Ada L.");
        assert_eq!(updated.avatar, Some(png));
        let before = accounts.user_for_token(&token.token, NOW).unwrap();
        for (name, bio, avatar) in [
            ("", "", None),
            ("A", &"x".repeat(161)[..], None),
            ("A", "", Some(vec![0u8; 10])),
            (
                "A",
                "",
                Some([b"\x89PNG\r\n\x1a\n".as_slice(), &[0u8; MAX_AVATAR_BYTES]].concat()),
            ),
        ] {
            assert!(matches!(
                accounts.update_profile(&token.token, name, bio, avatar, NOW),
                Err(AccountError::InvalidProfile(_))
            ));
        }
        assert_eq!(accounts.user_for_token(&token.token, NOW).unwrap(), before);
    }
}
