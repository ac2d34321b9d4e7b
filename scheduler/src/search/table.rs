//! Runs laid out by column, for a set of runs searched again and again (the web UI's runs
//! table). Each subject a filter or a sort names is read out of every run once, into one
//! contiguous column, and kept up to date run by run as runs change. A clause then tests a
//! column instead of looking a key up in every run, a text condition is decided once per
//! distinct value, and a sort compares numbers and ranks. What a filter selects and the order
//! a sort gives are exactly those of `Filter::matches` and `OrderBy::sort` (property tests
//! check it).

use std::collections::HashMap;
use std::sync::Arc;

use drover_proto::domain::{LifecycleStage, Run, RunId, ViewType};
use drover_proto::tags;

use super::clause::{Clause, Comparison};
use super::order::{SortClause, SortValue, sort_positions};
use super::subject::{Attribute, Subject};

/// A text column's code for a run that lacks the value.
const ABSENT: u32 = u32::MAX;

/// A set of runs by column.
#[derive(Default)]
pub struct RunTable {
    runs: Vec<Arc<Run>>,
    rows: HashMap<RunId, u32>,
    meta: Vec<RowMeta>,
    /// Built on first use, then updated with every run.
    columns: HashMap<Subject, Column>,
    /// How many runs have each param, metric and tag key.
    keys: [HashMap<String, usize>; 3],
}

/// What every query reads of every row, kept apart from the runs so a pass over all rows
/// reads one contiguous array.
#[derive(Clone, Copy)]
struct RowMeta {
    run_id: RunId,
    lifecycle: LifecycleStage,
    start_time_ms: i64,
    parent: Option<RunId>,
}

impl RowMeta {
    fn of(run: &Run) -> RowMeta {
        RowMeta {
            run_id: run.info.run_id,
            lifecycle: run.info.lifecycle_stage,
            start_time_ms: run.info.start_time_ms,
            parent: parent_of(run),
        }
    }
}

/// The run this one is nested under (MLflow's parent tag), if any.
fn parent_of(run: &Run) -> Option<RunId> {
    let tag = run.data.tags.iter().find(|tag| tag.key == tags::PARENT_RUN)?;
    tag.value.parse().ok()
}

/// One subject's value for every row, as [`Subject::sort_value`] reads it.
enum Column {
    Number(Vec<Option<f64>>),
    Integer(Vec<Option<i64>>),
    /// Each row's value as a code into `values`, whose entries are distinct, with each
    /// value's rank in text order once a sort has asked for it.
    Text {
        codes: Vec<u32>,
        values: Vec<String>,
        code_of: HashMap<String, u32>,
        ranks: Option<Vec<i64>>,
    },
}

impl Column {
    fn empty(subject: &Subject) -> Column {
        match subject {
            Subject::Metric(_) => Column::Number(Vec::new()),
            Subject::Attribute(Attribute::StartTime | Attribute::EndTime) => {
                Column::Integer(Vec::new())
            }
            _ => Column::Text {
                codes: Vec::new(),
                values: Vec::new(),
                code_of: HashMap::new(),
                ranks: None,
            },
        }
    }

    fn build(subject: &Subject, runs: &[Arc<Run>]) -> Column {
        let mut column = Column::empty(subject);
        for run in runs {
            column.push(subject, run);
        }
        column
    }

    fn push(&mut self, subject: &Subject, run: &Run) {
        match self {
            Column::Number(values) => values.push(None),
            Column::Integer(values) => values.push(None),
            Column::Text { codes, .. } => codes.push(ABSENT),
        }
        let row = self.len() - 1;
        self.set(row, subject, run);
    }

    fn len(&self) -> usize {
        match self {
            Column::Number(values) => values.len(),
            Column::Integer(values) => values.len(),
            Column::Text { codes, .. } => codes.len(),
        }
    }

    fn set(&mut self, row: usize, subject: &Subject, run: &Run) {
        let value = subject.sort_value(run);
        match self {
            Column::Number(values) => {
                values[row] = match value {
                    Some(SortValue::Number(number)) => Some(number),
                    _ => None,
                }
            }
            Column::Integer(values) => {
                values[row] = match value {
                    Some(SortValue::Integer(integer)) => Some(integer),
                    _ => None,
                }
            }
            Column::Text { codes, values, code_of, ranks } => {
                codes[row] = match value {
                    Some(SortValue::Text(text)) => match code_of.get(text.as_ref()) {
                        Some(&code) => code,
                        None => {
                            let code = values.len() as u32;
                            *ranks = None;
                            values.push(text.clone().into_owned());
                            code_of.insert(text.into_owned(), code);
                            code
                        }
                    },
                    _ => ABSENT,
                }
            }
        }
    }

    /// A text column whose values have mostly been replaced holds more than it shows.
    fn is_bloated(&self) -> bool {
        match self {
            Column::Text { codes, values, .. } => values.len() > 2 * codes.len() + 64,
            _ => false,
        }
    }

    /// Whether each row's value satisfies the comparison, as [`super::clause::Clause`]
    /// decides it for a run.
    fn retain(&self, comparison: &Comparison, rows: &mut Vec<u32>) {
        match self {
            Column::Number(values) => rows.retain(|&row| {
                values[row as usize].is_some_and(|value| comparison.matches_number(value))
            }),
            Column::Integer(values) => rows.retain(|&row| {
                values[row as usize].is_some_and(|value| comparison.matches_number(value as f64))
            }),
            Column::Text { codes, values, .. } => {
                if comparison.is_numeric() {
                    rows.clear();
                    return;
                }
                let holds: Vec<bool> =
                    values.iter().map(|value| comparison.matches_text(value)).collect();
                rows.retain(|&row| {
                    let code = codes[row as usize];
                    code != ABSENT && holds[code as usize]
                });
            }
        }
    }

    /// Each row's value as a sort compares it: texts by their rank among the distinct values.
    fn sort_values(&mut self) -> Vec<Option<SortValue<'static>>> {
        match self {
            Column::Number(values) => values.iter().map(|v| v.map(SortValue::Number)).collect(),
            Column::Integer(values) => values.iter().map(|v| v.map(SortValue::Integer)).collect(),
            Column::Text { codes, values, ranks, .. } => {
                let rank = ranks.get_or_insert_with(|| {
                    let mut by_text: Vec<u32> = (0..values.len() as u32).collect();
                    by_text.sort_unstable_by(|&a, &b| values[a as usize].cmp(&values[b as usize]));
                    let mut rank = vec![0i64; values.len()];
                    for (position, code) in by_text.into_iter().enumerate() {
                        rank[code as usize] = position as i64;
                    }
                    rank
                });
                codes
                    .iter()
                    .map(|&code| (code != ABSENT).then(|| SortValue::Integer(rank[code as usize])))
                    .collect()
            }
        }
    }
}

impl RunTable {
    pub fn new(runs: Vec<Arc<Run>>) -> RunTable {
        let mut table = RunTable::default();
        for run in runs {
            table.upsert(run);
        }
        table
    }

    /// Adds a run, or replaces the row of a run the table has.
    pub fn upsert(&mut self, run: Arc<Run>) {
        let row = match self.rows.get(&run.info.run_id) {
            Some(&row) => {
                let old = self.runs[row as usize].clone();
                self.count_keys(&old, false);
                self.runs[row as usize] = run.clone();
                self.meta[row as usize] = RowMeta::of(&run);
                for (subject, column) in &mut self.columns {
                    column.set(row as usize, subject, &run);
                }
                self.columns.retain(|_, column| !column.is_bloated());
                row
            }
            None => {
                let row = self.runs.len() as u32;
                self.rows.insert(run.info.run_id, row);
                self.runs.push(run.clone());
                self.meta.push(RowMeta::of(&run));
                for (subject, column) in &mut self.columns {
                    column.push(subject, &run);
                }
                row
            }
        };
        debug_assert_eq!(self.runs[row as usize].info.run_id, run.info.run_id);
        self.count_keys(&run, true);
    }

    fn count_keys(&mut self, run: &Run, add: bool) {
        fn count<'a>(
            counts: &mut HashMap<String, usize>,
            keys: impl Iterator<Item = &'a String>,
            add: bool,
        ) {
            for key in keys {
                match counts.get_mut(key) {
                    Some(count) if add => *count += 1,
                    Some(count) => {
                        *count -= 1;
                        if *count == 0 {
                            counts.remove(key);
                        }
                    }
                    None if add => {
                        counts.insert(key.clone(), 1);
                    }
                    None => {}
                }
            }
        }
        let [params, metrics, run_tags] = &mut self.keys;
        count(params, run.data.params.iter().map(|param| &param.key), add);
        count(metrics, run.data.latest_metrics.iter().map(|metric| &metric.key), add);
        count(run_tags, run.data.tags.iter().map(|tag| &tag.key), add);
    }

    /// The run in a row.
    pub fn run(&self, row: u32) -> &Arc<Run> {
        &self.runs[row as usize]
    }

    pub fn run_id(&self, row: u32) -> RunId {
        self.meta[row as usize].run_id
    }

    pub fn parent(&self, row: u32) -> Option<RunId> {
        self.meta[row as usize].parent
    }

    /// The rows whose runs the view shows, in no particular order.
    pub fn rows(&self, view: ViewType) -> Vec<u32> {
        (0..self.meta.len() as u32)
            .filter(|&row| view.includes(self.meta[row as usize].lifecycle))
            .collect()
    }

    /// The param, metric and tag keys some run has, sorted, at most `max` of each.
    pub fn keys(&self, max: usize) -> [Vec<String>; 3] {
        self.keys.clone().map(|counts| {
            let mut keys: Vec<String> = counts.into_keys().collect();
            keys.sort_unstable();
            keys.truncate(max);
            keys
        })
    }

    fn column(&mut self, subject: &Subject) -> &mut Column {
        let runs = &self.runs;
        self.columns.entry(subject.clone()).or_insert_with(|| Column::build(subject, runs))
    }
}

/// Keeps the rows whose runs all the clauses match.
pub(super) fn retain_rows(clauses: &[Clause], table: &mut RunTable, rows: &mut Vec<u32>) {
    for clause in clauses {
        if rows.is_empty() {
            return;
        }
        table.column(&clause.subject).retain(&clause.comparison, rows);
    }
}

/// Puts the first `count` rows in the clauses' order, sorted, at the front of `rows`.
pub(super) fn sort_top_rows(
    clauses: &[SortClause],
    table: &mut RunTable,
    rows: &mut Vec<u32>,
    count: usize,
) {
    let columns: Vec<Vec<Option<SortValue<'static>>>> =
        clauses.iter().map(|clause| table.column(&clause.subject).sort_values()).collect();
    let values: Vec<Option<SortValue>> = rows
        .iter()
        .flat_map(|&row| columns.iter().map(move |column| column[row as usize].clone()))
        .collect();
    let meta = &table.meta;
    let order = sort_positions(
        clauses,
        &values,
        |position| {
            let row = &meta[rows[position] as usize];
            (row.start_time_ms, row.run_id)
        },
        rows.len(),
        count,
    );
    *rows = order.into_iter().map(|position| rows[position]).collect();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drover_proto::domain::{LifecycleStage, ViewType};

    use super::RunTable;
    use crate::search::test_support::{id_of, run, with_metric, with_param};
    use crate::search::{Filter, OrderBy};

    fn ids(table: &RunTable, rows: &[u32]) -> Vec<String> {
        rows.iter().map(|&row| table.run_id(row).to_string()).collect()
    }

    #[test]
    fn a_changed_run_is_found_by_its_new_values_only() {
        let mut table = RunTable::new(vec![
            Arc::new(with_metric(run(1, 0), "loss", 0.5)),
            Arc::new(with_metric(run(2, 0), "loss", 0.7)),
        ]);
        let filter = Filter::parse("metrics.loss < 0.6").unwrap();
        let mut rows = table.rows(ViewType::ActiveOnly);
        filter.retain_rows(&mut table, &mut rows);
        assert_eq!(ids(&table, &rows), [id_of(1)]);

        table.upsert(Arc::new(with_metric(run(2, 0), "loss", 0.1)));
        table.upsert(Arc::new(with_param(run(3, 0), "lr", "0.1")));
        let mut rows = table.rows(ViewType::ActiveOnly);
        filter.retain_rows(&mut table, &mut rows);
        OrderBy::parse(&["metrics.loss".to_string()])
            .unwrap()
            .sort_top_rows(&mut table, &mut rows, 10);
        assert_eq!(ids(&table, &rows), [id_of(2), id_of(1)]);
        assert_eq!(table.keys(10), [vec!["lr".to_string()], vec!["loss".to_string()], vec![]]);
    }

    #[test]
    fn deleted_runs_show_in_their_view_only() {
        let mut deleted = run(2, 0);
        deleted.info.lifecycle_stage = LifecycleStage::Deleted;
        let table = RunTable::new(vec![Arc::new(run(1, 0)), Arc::new(deleted)]);
        assert_eq!(ids(&table, &table.rows(ViewType::ActiveOnly)), [id_of(1)]);
        assert_eq!(ids(&table, &table.rows(ViewType::DeletedOnly)), [id_of(2)]);
        assert_eq!(table.rows(ViewType::All).len(), 2);
    }

    #[test]
    fn keys_leave_with_the_last_run_that_had_them() {
        let mut table = RunTable::new(vec![Arc::new(with_param(run(1, 0), "lr", "0.1"))]);
        table.upsert(Arc::new(run(1, 0)));
        assert!(table.keys(10)[0].is_empty());
    }
}
