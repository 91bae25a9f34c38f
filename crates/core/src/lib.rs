//! The room of a Confab space as a sans-IO state machine, in the shape of str0m: the server runs
//! one [`Room`] per space as the authority (and clients may run one to mirror state).
//!
//! Drive it with [`Room::handle`] for each [`Input`] and [`Room::handle_timeout`] when
//! [`Room::poll_timeout`] comes due, then drain [`Room::poll_output`] and act on each
//! [`Output`] in order. Time comes in only as the `now` argument.
//!
//! Guarantees: the same inputs at the same instants give the same outputs; a refused input
//! returns a [`RoomError`] and changes neither the room nor its output queue; there is at most
//! one host and never more than [`RoomConfig::max_participants`] people (the host's seat is
//! kept for the host); a participant receives no broadcast after its `StopReceiving`;
//! [`Output::Ended`] comes at most once and nothing comes after it. No input sequence panics.
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
