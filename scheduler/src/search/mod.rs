//! MLflow's run search grammar: `filter` strings such as `metrics.rmse < 1 AND params.lr = '0.1'`
//! and `order_by` clauses such as `metrics.rmse DESC`, parsed once and applied to runs.
//! [`ExperimentFilter`] reads the same grammar for experiments.
//!
//! The parts, each using only those listed before it: `subject` (what a clause is about and
//! how a run's value is read), `clause` (comparisons and whether they hold), `order` (sorting
//! runs), `parser` (the grammar's text into clauses), `experiments`, and `table` (runs laid
//! out by column, searched by the same clauses without reading every run again).

use std::borrow::Borrow;

use drover_proto::ApiError;
use drover_proto::domain::Run;

mod clause;
mod experiments;
mod like;
mod models;
mod order;
mod parser;
#[cfg(test)]
mod props;
mod subject;
mod table;
#[cfg(test)]
mod test_support;

pub(crate) use experiments::ExperimentFilter;
pub use models::{
    DatasetRef, LoggedModelOrder, LoggedModelSearch, ModelVersionSearch, RegisteredModelSearch,
};
pub use table::RunTable;

use clause::Clause;
use order::SortClause;
use parser::{
    check_clause_count, check_filter_size, check_order_by_size, filter_error, order_by_error,
    parse_clauses, parse_sort_clause,
};

/// A parsed filter: clauses joined by AND. An empty or blank filter matches everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    clauses: Vec<Clause>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, ApiError> {
        check_filter_size(text)?;
        let clauses = parse_clauses(text).map_err(filter_error)?;
        check_clause_count(clauses.len())?;
        Ok(Filter { clauses })
    }

    pub fn matches(&self, run: &Run) -> bool {
        self.clauses.iter().all(|clause| clause.matches(run))
    }

    /// Keeps the rows of `table` whose runs the filter matches.
    pub fn retain_rows(&self, table: &mut RunTable, rows: &mut Vec<u32>) {
        table::retain_rows(&self.clauses, table, rows);
    }
}

/// A parsed list of order_by clauses, e.g.
/// ["metrics.rmse ASC", "attributes.start_time DESC", "params.`my param`"].
#[derive(Clone, Debug, Default)]
pub struct OrderBy {
    clauses: Vec<SortClause>,
}

impl OrderBy {
    pub fn parse(clauses: &[String]) -> Result<OrderBy, ApiError> {
        check_order_by_size(clauses)?;
        let mut parsed: Vec<SortClause> = Vec::with_capacity(clauses.len());
        for text in clauses {
            let clause = parse_sort_clause(text).map_err(|error| order_by_error(text, error))?;
            // A subject sorted by again can only meet ties the first clause already broke.
            if !parsed.iter().any(|earlier| earlier.subject == clause.subject) {
                parsed.push(clause);
            }
        }
        Ok(OrderBy { clauses: parsed })
    }

    /// Sorts runs in place. The default order (no clauses), and the tie-break after all clauses,
    /// is start_time DESC, then run_id ASC.
    pub fn sort<R: Borrow<Run>>(&self, runs: &mut [R]) {
        order::sort_runs(&self.clauses, runs);
    }

    /// Puts the first `count` rows of `table` in this order, sorted, at the front of `rows`,
    /// leaving the
    /// rest in no particular order: what a page from the start of a search needs.
    pub fn sort_top_rows(&self, table: &mut RunTable, rows: &mut Vec<u32>, count: usize) {
        table::sort_top_rows(&self.clauses, table, rows, count);
    }
}

#[cfg(test)]
mod tests {
    use super::{Filter, OrderBy};
    use crate::search::test_support::{
        assert_filter_error, filter_error, matches, order_by_error, run, with_metric, with_param,
        with_tag,
    };

    #[test]
    fn blank_filters_match_everything() {
        let plain = run(1, 0);
        for blank in ["", " ", "\t\n  "] {
            assert!(matches(blank, &plain), "{blank:?}");
        }
        assert!(Filter::default().matches(&plain));
    }

    #[test]
    fn metric_number_syntax() {
        let r = with_metric(run(1, 0), "loss", -0.001);
        for filter in [
            "metrics.loss = -0.001",
            "metrics.loss = -1e-3",
            "metrics.loss = -1E-3",
            "metrics.loss = -.001",
            "metrics.loss > -1",
            "metrics.loss < +1",
            "metrics.loss < 1.",
            "metrics.loss < 2.5e+2",
            "metrics.loss<0",
            "metrics.loss>=-1",
        ] {
            assert!(matches(filter, &r), "{filter}");
        }
        let whole = with_metric(run(1, 0), "epochs", 10.0);
        assert!(matches("metrics.epochs = 10", &whole));
        assert!(matches("metric.epochs = 1e1", &whole));
    }

    #[test]
    fn entity_spellings() {
        let r = with_tag(with_param(with_metric(run(1, 0), "m", 1.0), "p", "x"), "t", "y");
        for filter in [
            "metrics.m = 1",
            "metric.m = 1",
            "METRICS.m = 1",
            "params.p = 'x'",
            "param.p = 'x'",
            "parameters.p = 'x'",
            "tags.t = 'y'",
            "tag.t = 'y'",
            "attributes.status = 'FINISHED'",
            "attribute.status = 'FINISHED'",
            "attr.status = 'FINISHED'",
            "run.status = 'FINISHED'",
        ] {
            assert!(matches(filter, &r), "{filter}");
        }
    }

    // --- keys ----------------------------------------------------------------------------

    #[test]
    fn keys_may_contain_dots_and_punctuation() {
        let r = with_metric(with_tag(run(1, 0), "mlflow.runName", "best"), "val/acc:top-1.5", 0.9);
        assert!(matches("tags.mlflow.runName = 'best'", &r));
        assert!(matches("metrics.val/acc:top-1.5 > 0.8", &r));
        assert!(!matches("tags.mlflow = 'best'", &r));
    }

    #[test]
    fn quoted_and_backticked_keys() {
        let r = with_param(with_metric(run(1, 0), "my metric", 2.0), "a b", "c");
        assert!(matches("metrics.`my metric` = 2", &r));
        assert!(matches("metrics.\"my metric\" >= 2", &r));
        assert!(matches("metrics.'my metric' <= 2", &r));
        assert!(matches("params.\"a b\" = 'c'", &r));
        assert!(matches("params.`a b`='c'", &r));
        assert!(matches("attributes.`run_name` = 'run-1'", &r));
    }

    #[test]
    fn quoted_keys_unescape_but_backticks_do_not() {
        let r = with_param(with_param(run(1, 0), "say \"hi\"", "1"), "back\\slash", "2");
        assert!(matches(r#"params."say \"hi\"" = '1'"#, &r));
        assert!(matches(r"params.`back\slash` = '2'", &r));
    }

    // --- strings -------------------------------------------------------------------------

    #[test]
    fn string_escapes() {
        let r = with_param(with_param(run(1, 0), "q", "it's \"quoted\""), "path", r"C:\data");
        assert!(matches(r#"params.q = 'it\'s "quoted"'"#, &r));
        assert!(matches(r#"params.q = "it's \"quoted\"""#, &r));
        assert!(matches(r"params.path = 'C:\\data'", &r));
    }

    // --- AND -----------------------------------------------------------------------------

    #[test]
    fn and_chains_in_any_case() {
        let r = with_tag(with_param(with_metric(run(1, 0), "acc", 0.9), "lr", "0.1"), "t", "x");
        for filter in [
            "metrics.acc > 0.5 AND params.lr = '0.1'",
            "metrics.acc > 0.5 and params.lr = '0.1' And tags.t = 'x'",
            "metrics.acc>0.5 aNd params.lr='0.1'",
            "  metrics.acc   >   0.5\n\tAND\nparams.lr   =   '0.1'  ",
            "params.lr = '0.1'AND metrics.acc > 0.5",
        ] {
            assert!(matches(filter, &r), "{filter}");
        }
        assert!(!matches("metrics.acc > 0.5 AND params.lr = '0.2'", &r));
        assert!(!matches("metrics.acc > 0.95 and params.lr = '0.1'", &r));
    }

    #[test]
    fn keywords_inside_strings_are_just_text() {
        let r = with_param(run(1, 0), "note", "x AND y OR (z)");
        assert!(matches("params.note = 'x AND y OR (z)'", &r));
    }

    // --- errors --------------------------------------------------------------------------

    #[test]
    fn every_error_is_invalid_argument_naming_the_token() {
        let cases: &[(&str, &[&str])] = &[
            ("rmse < 1", &["'rmse'", "entity"]),
            ("metrics.rmse foo 1", &["near 'foo'", "expected a comparison operator"]),
            ("metrics.rmse", &["end of input", "comparison operator"]),
            ("metrics.rmse =", &["end of input", "value"]),
            ("metrics.rmse => 1", &["'=>'", "comparison operator"]),
            ("metrics.rmse == 1", &["'=='"]),
            ("metrics.rmse ~ 1", &["'~'"]),
            ("bogus.rmse < 1", &["unknown entity 'bogus'"]),
            ("attributes.bogus = 'x'", &["invalid filter: unknown attribute 'bogus'"]),
            ("attributes.lifecycle_stage = 'active'", &["unknown attribute 'lifecycle_stage'"]),
            ("metrics.a < 1 OR metrics.b < 1", &["'OR'", "not supported"]),
            ("metrics.a < 1 or metrics.b < 1", &["'or'", "not supported"]),
            ("(metrics.a < 1)", &["'('", "parentheses"]),
            ("metrics.a < 1 AND (metrics.b < 1)", &["'('", "parentheses"]),
            ("metrics.a < 1)", &["')'", "parentheses"]),
            ("metrics.a < 1 metrics.b < 2", &["near 'metrics.b'", "AND"]),
            ("metrics.a < 1 AND", &["end of input"]),
            ("metrics.a < 1 AND AND metrics.b < 1", &["near 'AND'", "entity"]),
            ("metrics.rmse = '1'", &["near ''1''", "number"]),
            ("metrics.rmse = abc", &["near 'abc'", "number"]),
            ("metrics.rmse = 1.2.3", &["near '1.2.3'", "number"]),
            ("metrics.rmse = NaN", &["near 'NaN'", "number"]),
            ("metrics.rmse = inf", &["near 'inf'", "number"]),
            ("metrics.rmse = 1e", &["near '1e'"]),
            ("metrics.rmse LIKE '1%'", &["near 'LIKE'", "numeric"]),
            ("metrics.rmse IN ('1')", &["near 'IN'"]),
            ("params.lr < '0.1'", &["near '<'", "param 'lr' is a string"]),
            ("params.lr >= '0.1'", &["near '>='"]),
            ("tags.t > 'a'", &["near '>'", "tag 't'"]),
            ("params.lr = 0.1", &["near '0.1'", "quoted string"]),
            ("params.model = resnet", &["near 'resnet'", "quoted string"]),
            ("params.lr IN ('a')", &["near 'IN'", "run_id"]),
            ("attributes.status NOT IN ('a')", &["near 'NOT IN'", "run_id"]),
            ("attributes.start_time = '5'", &["near ''5''", "attribute 'start_time'"]),
            ("attributes.start_time LIKE '5%'", &["near 'LIKE'"]),
            ("attributes.run_name > 'a'", &["near '>'", "attribute 'run_name'"]),
            ("attributes.run_id IN 'a'", &["near ''a''", "list"]),
            ("attributes.run_id = ('a')", &["near '('a')'", "quoted string"]),
            ("attributes.run_id IN ()", &["near ')'", "quoted string"]),
            ("attributes.run_id IN (a)", &["near 'a'", "quoted string"]),
            ("attributes.run_id IN ('a',)", &["near ')'"]),
            ("attributes.run_id IN ('a'", &["end of input"]),
            ("attributes.run_id IN ('a' 'b')", &["near ''b''", "','"]),
            ("attributes.run_id NOT ('a')", &["near '('", "IN after NOT"]),
            ("attributes.run_id NOT LIKE 'a'", &["near 'LIKE'", "IN after NOT"]),
            ("params.lr = 'abc", &["near ''abc'", "unterminated"]),
            ("params.lr = \"abc\\\"", &["unterminated"]),
            ("params.`lr = 'a'", &["unterminated backticked key"]),
            ("params.`` = 'a'", &["empty key"]),
            ("params. = 'a'", &["near 'params.'", "expected a key"]),
            ("params.", &["near 'params.'", "expected a key"]),
            ("= 1", &["near '='", "entity"]),
            ("`my metric` < 1", &["near '`my metric`'", "entity"]),
            ("metrics.a IS NULL", &["near 'IS'"]),
        ];
        for (filter, fragments) in cases {
            assert_filter_error(filter, fragments);
        }
    }

    #[test]
    fn error_messages_are_lowercase_without_trailing_period() {
        for filter in ["rmse < 1", "metrics.a foo 1", "attributes.bogus = 'x'", "metrics.a"] {
            let message = filter_error(filter);
            assert!(!message.ends_with('.'), "{message}");
        }
    }

    #[test]
    fn order_by_errors_name_the_clause_and_token() {
        let cases: &[(&str, &[&str])] = &[
            ("", &["end of input"]),
            ("   ", &["end of input"]),
            ("rmse", &["near 'rmse'", "entity"]),
            ("start_time DESC", &["near 'start_time'"]),
            ("bogus.x", &["unknown entity 'bogus'"]),
            ("attributes.bogus", &["unknown attribute 'bogus'"]),
            ("metrics.rmse DOWN", &["near 'DOWN'", "ASC or DESC"]),
            ("metrics.rmse ASC DESC", &["near 'DESC'", "nothing after"]),
            ("metrics.rmse ASC, params.lr", &["near ','"]),
            ("metrics.rmse > 1", &["near '>'", "ASC or DESC"]),
            ("params.`my param", &["unterminated backticked key"]),
        ];
        for (clause, fragments) in cases {
            let message = order_by_error(clause);
            for fragment in *fragments {
                assert!(message.contains(fragment), "{clause:?}: {message:?} lacks {fragment:?}");
            }
        }
        // One bad clause spoils the list.
        let clauses = vec!["metrics.a".to_string(), "nope".to_string()];
        assert!(OrderBy::parse(&clauses).is_err());
    }
}
