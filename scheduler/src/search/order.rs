//! Sorting runs by order_by clauses: each run's sort values are read once, compared with missing
//! values and NaN last, and the runs put in order in place.

use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;

use drover_proto::domain::{Run, RunId};

use super::subject::{Attribute, Subject};

#[derive(Clone, Debug)]
pub(super) struct SortClause {
    pub(super) subject: Subject,
    pub(super) descending: bool,
}

/// A run's value for one clause, borrowed from the run where it can be: a search sorts by
/// reading each value once, never by copying every run's strings.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum SortValue<'run> {
    Number(f64),
    Integer(i64),
    Text(Cow<'run, str>),
}

// How a subject orders runs lives with sorting, so the subject module knows nothing of it.
impl Subject {
    pub(super) fn sort_value<'run>(&self, run: &'run Run) -> Option<SortValue<'run>> {
        match self {
            Subject::Metric(_) => self.number(run).map(SortValue::Number),
            Subject::Attribute(Attribute::StartTime) => {
                Some(SortValue::Integer(run.info.start_time_ms))
            }
            Subject::Attribute(Attribute::EndTime) => run.info.end_time_ms.map(SortValue::Integer),
            _ => self.text(run).map(SortValue::Text),
        }
    }
}

/// Sorts runs in place by the clauses, then by start_time DESC and run_id ASC.
pub(super) fn sort_runs<R: Borrow<Run>>(clauses: &[SortClause], runs: &mut [R]) {
    let order = sorted_order(clauses, runs, runs.len());
    apply_permutation(runs, &order);
}

/// The positions of `runs` in sorted order; only the first `count` need be in order.
fn sorted_order<R: Borrow<Run>>(clauses: &[SortClause], runs: &[R], count: usize) -> Vec<usize> {
    // Each run's sort values are looked up once rather than on every comparison, since
    // finding a metric or param is a linear scan of the run's data. They are borrowed from
    // the runs, so this costs a few words per run and clause, whatever the values hold.
    let values: Vec<Option<SortValue>> = runs
        .iter()
        .flat_map(|run| clauses.iter().map(|clause| clause.subject.sort_value(run.borrow())))
        .collect();
    sort_positions(
        clauses,
        &values,
        |position| {
            let info = &runs[position].borrow().info;
            (info.start_time_ms, info.run_id)
        },
        runs.len(),
        count,
    )
}

/// The positions `0..len` in sorted order, only the first `count` of them in order, given
/// each position's value for each clause (`values[position * clauses.len() + clause]`) and
/// its start time and run id for the tie-break.
pub(super) fn sort_positions(
    clauses: &[SortClause],
    values: &[Option<SortValue>],
    tie_break: impl Fn(usize) -> (i64, RunId),
    len: usize,
    count: usize,
) -> Vec<usize> {
    let width = clauses.len();
    let compare = |&left: &usize, &right: &usize| {
        clauses
            .iter()
            .enumerate()
            .map(|(index, clause)| {
                compare_sort_values(
                    values[left * width + index].as_ref(),
                    values[right * width + index].as_ref(),
                    clause.descending,
                )
            })
            .find(|ordering| ordering.is_ne())
            .unwrap_or(Ordering::Equal)
            .then_with(|| {
                let ((left_start, left_id), (right_start, right_id)) =
                    (tie_break(left), tie_break(right));
                right_start.cmp(&left_start).then_with(|| left_id.cmp(&right_id))
            })
    };
    let mut order: Vec<usize> = (0..len).collect();
    if count < order.len() {
        if count > 0 {
            order.select_nth_unstable_by(count - 1, compare);
        }
        order[..count].sort_by(compare);
    } else {
        order.sort_by(compare);
    }
    order
}

/// Orders two runs' values for one clause. Missing values go last and NaN just before them
/// whatever the direction, as MLflow's SQL store does; only present numbers and strings follow
/// the direction.
fn compare_sort_values(
    left: Option<&SortValue>,
    right: Option<&SortValue>,
    descending: bool,
) -> Ordering {
    fn rank(value: Option<&SortValue>) -> u8 {
        match value {
            Some(SortValue::Number(number)) if number.is_nan() => 1,
            Some(_) => 0,
            None => 2,
        }
    }
    let by_rank = rank(left).cmp(&rank(right));
    if by_rank.is_ne() {
        return by_rank;
    }
    let by_value = match (left, right) {
        (Some(SortValue::Number(left)), Some(SortValue::Number(right))) => {
            left.partial_cmp(right).unwrap_or(Ordering::Equal)
        }
        (Some(SortValue::Integer(left)), Some(SortValue::Integer(right))) => left.cmp(right),
        (Some(SortValue::Text(left)), Some(SortValue::Text(right))) => left.cmp(right),
        // One clause always yields one kind of value, so mixed pairs only meet as equals.
        _ => Ordering::Equal,
    };
    if descending { by_value.reverse() } else { by_value }
}

/// Rearranges `items` so that position `i` holds what was at `order[i]`, following each cycle
/// of the permutation with swaps so no run is cloned.
fn apply_permutation<T>(items: &mut [T], order: &[usize]) {
    let mut placed = vec![false; items.len()];
    for start in 0..items.len() {
        if placed[start] {
            continue;
        }
        let mut current = start;
        loop {
            placed[current] = true;
            let source = order[current];
            if source == start {
                break;
            }
            items.swap(current, source);
            current = source;
        }
    }
}

#[cfg(test)]
mod tests {
    use drover_proto::domain::{Run, RunStatus};

    use crate::search::OrderBy;
    use crate::search::test_support::{
        order_by, run, sorted_ids, with_metric, with_param, with_tag,
    };

    #[test]
    fn default_order_is_newest_first_then_run_id() {
        let runs = vec![run(3, 100), run(1, 300), run(4, 200), run(2, 300), run(5, 100)];
        assert_eq!(sorted_ids(&OrderBy::default(), runs.clone()), [1, 2, 4, 3, 5]);
        assert_eq!(sorted_ids(&order_by(&[]), runs), [1, 2, 4, 3, 5]);
    }

    #[test]
    fn metric_order_puts_missing_last_both_ways() {
        let runs = vec![
            run(1, 0),
            with_metric(run(2, 0), "rmse", 0.3),
            with_metric(run(3, 0), "rmse", 0.1),
            run(4, 0),
            with_metric(run(5, 0), "rmse", 0.2),
        ];
        assert_eq!(sorted_ids(&order_by(&["metrics.rmse"]), runs.clone()), [3, 5, 2, 1, 4]);
        assert_eq!(sorted_ids(&order_by(&["metrics.rmse ASC"]), runs.clone()), [3, 5, 2, 1, 4]);
        assert_eq!(sorted_ids(&order_by(&["metrics.rmse DESC"]), runs.clone()), [2, 5, 3, 1, 4]);
        assert_eq!(sorted_ids(&order_by(&["metric.rmse desc"]), runs), [2, 5, 3, 1, 4]);
    }

    #[test]
    fn metric_order_is_numeric_not_lexical() {
        let runs = vec![
            with_metric(run(1, 0), "m", 10.0),
            with_metric(run(2, 0), "m", 9.0),
            with_metric(run(3, 0), "m", -100.0),
        ];
        assert_eq!(sorted_ids(&order_by(&["metrics.m"]), runs), [3, 2, 1]);
    }

    #[test]
    fn nan_sorts_after_numbers_and_before_missing() {
        let runs = vec![
            run(1, 0),
            with_metric(run(2, 0), "loss", f64::NAN),
            with_metric(run(3, 0), "loss", 5.0),
            with_metric(run(4, 0), "loss", f64::INFINITY),
            with_metric(run(5, 0), "loss", -1.0),
        ];
        assert_eq!(sorted_ids(&order_by(&["metrics.loss ASC"]), runs.clone()), [5, 3, 4, 2, 1]);
        assert_eq!(sorted_ids(&order_by(&["metrics.loss DESC"]), runs), [4, 3, 5, 2, 1]);
    }

    #[test]
    fn params_and_tags_sort_as_strings() {
        let runs = vec![
            with_param(run(1, 0), "lr", "0.1"),
            with_param(run(2, 0), "lr", "0.01"),
            run(3, 0),
            with_param(run(4, 0), "lr", "1"),
        ];
        assert_eq!(sorted_ids(&order_by(&["params.lr"]), runs.clone()), [2, 1, 4, 3]);
        assert_eq!(sorted_ids(&order_by(&["params.lr DESC"]), runs), [4, 1, 2, 3]);
        let tagged =
            vec![with_tag(run(1, 0), "team", "b"), run(2, 0), with_tag(run(3, 0), "team", "a")];
        assert_eq!(sorted_ids(&order_by(&["tags.team"]), tagged.clone()), [3, 1, 2]);
        assert_eq!(sorted_ids(&order_by(&["tags.team DESC"]), tagged), [1, 3, 2]);
    }

    #[test]
    fn backticked_and_dotted_sort_keys() {
        let runs =
            vec![with_param(run(1, 0), "my param", "b"), with_param(run(2, 0), "my param", "a")];
        assert_eq!(sorted_ids(&order_by(&["params.`my param`"]), runs.clone()), [2, 1]);
        assert_eq!(sorted_ids(&order_by(&["params.\"my param\" DESC"]), runs), [1, 2]);
        let tagged = vec![
            with_tag(run(1, 0), "mlflow.runName", "z"),
            with_tag(run(2, 0), "mlflow.runName", "y"),
        ];
        assert_eq!(sorted_ids(&order_by(&["tags.mlflow.runName"]), tagged), [2, 1]);
    }

    #[test]
    fn attribute_orders() {
        let mut running = run(1, 300);
        running.info.end_time_ms = None;
        running.info.status = RunStatus::Running;
        running.info.run_name = "beta".to_string();
        running.info.user_id = "carol".to_string();
        let mut failed = run(2, 100);
        failed.info.status = RunStatus::Failed;
        failed.info.run_name = "alpha".to_string();
        failed.info.user_id = "bob".to_string();
        let mut finished = run(3, 200);
        finished.info.run_name = "gamma".to_string();
        let runs = vec![running, failed, finished];

        assert_eq!(sorted_ids(&order_by(&["attributes.start_time"]), runs.clone()), [2, 3, 1]);
        assert_eq!(sorted_ids(&order_by(&["attributes.start_time DESC"]), runs.clone()), [1, 3, 2]);
        assert_eq!(sorted_ids(&order_by(&["attributes.end_time"]), runs.clone()), [2, 3, 1]);
        assert_eq!(sorted_ids(&order_by(&["attributes.end_time DESC"]), runs.clone()), [3, 2, 1]);
        assert_eq!(sorted_ids(&order_by(&["attributes.run_name"]), runs.clone()), [2, 1, 3]);
        assert_eq!(sorted_ids(&order_by(&["attr.runName DESC"]), runs.clone()), [3, 1, 2]);
        assert_eq!(sorted_ids(&order_by(&["attributes.status"]), runs.clone()), [2, 3, 1]);
        assert_eq!(sorted_ids(&order_by(&["attributes.user_id"]), runs.clone()), [3, 2, 1]);
        assert_eq!(sorted_ids(&order_by(&["attributes.run_id DESC"]), runs.clone()), [3, 2, 1]);
        assert_eq!(sorted_ids(&order_by(&["run.artifact_uri"]), runs), [1, 2, 3]);
    }

    #[test]
    fn later_clauses_break_ties_then_the_default_order() {
        let runs = vec![
            with_param(with_metric(run(1, 10), "acc", 0.9), "opt", "sgd"),
            with_param(with_metric(run(2, 20), "acc", 0.9), "opt", "adam"),
            with_param(with_metric(run(3, 30), "acc", 0.8), "opt", "adam"),
            with_param(with_metric(run(4, 30), "acc", 0.9), "opt", "sgd"),
            with_param(with_metric(run(5, 30), "acc", 0.9), "opt", "sgd"),
        ];
        // acc DESC, then opt ASC; among equal runs, newest first, then lowest run id.
        let order = order_by(&["metrics.acc DESC", "params.opt ASC"]);
        assert_eq!(sorted_ids(&order, runs.clone()), [2, 4, 5, 1, 3]);
        assert_eq!(sorted_ids(&order_by(&["metrics.acc"]), runs), [3, 4, 5, 2, 1]);
    }

    #[test]
    fn sorting_handles_larger_shuffles_and_empty_input() {
        let mut empty: Vec<Run> = Vec::new();
        order_by(&["metrics.x"]).sort(&mut empty);
        assert!(empty.is_empty());

        // Start times chosen so the default order is a non-trivial permutation with cycles.
        let starts = [5, 9, 1, 7, 3, 8, 2, 6, 4, 0];
        let runs: Vec<Run> =
            starts.iter().enumerate().map(|(index, &start)| run(index as u8, start)).collect();
        let mut by_start: Vec<(i64, u8)> =
            starts.iter().enumerate().map(|(index, &start)| (-start, index as u8)).collect();
        by_start.sort();
        let expected: Vec<u8> = by_start.into_iter().map(|(_, id)| id).collect();
        let sorted = sorted_ids(&OrderBy::default(), runs.clone());
        assert_eq!(sorted, expected);
        // Every run survives the in-place permutation intact.
        let mut resorted = runs.clone();
        OrderBy::default().sort(&mut resorted);
        for moved in &resorted {
            assert!(runs.contains(moved));
        }
    }
}
