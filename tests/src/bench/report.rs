//! Percentiles and the lines that put a figure against its target.

/// The `p` quantile (0..=1) of already sorted values by nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Sorts a copy and returns its (p50, p95).
pub fn p50_p95(values: &[f64]) -> (f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.95))
}

/// Which way a figure is good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    /// The figure must be at most the target (latency, CPU).
    AtMost,
    /// The figure must be at least the target (PESQ).
    AtLeast,
}

/// One figure against its target: `value  target  ratio  met|missed`, or why it is missing.
pub fn target_line(
    name: &str,
    value: Result<f64, String>,
    target: f64,
    goal: Goal,
    unit: &str,
) -> String {
    let sign = match goal {
        Goal::AtMost => "<=",
        Goal::AtLeast => ">=",
    };
    match value {
        Ok(v) if v.is_finite() => {
            let met = match goal {
                Goal::AtMost => v <= target,
                Goal::AtLeast => v >= target,
            };
            format!(
                "{name:<44} {v:>8.2} {unit:<4} target {sign} {target:>6.2} {unit:<4} ratio {:>5.2}  {}",
                v / target,
                if met { "met" } else { "MISSED" }
            )
        }
        Ok(v) => format!(
            "{name:<44} {v:>8} {unit:<4} target {sign} {target:>6.2} {unit:<4} NOT MEASURED"
        ),
        Err(why) => format!(
            "{name:<44} {:>8} {unit:<4} target {sign} {target:>6.2} {unit:<4} NOT MEASURED: {why}",
            "-"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert!(percentile(&[], 0.5).is_nan());
        assert_eq!(p50_p95(&[3.0, 1.0, 2.0]), (2.0, 3.0));
    }

    #[test]
    fn target_lines_say_met_or_missed_each_way() {
        let l = target_line("latency", Ok(50.0), 60.0, Goal::AtMost, "ms");
        assert!(l.contains("ratio  0.83") && l.ends_with("met"), "{l}");
        let l = target_line("latency", Ok(70.0), 60.0, Goal::AtMost, "ms");
        assert!(l.ends_with("MISSED"), "{l}");
        let l = target_line("pesq", Ok(4.2), 4.0, Goal::AtLeast, "MOS");
        assert!(l.ends_with("met"), "{l}");
        let l = target_line("pesq", Ok(3.2), 3.5, Goal::AtLeast, "MOS");
        assert!(l.ends_with("MISSED"), "{l}");
        let l = target_line("pesq", Err("no python".into()), 3.5, Goal::AtLeast, "MOS");
        assert!(l.contains("NOT MEASURED: no python"), "{l}");
    }
}
