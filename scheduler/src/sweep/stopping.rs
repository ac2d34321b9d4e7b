//! Early stopping on a metric's live curve.
//!
//! - Median: a run whose best value up to its latest step s is worse than the median of the
//!   finished runs' best values up to s is stopped (from `min_step` on, once
//!   [`MEDIAN_MIN_FINISHED`] runs have finished).
//! - ASHA: rungs at min_step·eta^k. When a run reaches a rung its best value so far is
//!   recorded there; it goes on only while it is in the top 1/eta of the values recorded at
//!   that rung (always at least the best one), asynchronously, as the runs arrive.

use drover_project::sweep::Goal;

/// Finished runs the median rule waits for before it stops anything.
pub const MEDIAN_MIN_FINISHED: usize = 3;

/// The best value of `curve` (points sorted by step) at or before `step`.
pub fn best_until(curve: &[(i64, f64)], step: i64, goal: Goal) -> Option<f64> {
    curve
        .iter()
        .take_while(|(at, _)| *at <= step)
        .map(|(_, value)| *value)
        .filter(|value| !value.is_nan())
        .reduce(|best, value| if goal.better(value, best) { value } else { best })
}

/// Whether the median rule stops a run whose best so far is `best`, given the finished runs'
/// best values at the same step.
pub fn median_stops(best: f64, finished: &[f64], goal: Goal) -> bool {
    if finished.len() < MEDIAN_MIN_FINISHED {
        return false;
    }
    let mut sorted = finished.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    };
    goal.better(median, best)
}

/// The step of ASHA rung `rung`.
pub fn rung_step(min_step: i64, eta: u32, rung: u32) -> i64 {
    let factor = i64::from(eta).checked_pow(rung).unwrap_or(i64::MAX);
    min_step.saturating_mul(factor)
}

/// Whether a run whose value at a rung is `value` goes on, given every value recorded at that
/// rung (its own included).
pub fn asha_promotes(value: f64, recorded: &[f64], eta: u32, goal: Goal) -> bool {
    let mut sorted: Vec<f64> = recorded.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(|a, b| match goal {
        Goal::Minimize => a.total_cmp(b),
        Goal::Maximize => b.total_cmp(a),
    });
    let keep = (sorted.len() / eta as usize).max(1);
    match sorted.get(keep - 1) {
        Some(threshold) => !goal.better(*threshold, value),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_until_follows_the_goal() {
        let curve = [(1, 5.0), (2, 3.0), (3, 4.0), (5, 1.0)];
        assert_eq!(best_until(&curve, 3, Goal::Minimize), Some(3.0));
        assert_eq!(best_until(&curve, 3, Goal::Maximize), Some(5.0));
        assert_eq!(best_until(&curve, 0, Goal::Minimize), None);
        assert_eq!(best_until(&curve, 9, Goal::Minimize), Some(1.0));
    }

    #[test]
    fn median_waits_for_finished_runs_then_stops_the_worse_half() {
        assert!(!median_stops(10.0, &[1.0, 2.0], Goal::Minimize));
        assert!(median_stops(10.0, &[1.0, 2.0, 3.0], Goal::Minimize));
        assert!(!median_stops(1.5, &[1.0, 2.0, 3.0], Goal::Minimize));
        assert!(median_stops(1.5, &[1.0, 2.0, 3.0], Goal::Maximize));
    }

    #[test]
    fn asha_keeps_the_top_fraction() {
        assert_eq!(rung_step(2, 3, 0), 2);
        assert_eq!(rung_step(2, 3, 2), 18);
        assert!(asha_promotes(5.0, &[5.0], 3, Goal::Minimize), "the first at a rung goes on");
        assert!(!asha_promotes(5.0, &[1.0, 5.0], 3, Goal::Minimize));
        assert!(asha_promotes(1.0, &[1.0, 5.0], 3, Goal::Minimize));
        let recorded = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert!(asha_promotes(2.0, &recorded, 3, Goal::Minimize));
        assert!(!asha_promotes(3.0, &recorded, 3, Goal::Minimize));
        assert!(asha_promotes(5.0, &recorded, 3, Goal::Maximize));
    }
}
