//! Property tests of the search grammar, the parser every search request feeds: arbitrary
//! filters and order_by clauses never panic and are refused or parsed within the limits;
//! filters built from clauses parse and select exactly the runs the clauses describe; LIKE
//! agrees with the obvious backtracking matcher; a run table, changed run by run, selects and
//! orders exactly as the filter and the sort do over the runs themselves. `tests/properties.sh` runs them longer.

use std::sync::Arc;

use drover_proto::domain::{
    ExperimentId, LifecycleStage, Metric, Param, Run, RunData, RunId, RunInfo, RunStatus, Tag,
    ViewType,
};
use drover_testkit::{bounded, config};
use proptest::prelude::*;

use super::like::LikePattern;
use super::{ExperimentFilter, Filter, OrderBy, RunTable};

/// Text made of the grammar's own pieces, so that arbitrary input reaches deep into it.
fn grammar_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("metrics.".to_string()),
        Just("params.".to_string()),
        Just("tags.".to_string()),
        Just("attributes.".to_string()),
        Just("run_name".to_string()),
        Just("start_time".to_string()),
        Just("`k e y`".to_string()),
        Just("\"key\"".to_string()),
        Just("'va''lue'".to_string()),
        Just("'%_\\'".to_string()),
        Just(" AND ".to_string()),
        Just(" and ".to_string()),
        Just(" LIKE ".to_string()),
        Just(" ILIKE ".to_string()),
        Just(" NOT IN ".to_string()),
        Just(" IN ('a', 'b')".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just(" = ".to_string()),
        Just("!=".to_string()),
        Just("<=".to_string()),
        Just(">".to_string()),
        Just("-1e-3".to_string()),
        Just("1e999".to_string()),
        Just("NaN".to_string()),
        Just(" DESC".to_string()),
        Just(" asc".to_string()),
        any::<char>().prop_map(String::from),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn run(index: u8, metric: Option<f64>, param: Option<u8>, name: &str) -> Run {
    let mut bytes = [0u8; 16];
    bytes[15] = index;
    Run {
        info: RunInfo {
            run_id: RunId(bytes),
            experiment_id: ExperimentId(0),
            run_name: name.to_string(),
            user_id: "user".to_string(),
            status: RunStatus::Finished,
            start_time_ms: i64::from(index % 4),
            end_time_ms: None,
            lifecycle_stage: LifecycleStage::Active,
            artifact_uri: String::new(),
        },
        data: RunData {
            params: param
                .map(|p| Param { key: "p".into(), value: p.to_string() })
                .into_iter()
                .collect(),
            tags: vec![Tag::new("t", name)],
            latest_metrics: metric
                .map(|value| Metric { key: "m".into(), value, timestamp_ms: 0, step: 0 })
                .into_iter()
                .collect(),
        },
    }
}

/// One clause as text, and what it says of a run.
#[derive(Clone, Debug)]
enum Clause {
    MetricBelow(i8),
    ParamIs(u8),
    NameLike(String),
}

impl Clause {
    fn text(&self) -> String {
        match self {
            Clause::MetricBelow(bound) => format!("metrics.m < {bound}"),
            Clause::ParamIs(value) => format!("params.p = '{value}'"),
            Clause::NameLike(pattern) => format!("attributes.run_name LIKE '{pattern}'"),
        }
    }

    fn holds(&self, run: &Run) -> bool {
        match self {
            Clause::MetricBelow(bound) => {
                run.data.latest_metrics.first().is_some_and(|m| m.value < f64::from(*bound))
            }
            Clause::ParamIs(value) => {
                run.data.params.first().is_some_and(|p| p.value == value.to_string())
            }
            Clause::NameLike(pattern) => like_reference(pattern, &run.info.run_name),
        }
    }
}

/// LIKE by backtracking over `%`, `_` and literals (the patterns here have no backslash).
fn like_reference(pattern: &str, text: &str) -> bool {
    fn go(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('%', rest)) => (0..=text.len()).any(|skip| go(rest, &text[skip..])),
            Some((want, rest)) => text
                .split_first()
                .is_some_and(|(got, tail)| (*want == '_' || want == got) && go(rest, tail)),
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    go(&pattern, &text)
}

fn clause() -> impl Strategy<Value = Clause> {
    prop_oneof![
        (-3i8..4).prop_map(Clause::MetricBelow),
        (0u8..4).prop_map(Clause::ParamIs),
        "[ab%_]{0,6}".prop_map(Clause::NameLike),
    ]
}

/// Runs for the table: up to 12 (so updates meet runs the table has), some deleted, some
/// with a NaN metric.
fn table_runs() -> impl Strategy<Value = Vec<Run>> {
    let metric = prop_oneof![Just(None), Just(Some(f64::NAN)), (-3.0f64..3.0).prop_map(Some)];
    proptest::collection::vec(
        (metric, proptest::option::of(0u8..4), "[ab]{0,3}", any::<bool>(), any::<bool>()),
        0..12,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(index, (metric, param, name, deleted, ended))| {
                let mut run = run(index as u8, metric, param, &name);
                if deleted {
                    run.info.lifecycle_stage = LifecycleStage::Deleted;
                }
                run.info.end_time_ms = ended.then_some(i64::from(index as u8 % 3));
                run
            })
            .collect()
    })
}

fn table_clause() -> impl Strategy<Value = String> {
    prop_oneof![
        clause().prop_map(|clause| clause.text()),
        (0i8..4).prop_map(|bound| format!("attributes.start_time >= {bound}")),
        (0i8..3).prop_map(|bound| format!("attributes.end_time < {bound}")),
        "[ab%_]{0,4}".prop_map(|pattern| format!("tags.t ILIKE '{pattern}'")),
        Just(format!("attributes.run_id IN ('{:032x}', '{:032x}')", 1, 2)),
        Just(format!("attributes.run_id NOT IN ('{:032x}')", 3)),
        Just("tags.t = 'ab'".to_string()),
        Just("params.p != '1'".to_string()),
        Just("metrics.m != 0".to_string()),
        Just("metrics.m >= -1".to_string()),
    ]
}

fn sort_clause() -> impl Strategy<Value = String> {
    let subject = prop_oneof![
        Just("metrics.m"),
        Just("params.p"),
        Just("tags.t"),
        Just("attributes.run_name"),
        Just("attributes.start_time"),
        Just("attributes.end_time"),
    ];
    (subject, prop_oneof![Just(""), Just(" ASC"), Just(" DESC")])
        .prop_map(|(subject, direction)| format!("{subject}{direction}"))
}

fn runs() -> impl Strategy<Value = Vec<Run>> {
    proptest::collection::vec(
        (proptest::option::of(-3.0f64..3.0), proptest::option::of(0u8..4), "[ab]{0,6}"),
        0..20,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(index, (metric, param, name))| run(index as u8, metric, param, &name))
            .collect()
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_filters_never_panic(text in prop_oneof![grammar_soup(), ".{0,200}"]) {
        bounded(|| {
            let _ = Filter::parse(&text);
            let _ = ExperimentFilter::parse(&text);
        });
    }

    #[test]
    fn arbitrary_order_by_never_panics(
        clauses in proptest::collection::vec(prop_oneof![grammar_soup(), ".{0,40}"], 0..12),
    ) {
        bounded(|| {
            if let Ok(order_by) = OrderBy::parse(&clauses) {
                let mut runs: Vec<Run> =
                    (0..5).map(|i| run(i, Some(f64::from(i)), Some(i), "r")).collect();
                order_by.sort(&mut runs);
            }
        });
    }

    #[test]
    fn built_filters_select_exactly_what_their_clauses_say(
        clauses in proptest::collection::vec(clause(), 1..5),
        runs in runs(),
    ) {
        let text = clauses.iter().map(Clause::text).collect::<Vec<_>>().join(" AND ");
        let filter = Filter::parse(&text).unwrap();
        for run in &runs {
            let expected = clauses.iter().all(|clause| clause.holds(run));
            prop_assert_eq!(filter.matches(run), expected, "{} on {:?}", text, run.info.run_name);
        }
    }

    #[test]
    fn sorting_orders_and_keeps_every_run(runs in runs(), descending in any::<bool>()) {
        let direction = if descending { "DESC" } else { "ASC" };
        let order_by = OrderBy::parse(&[format!("metrics.m {direction}")]).unwrap();
        let mut sorted = runs.clone();
        order_by.sort(&mut sorted);
        let mut before: Vec<RunId> = runs.iter().map(|r| r.info.run_id).collect();
        let mut after: Vec<RunId> = sorted.iter().map(|r| r.info.run_id).collect();
        before.sort();
        after.sort();
        prop_assert_eq!(before, after);
        let values: Vec<Option<f64>> =
            sorted.iter().map(|r| r.data.latest_metrics.first().map(|m| m.value)).collect();
        let present = values.iter().take_while(|value| value.is_some()).count();
        prop_assert!(values[present..].iter().all(Option::is_none), "missing values come last");
        for pair in values[..present].windows(2) {
            let (a, b) = (pair[0].unwrap(), pair[1].unwrap());
            prop_assert!(if descending { a >= b } else { a <= b }, "{:?}", values);
        }
    }

    #[test]
    fn a_table_selects_and_orders_as_the_runs_do(
        initial in table_runs(),
        updates in table_runs(),
        clauses in proptest::collection::vec(table_clause(), 0..4),
        order in proptest::collection::vec(sort_clause(), 0..3),
        count in 0usize..24,
    ) {
        let text = clauses.join(" AND ");
        let filter = Filter::parse(&text).unwrap();
        let order_by = OrderBy::parse(&order).unwrap();
        // The table sees the first runs, then every update as a change to a run it has or a
        // new one; the runs themselves are the updates laid over the first ones.
        let mut table = RunTable::new(initial.iter().cloned().map(Arc::new).collect());
        for run in &updates {
            table.upsert(Arc::new(run.clone()));
        }
        let mut runs: Vec<Run> = initial
            .into_iter()
            .filter(|run| updates.iter().all(|update| update.info.run_id != run.info.run_id))
            .chain(updates.iter().cloned())
            .collect();
        for view in [ViewType::All, ViewType::ActiveOnly] {
            let mut rows = table.rows(view);
            filter.retain_rows(&mut table, &mut rows);
            order_by.sort_top_rows(&mut table, &mut rows, count);
            let mut expected: Vec<&Run> = runs
                .iter()
                .filter(|run| view.includes(run.info.lifecycle_stage) && filter.matches(run))
                .collect();
            order_by.sort(&mut expected);
            prop_assert_eq!(rows.len(), expected.len(), "{} in {:?}", text, view);
            let shown = count.min(expected.len());
            let got: Vec<RunId> = rows[..shown].iter().map(|&row| table.run_id(row)).collect();
            let want: Vec<RunId> = expected[..shown].iter().map(|run| run.info.run_id).collect();
            prop_assert_eq!(got, want, "{} by {:?}", text, order);
        }
        runs.retain(|run| !run.data.params.is_empty());
        prop_assert_eq!(table.keys(10)[0].len(), usize::from(!runs.is_empty()));
    }

    #[test]
    fn like_agrees_with_backtracking(pattern in "[ab%_]{0,12}", text in "[ab]{0,16}") {
        prop_assert_eq!(LikePattern::compile(&pattern).matches(&text), like_reference(&pattern, &text));
    }

    #[test]
    fn like_matches_long_texts_within_the_bound(
        pattern in "[ab%_]{0,64}",
        text in "[ab]{0,4000}",
    ) {
        bounded(|| LikePattern::compile(&pattern).matches(&text));
    }
}
