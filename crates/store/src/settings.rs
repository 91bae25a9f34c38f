//! App settings: a string per key.
//!
//! The typed helpers use the keys `server_url`, `display_name`, `input_device`,
//! `output_device` and `push_to_talk`; [`Store::get_setting`] reads the same values under those
//! names.

use confab_proto::ipc::MicMode;
use rusqlite::{OptionalExtension, params};

use crate::{Store, StoreError};

const SERVER_URL: &str = "server_url";
const DISPLAY_NAME: &str = "display_name";
const INPUT_DEVICE: &str = "input_device";
const OUTPUT_DEVICE: &str = "output_device";
const PUSH_TO_TALK: &str = "push_to_talk";

impl Store {
    /// The value stored under `key`, if any (an unreadable value counts as none).
    pub fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([key], |row| Ok(row.get(0).ok()))
            .optional()?
            .flatten())
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Removes `key`. Returns `true` if it had a value.
    pub fn remove_setting(&mut self, key: &str) -> Result<bool, StoreError> {
        let removed = self
            .conn
            .execute("DELETE FROM settings WHERE key = ?1", [key])?;
        Ok(removed == 1)
    }

    fn set_or_remove(&mut self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(value) => self.set_setting(key, value),
            None => self.remove_setting(key).map(drop),
        }
    }

    /// The server the app talks to.
    pub fn server_url(&self) -> Result<Option<String>, StoreError> {
        self.get_setting(SERVER_URL)
    }

    /// Sets the server URL; `None` forgets it.
    pub fn set_server_url(&mut self, url: Option<&str>) -> Result<(), StoreError> {
        self.set_or_remove(SERVER_URL, url)
    }

    /// The name the user goes by in spaces.
    pub fn display_name(&self) -> Result<Option<String>, StoreError> {
        self.get_setting(DISPLAY_NAME)
    }

    /// Sets the display name; `None` forgets it.
    pub fn set_display_name(&mut self, name: Option<&str>) -> Result<(), StoreError> {
        self.set_or_remove(DISPLAY_NAME, name)
    }

    /// The chosen microphone, by device name; `None` means the system default.
    pub fn input_device(&self) -> Result<Option<String>, StoreError> {
        self.get_setting(INPUT_DEVICE)
    }

    /// Whether voice-processing stage `stage` (a short name) is on; `None` if never set.
    pub fn voice_stage(&self, stage: &str) -> Result<Option<bool>, StoreError> {
        Ok(self
            .get_setting(&format!("voice.{stage}"))?
            .map(|v| v == "on"))
    }

    /// Turns voice-processing stage `stage` on or off.
    pub fn set_voice_stage(&mut self, stage: &str, on: bool) -> Result<(), StoreError> {
        self.set_setting(&format!("voice.{stage}"), if on { "on" } else { "off" })
    }

    /// Chooses the microphone; `None` goes back to the system default.
    pub fn set_input_device(&mut self, device: Option<&str>) -> Result<(), StoreError> {
        self.set_or_remove(INPUT_DEVICE, device)
    }

    /// The chosen speakers or headphones, by device name; `None` means the system default.
    pub fn output_device(&self) -> Result<Option<String>, StoreError> {
        self.get_setting(OUTPUT_DEVICE)
    }

    /// Chooses the output device; `None` goes back to the system default.
    pub fn set_output_device(&mut self, device: Option<&str>) -> Result<(), StoreError> {
        self.set_or_remove(OUTPUT_DEVICE, device)
    }

    /// The microphone's mode: the push-to-talk key, if set; an open mic otherwise.
    pub fn mic_mode(&self) -> Result<MicMode, StoreError> {
        Ok(match self.get_setting(PUSH_TO_TALK)? {
            Some(key) if !key.is_empty() => MicMode::PushToTalk { key },
            _ => MicMode::Open,
        })
    }

    /// Sets the microphone's mode.
    pub fn set_mic_mode(&mut self, mode: &MicMode) -> Result<(), StoreError> {
        match mode {
            MicMode::Open => self.set_or_remove(PUSH_TO_TALK, None),
            MicMode::PushToTalk { key } => self.set_setting(PUSH_TO_TALK, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mic_mode_is_open_until_a_key_is_set_and_open_again_after() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.mic_mode().unwrap(), MicMode::Open);
        let ptt = MicMode::PushToTalk {
            key: "Ctrl+Space".into(),
        };
        store.set_mic_mode(&ptt).unwrap();
        assert_eq!(store.mic_mode().unwrap(), ptt);
        store.set_mic_mode(&MicMode::Open).unwrap();
        assert_eq!(store.mic_mode().unwrap(), MicMode::Open);
        assert_eq!(store.get_setting("push_to_talk").unwrap(), None);
    }

    #[test]
    fn settings_set_replace_and_remove() {
        let mut store = Store::open_in_memory().unwrap();
        assert_eq!(store.get_setting("theme").unwrap(), None);
        store.set_setting("theme", "dark").unwrap();
        store.set_setting("theme", "light").unwrap();
        assert_eq!(
            store.get_setting("theme").unwrap().as_deref(),
            Some("light")
        );
        store.set_setting("empty", "").unwrap();
        assert_eq!(store.get_setting("empty").unwrap().as_deref(), Some(""));
        assert!(store.remove_setting("theme").unwrap());
        assert!(!store.remove_setting("theme").unwrap());
        assert_eq!(store.get_setting("theme").unwrap(), None);
    }

    #[test]
    fn typed_helpers_round_trip_and_none_removes() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .set_server_url(Some("https://confab.example"))
            .unwrap();
        store.set_display_name(Some("Ada")).unwrap();
        store.set_input_device(Some("USB Mic")).unwrap();
        store.set_output_device(Some("Headphones")).unwrap();
        assert_eq!(
            store.server_url().unwrap().as_deref(),
            Some("https://confab.example")
        );
        assert_eq!(store.display_name().unwrap().as_deref(), Some("Ada"));
        assert_eq!(store.input_device().unwrap().as_deref(), Some("USB Mic"));
        assert_eq!(
            store.output_device().unwrap().as_deref(),
            Some("Headphones")
        );
        assert_eq!(
            store.get_setting("display_name").unwrap().as_deref(),
            Some("Ada")
        );

        store.set_input_device(None).unwrap();
        assert_eq!(store.input_device().unwrap(), None);
        assert_eq!(store.get_setting("input_device").unwrap(), None);
        // Removing what is not there is fine.
        store.set_input_device(None).unwrap();
        assert_eq!(
            store.output_device().unwrap().as_deref(),
            Some("Headphones")
        );
    }
}
