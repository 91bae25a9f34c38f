//! Test support shared by Confab's crates: a private PulseAudio daemon with virtual devices
//! (`pulse`), a private desktop with a notification daemon and WebDriver (`desktop`),
//! speech-like test signals and the measures that say whether audio arrived intact (`signal`),
//! and a seeded network that delays, reorders, stalls and loses packets (`net`). Only tests and
//! benchmarks depend on it; it never ships in a product binary.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support fails loudly: a broken harness must stop the test, not hide"
)]

pub mod desktop;
pub mod net;
pub mod pulse;
pub mod signal;
