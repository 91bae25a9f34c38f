//! Identifiers that travel on the wire.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A space's public id: 12 characters of lowercase base32 (`a-z`, `2-7`), as it appears in
/// URLs and in `confab://space/<ID>` links.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(try_from = "String", into = "String")]
pub struct SpaceId(String);

/// Why a string is not a [`SpaceId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a space id is 12 characters of a-z and 2-7, got {0:?}")]
pub struct SpaceIdError(String);

impl SpaceId {
    /// Length of every space id.
    pub const LEN: usize = 12;
    const ALPHABET: &'static [u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

    /// Builds an id from 12 random bytes' worth of entropy (only the low 5 bits of each are used).
    pub fn from_entropy(bytes: [u8; Self::LEN]) -> Self {
        let s = bytes
            .iter()
            .map(|b| Self::ALPHABET[(b & 31) as usize] as char)
            .collect();
        SpaceId(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SpaceId {
    type Err = SpaceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() == Self::LEN && s.bytes().all(|b| Self::ALPHABET.contains(&b));
        if ok {
            Ok(SpaceId(s.to_owned()))
        } else {
            // Keep the echo short: the input may be a hostile megabyte.
            Err(SpaceIdError(s.chars().take(40).collect()))
        }
    }
}

impl TryFrom<String> for SpaceId {
    type Error = SpaceIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SpaceId> for String {
    fn from(id: SpaceId) -> String {
        id.0
    }
}

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A participant within one server process: unique per connection, never reused while the
/// process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A signed-in account as the room sees it: a handle of 1 to [`UserId::MAX_LEN`] characters of
/// `a-z`, `0-9` and `_`. Participants without one are signed out and may only listen.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

/// Why a string is not a [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a user id is 1 to 32 characters of a-z, 0-9 and _, got {0:?}")]
pub struct UserIdError(String);

impl UserId {
    /// Longest user id, in characters (all ASCII, so also in bytes).
    pub const MAX_LEN: usize = 32;

    /// Checks `s` and wraps it. The charset is narrow on purpose: ids appear in logs, URLs and
    /// SQL keys, and two ids that look alike must be the same id.
    pub fn new(s: impl Into<String>) -> Result<Self, UserIdError> {
        let s = s.into();
        let ok = (1..=Self::MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(UserId(s))
        } else {
            // Keep the echo short: the input may be a hostile megabyte.
            Err(UserIdError(s.chars().take(40).collect()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserId {
    type Err = UserIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserId::new(s)
    }
}

impl TryFrom<String> for UserId {
    type Error = UserIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        UserId::new(s)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chat message's id, unique within one room and increasing in send order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(transparent)]
pub struct ChatId(pub u64);

impl fmt::Display for ChatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_a_narrow_bounded_charset() {
        for good in ["a", "ada_lovelace", "x1", &"z".repeat(UserId::MAX_LEN)] {
            let id = UserId::new(good).unwrap();
            assert_eq!(id.as_str(), good);
            assert_eq!(good.parse::<UserId>(), Ok(id.clone()));
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
        }
        for bad in [
            "",
            "Ada",
            "ada lovelace",
            "ada-l",
            "é",
            "ada\n",
            &"z".repeat(UserId::MAX_LEN + 1),
        ] {
            assert!(UserId::new(bad).is_err(), "{bad:?} accepted");
            let json = serde_json::to_string(bad).unwrap();
            assert!(serde_json::from_str::<UserId>(&json).is_err(), "{bad:?}");
        }
        let echo = UserId::new("X".repeat(1 << 20)).unwrap_err().to_string();
        assert!(echo.len() < 200, "a hostile id is echoed short");
    }

    #[test]
    fn space_id_round_trips_and_rejects_junk() {
        let id = SpaceId::from_entropy([0, 1, 2, 3, 4, 5, 26, 27, 28, 29, 30, 31]);
        assert_eq!(id.as_str(), "abcdef234567");
        assert_eq!(id.as_str().parse::<SpaceId>(), Ok(id.clone()));
        for bad in [
            "",
            "abc",
            "ABCDEFGHIJKL",
            "abcdef23456!",
            "abcdefghijklm",
            "abcdef89abcd",
        ] {
            assert!(bad.parse::<SpaceId>().is_err(), "{bad:?} accepted");
        }
    }
}
