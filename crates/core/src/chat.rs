//! What people may say in a room besides their voice: chat text, reactions and the pinned link,
//! as the room accepts them, and the recent messages it remembers so they can be deleted.

use std::collections::VecDeque;

use confab_proto::{ChatId, MAX_CHAT_CHARS, MAX_LINK_CHARS, ParticipantId, REACTIONS};

use crate::RoomError;

/// How many recent messages a room remembers for deletion. Older ones have scrolled away on
/// every client and cannot be deleted any more.
pub(crate) const CHAT_MEMORY: usize = 256;

/// A chat message's text trimmed of surrounding whitespace, if 1 to [`MAX_CHAT_CHARS`]
/// characters remain and none is a control character other than a line break or tab.
pub(crate) fn clean_chat(text: &str) -> Result<String, RoomError> {
    let text = text.trim();
    // `nth` rather than `count` so a hostile megabyte costs no more than a long message.
    if text.is_empty() || text.chars().nth(MAX_CHAT_CHARS).is_some() {
        return Err(RoomError::InvalidChat);
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(RoomError::InvalidChat);
    }
    Ok(text.to_owned())
}

/// A link to pin, trimmed: `http://` or `https://` (any case), something after it, at most
/// [`MAX_LINK_CHARS`] characters, no whitespace or control characters inside.
pub(crate) fn clean_link(link: &str) -> Result<String, RoomError> {
    let link = link.trim();
    if link.chars().nth(MAX_LINK_CHARS).is_some() {
        return Err(RoomError::InvalidLink);
    }
    let lower = link.get(..8).unwrap_or(link).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &link[8..]
    } else if lower.starts_with("http://") {
        &link[7..]
    } else {
        return Err(RoomError::InvalidLink);
    };
    let host_ok = rest
        .split(['/', '?', '#'])
        .next()
        .is_some_and(|host| !host.is_empty());
    if !host_ok || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RoomError::InvalidLink);
    }
    Ok(link.to_owned())
}

/// Whether `emoji` is one of [`REACTIONS`], exactly.
pub(crate) fn is_reaction(emoji: &str) -> bool {
    REACTIONS.contains(&emoji)
}

/// The last [`CHAT_MEMORY`] messages' ids and authors, oldest first, and the next id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChatLog {
    recent: VecDeque<(ChatId, ParticipantId)>,
    next: u64,
}

impl ChatLog {
    /// The id the next message will get.
    pub(crate) fn next_id(&self) -> ChatId {
        ChatId(self.next)
    }

    /// Records a message by `author` under [`ChatLog::next_id`].
    pub(crate) fn push(&mut self, author: ParticipantId) {
        if self.recent.len() >= CHAT_MEMORY {
            self.recent.pop_front();
        }
        self.recent.push_back((ChatId(self.next), author));
        self.next = self.next.saturating_add(1);
    }

    pub(crate) fn author(&self, id: ChatId) -> Option<ParticipantId> {
        // Ids increase, so a binary search finds it among the remembered ones.
        let i = self.recent.binary_search_by_key(&id, |(id, _)| *id).ok()?;
        self.recent.get(i).map(|(_, author)| *author)
    }

    pub(crate) fn forget(&mut self, id: ChatId) {
        if let Ok(i) = self.recent.binary_search_by_key(&id, |(id, _)| *id) {
            self.recent.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_is_trimmed_bounded_and_printable() {
        assert_eq!(clean_chat("  hi there \n").as_deref(), Ok("hi there"));
        assert_eq!(
            clean_chat("two\nlines\tok").as_deref(),
            Ok("two\nlines\tok")
        );
        for bad in ["", "   \n\t", "bell\u{7}", "nul\0"] {
            assert_eq!(clean_chat(bad), Err(RoomError::InvalidChat), "{bad:?}");
        }
        let longest = "é".repeat(MAX_CHAT_CHARS);
        assert_eq!(clean_chat(&longest), Ok(longest.clone()));
        assert_eq!(
            clean_chat(&format!("{longest}e")),
            Err(RoomError::InvalidChat)
        );
        assert_eq!(
            clean_chat(&"x".repeat(1 << 20)),
            Err(RoomError::InvalidChat)
        );
    }

    #[test]
    fn links_are_http_or_https_and_bounded() {
        for good in [
            "https://example.org",
            "http://example.org/a?b=c#d",
            "  HTTPS://Example.org/notes  ",
        ] {
            assert_eq!(clean_link(good).as_deref(), Ok(good.trim()), "{good:?}");
        }
        for bad in [
            "",
            "example.org",
            "javascript:alert(1)",
            "ftp://example.org",
            "https://",
            "https:///path",
            "https://exa mple.org",
            "https://example.org/\u{0}",
            "httpé://x",
        ] {
            assert_eq!(clean_link(bad), Err(RoomError::InvalidLink), "{bad:?}");
        }
        let long = format!("https://example.org/{}", "a".repeat(MAX_LINK_CHARS));
        assert_eq!(clean_link(&long), Err(RoomError::InvalidLink));
        let fits = format!("https://e.org/{}", "a".repeat(MAX_LINK_CHARS - 14));
        assert_eq!(clean_link(&fits), Ok(fits.clone()));
    }

    #[test]
    fn only_the_fixed_reactions() {
        for emoji in REACTIONS {
            assert!(is_reaction(emoji));
        }
        for bad in ["", "❤", "👍", "💯💯", " 💯", "<script>"] {
            assert!(!is_reaction(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_log_remembers_recent_messages_only() {
        let mut log = ChatLog::default();
        for i in 0..(CHAT_MEMORY as u64 + 10) {
            assert_eq!(log.next_id(), ChatId(i));
            log.push(ParticipantId(i % 3));
        }
        assert_eq!(log.author(ChatId(9)), None, "scrolled away");
        assert_eq!(log.author(ChatId(10)), Some(ParticipantId(1)));
        log.forget(ChatId(10));
        assert_eq!(log.author(ChatId(10)), None);
        assert_eq!(log.author(ChatId(11)), Some(ParticipantId(2)));
        assert_eq!(log.author(ChatId(u64::MAX)), None);
    }
}
