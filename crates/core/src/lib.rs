//! The room of a Confab space as a sans-IO state machine, in the shape of str0m: the server runs
//! one [`Room`] per space as the authority (and clients may run one to mirror state).
//!
//! Drive it with [`Room::handle`] for each [`Input`] and [`Room::handle_timeout`] when
//! [`Room::poll_timeout`] comes due, then drain [`Room::poll_output`] and act on each
//! [`Output`] in order. Time comes in only as the `now` argument.
//!
//! The room is also the stage: who is host, co-host, speaker or listener, raised hands,
//! invitations, mutes, removals and blocks, the pinned link, reactions and chat. Permissions
//! are decided here, once, for the server (the authority) and for clients alike.
//!
//! Guarantees: the same inputs at the same instants give the same outputs; a refused input
//! returns a [`RoomError`] and changes neither the room nor its output queue; there is at most
//! one host (exactly one while live, except while its seat is held for
//! [`RoomConfig::host_grace`]), at most [`RoomConfig::max_cohosts`] co-hosts and
//! [`RoomConfig::max_speakers`] speakers, and never more than
//! [`RoomConfig::max_participants`] people (the host's seat is kept for the host); audio is
//! forwarded ([`MediaChange::StartSpeaking`]) exactly for those on the mic and not muted, so
//! the SFU can enforce mutes and keep listeners silent; signed-out participants may only
//! listen; a participant receives no broadcast after its `StopReceiving`, and a removed one
//! is told so ([`Output::Send`]) just before it and never comes back to the space;
//! [`Output::Ended`] comes at most once and nothing comes after it. No input sequence panics.
//!
//! Listeners' joins and leaves are gathered for [`RoomConfig::roster_tick`] and announced in one
//! [`ServerMsg::Participants`](confab_proto::ServerMsg) broadcast (a join storm of N costs N
//! broadcasts per tick, not N²); the stage's go out at once, and any other message goes out
//! after the news gathered before it, so nobody hears of someone before hearing they joined.
//! Someone who applies every news broadcast to the roster it joined with ([`Room::info`] right
//! after its join) holds the room's roster whenever no news is gathered ([`Room::news_due`]).
//!
//! It must never do IO, read a clock, spawn threads or tasks, take locks or use randomness:
//! everything it knows arrives through its arguments.

mod chat;
mod config;
mod error;
mod input;
mod name;
mod output;
mod rate;
mod room;
mod roster;

pub use config::RoomConfig;
pub use error::RoomError;
pub use input::Input;
pub use output::{MediaChange, Output};
pub use rate::RateLimit;
pub use room::Room;
