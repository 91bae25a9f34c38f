//! Scheduling for the audio threads: the worker and the device streams run ahead of ordinary
//! work where the OS lets them, so a busy machine (a build, a browser) delays them less.
//!
//! A stream thread that misses its turn by more than the sound server's buffer (20 ms here)
//! is an audible gap, and at 2-5 % of a core these threads cost others next to nothing. So,
//! like PulseAudio's own threads, each first asks for real-time scheduling (`SCHED_FIFO`, at
//! a priority just under the sound server's default of 5, so the server's threads still come
//! first), then for a raised priority in the normal policy (niceness about -12), and otherwise
//! carries on as it is. Both need privileges (root, `CAP_SYS_NICE`, or an `RLIMIT_RTPRIO` /
//! `RLIMIT_NICE` that allows them); without them nothing changes. Every thread that asks
//! blocks or sleeps between its blocks of work, so none of them can hold a core.

use thread_priority::{
    NormalThreadSchedulePolicy, RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// What the calling thread was granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioPriority {
    /// Real-time (`SCHED_FIFO`).
    Realtime,
    /// A higher priority in the normal policy.
    Raised,
    /// Nothing: the OS refused both.
    Unchanged,
}

/// The `SCHED_FIFO` priority asked for: under PulseAudio's default `realtime-priority` (5).
const REALTIME_PRIORITY: u8 = 4;
/// The cross-platform priority (0-99) asked for in the normal policy: a niceness of about -12
/// on Linux (PulseAudio's own `high-priority` is -11).
const RAISED_PRIORITY: u8 = 77;

/// Raises the calling thread's scheduling priority as far as allowed (see the module docs).
pub fn promote_audio_thread() -> AudioPriority {
    let id = thread_native_id();
    let realtime = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    if let Ok(p) = ThreadPriority::try_from(REALTIME_PRIORITY)
        && set_thread_priority_and_policy(id, p, realtime).is_ok()
    {
        return AudioPriority::Realtime;
    }
    let normal = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
    if let Ok(p) = ThreadPriority::try_from(RAISED_PRIORITY)
        && set_thread_priority_and_policy(id, p, normal).is_ok()
    {
        return AudioPriority::Raised;
    }
    AudioPriority::Unchanged
}

#[cfg(test)]
mod tests {
    use super::*;
    use thread_priority::thread_schedule_policy;

    #[test]
    fn a_promoted_thread_runs_under_the_policy_it_was_told() {
        let (got, policy) = std::thread::spawn(|| {
            let got = promote_audio_thread();
            (
                got,
                thread_schedule_policy().unwrap_or(ThreadSchedulePolicy::Normal(
                    NormalThreadSchedulePolicy::Other,
                )),
            )
        })
        .join()
        .unwrap_or_else(|_| panic!("the thread panicked"));
        match got {
            AudioPriority::Realtime => assert_eq!(
                policy,
                ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo)
            ),
            AudioPriority::Raised | AudioPriority::Unchanged => {
                assert!(
                    matches!(policy, ThreadSchedulePolicy::Normal(_)),
                    "{policy:?}"
                );
            }
        }
        // This thread (the test harness's) was not touched.
        assert!(matches!(
            thread_schedule_policy(),
            Ok(ThreadSchedulePolicy::Normal(_))
        ));
    }
}
