//! Push-to-talk: when the microphone is open, from the mic mode and the key's state. Pure: the
//! shell reports key presses and releases, the app applies the mute this decides.

use confab_proto::ipc::MicMode;

/// The push-to-talk key and whether it is held.
#[derive(Debug, Default)]
pub(crate) struct Talk {
    /// The key, while in push-to-talk mode; `None` for an open mic.
    key: Option<String>,
    held: bool,
}

impl Talk {
    pub(crate) fn new(mode: &MicMode) -> Self {
        let mut talk = Talk::default();
        talk.set_mode(mode);
        talk
    }

    /// Takes a new mode. A key held under the old mode does not count as held under the new.
    pub(crate) fn set_mode(&mut self, mode: &MicMode) {
        let key = match mode {
            MicMode::Open => None,
            MicMode::PushToTalk { key } => Some(key.clone()),
        };
        if key != self.key {
            self.held = false;
        }
        self.key = key;
    }

    /// The push-to-talk key, in push-to-talk mode.
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The key went down (`true`) or up. Returns whether the microphone must now be muted, or
    /// `None` when nothing changes: an open mic, or the keyboard repeating a held key.
    pub(crate) fn press(&mut self, down: bool) -> Option<bool> {
        self.key.as_ref()?;
        if down == self.held {
            return None;
        }
        self.held = down;
        Some(!down)
    }

    /// Whether push-to-talk wants the microphone muted now; `None` for an open mic.
    pub(crate) fn wants_muted(&self) -> Option<bool> {
        self.key.as_ref().map(|_| !self.held)
    }
}

/// The modifiers a push-to-talk key may combine, as written in a key.
const MODIFIERS: &[&str] = &["Ctrl", "Alt", "Shift", "Super"];

/// Checks a push-to-talk key and writes it the one way: modifiers (`Ctrl`, `Alt`, `Shift`,
/// `Super`, each at most once, in that order) then one key: `F1` to `F24`, a letter, a digit,
/// or `Space`. `ctrl + space` becomes `Ctrl+Space`. A key alone that types text (a letter, a
/// digit, Space) is refused: held to talk, it would also type into whatever has the focus.
pub fn normalize_talk_key(input: &str) -> Result<String, &'static str> {
    if input.len() > 40 {
        return Err("a push-to-talk key is at most 40 characters");
    }
    let parts: Vec<&str> = input.split('+').map(str::trim).collect();
    let Some((key, mods)) = parts.split_last() else {
        return Err("choose a push-to-talk key");
    };
    let mut held = [false; 4];
    for m in mods {
        let i = match m.to_ascii_lowercase().as_str() {
            "ctrl" | "control" => 0,
            "alt" => 1,
            "shift" => 2,
            "super" | "meta" | "cmd" | "command" => 3,
            _ => return Err("a push-to-talk modifier is Ctrl, Alt, Shift or Super"),
        };
        if held[i] {
            return Err("a modifier appears twice in the push-to-talk key");
        }
        held[i] = true;
    }
    let lower = key.to_ascii_lowercase();
    let function = lower.strip_prefix('f').filter(|d| !d.is_empty());
    let (name, types_text) = if let Some(digits) = function {
        // Digits only, no leading zero (`F08` is a typo, not F8).
        match digits.parse::<u8>() {
            Ok(n @ 1..=24)
                if !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (format!("F{n}"), false)
            }
            _ => return Err("a function key is F1 to F24"),
        }
    } else if lower == "space" {
        ("Space".to_owned(), true)
    } else if key.len() == 1 && key.as_bytes()[0].is_ascii_alphanumeric() {
        (key.to_ascii_uppercase(), true)
    } else {
        return Err("a push-to-talk key is F1 to F24, a letter, a digit or Space");
    };
    if types_text && !held.iter().any(|&h| h) {
        return Err("a letter, a digit or Space needs a modifier (Ctrl+Space, say)");
    }
    let mut out: Vec<String> = MODIFIERS
        .iter()
        .zip(held)
        .filter(|(_, h)| *h)
        .map(|(m, _)| (*m).to_owned())
        .collect();
    out.push(name);
    Ok(out.join("+"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptt(key: &str) -> MicMode {
        MicMode::PushToTalk { key: key.into() }
    }

    #[test]
    fn an_open_mic_ignores_the_key() {
        let mut t = Talk::new(&MicMode::Open);
        assert_eq!(t.wants_muted(), None);
        assert_eq!(t.press(true), None);
        assert_eq!(t.press(false), None);
        assert_eq!(t.key(), None);
    }

    #[test]
    fn push_to_talk_is_muted_unless_held_and_ignores_key_repeat() {
        let mut t = Talk::new(&ptt("F8"));
        assert_eq!(t.key(), Some("F8"));
        assert_eq!(t.wants_muted(), Some(true));
        assert_eq!(t.press(true), Some(false), "pressed: talk");
        assert_eq!(t.press(true), None, "auto-repeat changes nothing");
        assert_eq!(t.wants_muted(), Some(false));
        assert_eq!(t.press(false), Some(true), "released: muted");
        assert_eq!(t.press(false), None, "a second release changes nothing");
        assert_eq!(t.wants_muted(), Some(true));
    }

    #[test]
    fn a_new_key_or_mode_forgets_the_held_key() {
        let mut t = Talk::new(&ptt("F8"));
        t.press(true);
        t.set_mode(&ptt("F8"));
        assert_eq!(t.wants_muted(), Some(false), "the same key stays held");
        t.set_mode(&ptt("Ctrl+Space"));
        assert_eq!(t.wants_muted(), Some(true), "a new key starts released");
        t.press(true);
        t.set_mode(&MicMode::Open);
        assert_eq!(t.wants_muted(), None);
        t.set_mode(&ptt("Ctrl+Space"));
        assert_eq!(t.wants_muted(), Some(true));
    }

    #[test]
    fn keys_are_checked_and_written_one_way() {
        assert_eq!(normalize_talk_key("F8").unwrap(), "F8");
        assert_eq!(normalize_talk_key(" f12 ").unwrap(), "F12");
        assert_eq!(normalize_talk_key("ctrl + space").unwrap(), "Ctrl+Space");
        assert_eq!(
            normalize_talk_key("Shift+Control+t").unwrap(),
            "Ctrl+Shift+T"
        );
        assert_eq!(normalize_talk_key("Super+F24").unwrap(), "Super+F24");
        for bad in [
            "",
            "+",
            "F0",
            "F25",
            "F08",
            "Fx",
            "Space",
            "a",
            "7",
            "Ctrl+Ctrl+A",
            "Hyper+A",
            "Ctrl+",
            "Ctrl+Enter",
            "F8+Ctrl",
            "Ctrl+ä",
        ] {
            assert!(normalize_talk_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize_talk_key(&"Ctrl+".repeat(50)).is_err());
    }
}
