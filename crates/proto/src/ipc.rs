//! What crosses the desktop app's IPC boundary (Tauri commands and events). The web UI's
//! TypeScript types are generated from these, so the UI never guesses a shape.
//!
//! IPC types use camelCase field names (the UI's convention); the nested wire types
//! ([`SpaceSummary`], [`SpaceInfo`], ...) keep their wire names.

use serde::{Deserialize, Serialize};

use crate::{
    ChatId, ChatMessage, EndReason, ErrorCode, ParticipantId, ParticipantInfo, Role, SpaceId,
    SpaceInfo, SpaceSummary,
};

/// Everything the UI needs to draw itself from scratch (on start or after a reload).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct AppState {
    /// The profile this instance runs as (`confab --profile NAME`).
    pub profile: String,
    /// The server in use.
    pub server_url: String,
    /// Whether that server is the one embedded in this app.
    pub embedded_server: bool,
    /// Whether signaling is connected right now.
    pub connected: bool,
    pub display_name: String,
    /// The account this instance is signed in with on the server, if any.
    pub account: Option<Account>,
    /// Live spaces, busiest first.
    pub live: Vec<SpaceSummary>,
    /// Followed hosts with what is known of them, even offline.
    pub followed: Vec<FollowedHost>,
    /// Scheduled spaces of followed hosts and of this account, soonest first.
    pub upcoming: Vec<Upcoming>,
    /// Accounts this user blocked for themself: their audio, reactions and chat are hidden.
    pub blocked: Vec<String>,
    /// Avatars known so far of accounts met in spaces.
    pub avatars: Vec<UserAvatar>,
    /// The space this instance is in, if any.
    pub current: Option<CurrentSpace>,
    /// The push-to-talk key (as in [`MicMode::PushToTalk`]) when the microphone opens only
    /// while it is held; `None` for an open mic.
    pub push_to_talk: Option<String>,
}

/// The signed-in account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    /// The avatar as a `data:` URL, if one is set.
    pub avatar: Option<String>,
}

/// An account's avatar, for drawing it next to its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct UserAvatar {
    pub handle: String,
    /// A `data:` URL of a small PNG or JPEG.
    pub src: String,
}

/// The `data:` URL of an avatar given in standard base64, or `None` when it is neither a PNG
/// nor a JPEG (the server accepts only those; anything else is not drawn).
pub fn avatar_src(base64: &str) -> Option<String> {
    // The first bytes in base64: PNG `\x89PNG` is `iVBORw`, JPEG `\xFF\xD8\xFF` is `/9j/`.
    let mime = if base64.starts_with("iVBORw") {
        "image/png"
    } else if base64.starts_with("/9j/") {
        "image/jpeg"
    } else {
        return None;
    };
    if !base64
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return None;
    }
    Some(format!("data:{mime};base64,{base64}"))
}

/// A scheduled space as Home lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Upcoming {
    /// The schedule's id, which the live space takes when its host starts it.
    pub id: String,
    /// The host's handle.
    pub host: String,
    pub title: String,
    pub topics: Vec<String>,
    /// Seconds since the Unix epoch.
    pub starts_at: i64,
    /// Whether this account asked to be reminded when it starts.
    pub reminded: bool,
    /// Whether this account hosts it (and so may start or cancel it).
    pub mine: bool,
}

/// A followed host as the UI shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct FollowedHost {
    /// The host as followed: `@handle` for a host with an account, else a display name.
    pub host: String,
    /// The host's live space right now, if any.
    pub live_space: Option<SpaceSummary>,
    /// The title of the host's most recent space seen (live or ended).
    pub last_title: Option<String>,
    /// When the host was last seen live (seconds since the Unix epoch).
    pub last_live_at: Option<i64>,
}

/// The space this instance is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct CurrentSpace {
    pub space: SpaceInfo,
    /// This instance's participant in the space.
    pub you: ParticipantId,
    pub role: Role,
    /// Whether our microphone is muted (only meaningful for a speaker).
    pub muted: bool,
    /// Whether media (audio) is connected.
    pub media_connected: bool,
    /// Who invited us up to speak, while the invitation stands.
    pub invited_by: Option<ParticipantId>,
    /// The chat so far (the most recent [`CHAT_KEPT`] messages), oldest first, without the
    /// messages of accounts we blocked.
    pub chat: Vec<ChatMessage>,
}

/// How many chat messages of the current space the app keeps.
pub const CHAT_KEPT: usize = 200;

/// Something the UI should redraw or show. Sent as the Tauri event `app-event`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum AppEvent {
    /// The whole state changed in a way the other events do not describe.
    State { state: Box<AppState> },
    /// The live directory changed.
    Directory { live: Vec<SpaceSummary> },
    /// The followed hosts or what is known of them changed.
    Followed { followed: Vec<FollowedHost> },
    /// We are in a space now (or its participants changed).
    Current { current: Option<CurrentSpace> },
    /// The space we were in ended.
    Ended { space: SpaceId, reason: EndReason },
    /// Signaling connected or lost.
    Connection {
        connected: bool,
        message: Option<String>,
    },
    /// The microphone level, about 20 times a second while a level is wanted.
    InputLevel { rms: f32, peak: f32 },
    /// The microphone (`input: true`) or speaker we used is gone (unplugged); audio goes on
    /// through the system default, and the UI says so.
    DeviceFallback { input: bool, device: String },
    /// A followed host went live: the shell shows a system notification.
    FollowedLive { space: SpaceSummary },
    /// Someone joined or left (for a toast; `Current` carries the list).
    Participant {
        participant: ParticipantInfo,
        joined: bool,
    },
    /// Who speaks in a receive slot changed.
    Speaking {
        slot: u8,
        speaker: Option<ParticipantId>,
    },
    /// How loud each speaker we hear is, about 20 times a second while someone is heard
    /// (0 ..= 1, RMS of the last 50 ms); drives the speaking rings.
    Levels { levels: Vec<SpeakerLevel> },
    /// Someone in our space reacted.
    Reaction {
        participant: ParticipantId,
        emoji: String,
    },
    /// The server refused something we asked of the stage (raise a hand, mute someone...).
    Refused { code: ErrorCode, message: String },
    /// We were removed from the space (and blocked from the host's spaces if `blocked`).
    Removed { blocked: bool },
    /// The account changed (signed in, created, or signed out).
    Account { account: Option<Account> },
    /// The upcoming spaces or our reminders changed.
    Upcoming { upcoming: Vec<Upcoming> },
    /// Our personal block list changed.
    Blocked { blocked: Vec<String> },
    /// Avatars of accounts in our space, as they are fetched.
    Avatars { avatars: Vec<UserAvatar> },
    /// Our own volumes for people in the space (absent means 1).
    Volumes { volumes: Vec<SpeakerVolume> },
    /// A space we asked to be reminded of started: the shell shows a system notification.
    Reminder { space: SpaceSummary },
    /// The microphone's mode changed: the push-to-talk key, or `None` for an open mic.
    MicMode { key: Option<String> },
    /// Network and playout figures of each speaker we hear, once a second while we are in a
    /// space and diagnostics are on.
    Diagnostics { speakers: Vec<SpeakerDiagnostics> },
}

/// How one speaker reaches us, in [`AppEvent::Diagnostics`]. A figure not known yet is `None`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct SpeakerDiagnostics {
    pub participant: ParticipantId,
    /// Round-trip time to the server in milliseconds, from the ICE consent checks. The SFU
    /// ends our media path, so it is the same for every speaker: their own leg is not seen here.
    pub rtt_ms: Option<f32>,
    /// Interarrival jitter of this speaker's packets in milliseconds (RFC 3550, our RTCP
    /// receiver report).
    pub jitter_ms: Option<f32>,
    /// Share of this speaker's packets the network lost since the last figures (0 ..= 1).
    pub loss: Option<f32>,
    /// How long after the fastest transit this speaker's audio plays now (the jitter buffer's
    /// delay), in milliseconds.
    pub buffer_ms: f32,
    /// The delay the jitter buffer aims for, in milliseconds.
    pub target_ms: f32,
    /// Since this speaker's stream started: frames rebuilt from FEC, frames concealed.
    pub fec_recovered: u32,
    pub concealed: u32,
}

/// One speaker's level in [`AppEvent::Levels`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct SpeakerLevel {
    pub participant: ParticipantId,
    pub rms: f32,
}

/// How loud we hear one participant (0 mutes them for us alone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct SpeakerVolume {
    pub participant: ParticipantId,
    pub volume: f32,
}

/// Something a participant asks of the stage. The server decides whether the role allows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StageAction {
    RaiseHand,
    LowerHand,
    ApproveHand { participant: ParticipantId },
    DismissHand { participant: ParticipantId },
    Invite { participant: ParticipantId },
    AcceptInvite,
    DeclineInvite,
    StepDown,
    Mute { participant: ParticipantId },
    MuteAll,
    Remove { participant: ParticipantId },
    Block { participant: ParticipantId },
    MakeCohost { participant: ParticipantId },
    UnmakeCohost { participant: ParticipantId },
    Pin { link: Option<String> },
    React { emoji: String },
    Chat { text: String },
    DeleteChat { id: ChatId },
}

impl StageAction {
    /// The signaling message that asks for it.
    pub fn to_msg(&self) -> crate::ClientMsg {
        use crate::ClientMsg as M;
        match self.clone() {
            StageAction::RaiseHand => M::RaiseHand,
            StageAction::LowerHand => M::LowerHand,
            StageAction::ApproveHand { participant } => M::ApproveHand { participant },
            StageAction::DismissHand { participant } => M::DismissHand { participant },
            StageAction::Invite { participant } => M::Invite { participant },
            StageAction::AcceptInvite => M::AcceptInvite,
            StageAction::DeclineInvite => M::DeclineInvite,
            StageAction::StepDown => M::StepDown,
            StageAction::Mute { participant } => M::Mute { participant },
            StageAction::MuteAll => M::MuteAll,
            StageAction::Remove { participant } => M::Remove { participant },
            StageAction::Block { participant } => M::Block { participant },
            StageAction::MakeCohost { participant } => M::MakeCohost { participant },
            StageAction::UnmakeCohost { participant } => M::UnmakeCohost { participant },
            StageAction::Pin { link } => M::Pin { link },
            StageAction::React { emoji } => M::React { emoji },
            StageAction::Chat { text } => M::Chat { text },
            StageAction::DeleteChat { id } => M::DeleteChat { id },
        }
    }
}

/// What a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub enum ReportKind {
    /// A user, by handle.
    User,
    /// A space, by id.
    Space,
}

/// User settings, as the settings page edits them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Another server to use; `None` means the embedded one.
    pub server_url: Option<String>,
    pub display_name: String,
    /// Microphone by id; `None` follows the system default.
    pub input_device: Option<String>,
    /// Speaker by id; `None` follows the system default.
    pub output_device: Option<String>,
    /// The microphone's voice processing, each switchable (all on by default).
    pub voice: VoiceSettings,
    /// Open mic, or push-to-talk on a global key.
    pub mic_mode: MicMode,
}

/// When a speaker's microphone is open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum MicMode {
    /// Whenever we are on the mic and have not muted ourself.
    #[default]
    Open,
    /// Only while `key` is held, even when the window is not focused. `key` is an accelerator:
    /// optional modifiers and one key joined by `+`, such as `F8` or `Ctrl+Space`.
    PushToTalk { key: String },
}

/// The push-to-talk key a new profile gets: a key no common application uses on its own.
pub const DEFAULT_TALK_KEY: &str = "F8";

/// Which stages of the microphone's voice processing run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct VoiceSettings {
    pub noise_suppression: bool,
    pub echo_cancellation: bool,
    pub auto_gain: bool,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            noise_suppression: true,
            echo_cancellation: true,
            auto_gain: true,
        }
    }
}

/// One audio device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    pub description: String,
}

/// The devices the settings page offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    pub inputs: Vec<Device>,
    pub outputs: Vec<Device>,
}

/// Every failed IPC command returns this: a stable code for the UI and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
#[error("{message}")]
pub struct IpcError {
    pub code: IpcErrorCode,
    pub message: String,
}

/// Codes of [`IpcError`]: the server's codes plus the app's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "kind", content = "code", rename_all = "camelCase")]
#[non_exhaustive]
pub enum IpcErrorCode {
    /// The server refused.
    Server(ErrorCode),
    /// The server cannot be reached.
    Offline,
    /// An audio device could not be opened.
    Device,
    /// The input is out of bounds.
    InvalidInput,
    /// The local database failed.
    Storage,
    /// Anything else; the message says what.
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_png_and_jpeg_in_plain_base64_become_images() {
        assert_eq!(
            avatar_src("iVBORw0KGgo=").as_deref(),
            Some("data:image/png;base64,iVBORw0KGgo=")
        );
        assert!(
            avatar_src("/9j/4AAQ")
                .unwrap()
                .starts_with("data:image/jpeg")
        );
        assert_eq!(avatar_src("R0lGODlh"), None, "GIF");
        assert_eq!(avatar_src("iVBORw\" onerror=\"x"), None, "not base64");
    }
}
