//! CPU time of a process and its threads from `/proc`, as a share of one core.

use std::time::Duration;

/// `utime + stime` (clock ticks) from the text of a `/proc/PID/stat` or
/// `/proc/PID/task/TID/stat` file. The command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) ... utime(14) stime(15); `rest` starts at field 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The command name in a stat line (between the first `(` and the last `)`).
pub fn stat_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// The process's CPU ticks so far (all its threads).
pub fn process_ticks(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat_ticks(&stat).ok_or_else(|| std::io::Error::other("unreadable /proc stat"))
}

/// Each live thread of the process: (thread id, name, CPU ticks so far).
pub fn thread_ticks(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let tid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        Some((tid, stat_name(&stat)?.to_owned(), stat_ticks(&stat)?))
    })
    .collect()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, the Linux default, if that fails).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// `ticks` of CPU over `wall` as a percentage of one core.
pub fn percent_of_core(ticks: u64, hz: u64, wall: Duration) -> f64 {
    if wall.is_zero() || hz == 0 {
        return f64::NAN;
    }
    ticks as f64 / hz as f64 / wall.as_secs_f64() * 100.0
}

/// CPU per thread name between two [`thread_ticks`] snapshots (threads matched by id, those
/// that died in between left out), as `(name, ticks)`, busiest first.
pub fn threads_delta(
    before: &[(u32, String, u64)],
    after: &[(u32, String, u64)],
) -> Vec<(String, u64)> {
    let mut by_name: Vec<(String, u64)> = Vec::new();
    for (tid, name, t1) in after {
        let t0 = before
            .iter()
            .find(|(b, _, _)| b == tid)
            .map_or(0, |(_, _, t)| *t);
        let d = t1.saturating_sub(t0);
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum += d,
            None => by_name.push((name.clone(), d)),
        }
    }
    by_name.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_name_survive_odd_command_names() {
        let stat = "4242 (tokio (w) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0";
        assert_eq!(stat_ticks(stat), Some(12));
        assert_eq!(stat_name(stat), Some("tokio (w) 1"));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_ticks_and_threads() {
        let pid = std::process::id();
        assert!(process_ticks(pid).is_ok());
        assert!(!thread_ticks(pid).is_empty());
    }

    #[test]
    fn percentages_and_thread_deltas() {
        assert!((percent_of_core(50, 100, Duration::from_secs(10)) - 5.0).abs() < 1e-9);
        let before = vec![(1, "a".to_owned(), 10), (2, "b".to_owned(), 5)];
        let after = vec![
            (1, "a".to_owned(), 30),
            (2, "b".to_owned(), 6),
            (3, "b".to_owned(), 4),
        ];
        assert_eq!(
            threads_delta(&before, &after),
            vec![("a".to_owned(), 20), ("b".to_owned(), 5)]
        );
    }
}
