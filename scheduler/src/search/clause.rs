//! Filter clauses: a subject with a comparison, and whether a comparison (numeric, string, SQL
//! LIKE or IN list) holds for a run's value.

use std::collections::HashSet;

use drover_proto::domain::Run;

use super::like::LikePattern;
use super::subject::Subject;

#[derive(Clone, Debug)]
pub(super) struct Clause {
    pub(super) subject: Subject,
    pub(super) comparison: Comparison,
}

impl Clause {
    pub(super) fn matches(&self, run: &Run) -> bool {
        // Parsing made the comparison's kind agree with the subject's, so a run lacking the
        // value is the only way to fall through to `false`.
        if self.comparison.is_numeric() {
            self.subject.number(run).is_some_and(|actual| self.comparison.matches_number(actual))
        } else {
            self.subject.text(run).is_some_and(|actual| self.comparison.matches_text(&actual))
        }
    }
}

/// An operator with its value. Run filters check it against the subject's type as they parse;
/// experiment search reads clauses with `tokenize_clause` and checks them against its fields.
#[derive(Clone, Debug)]
pub(super) enum Comparison {
    Number(NumericOp, f64),
    Text(TextCondition),
}

impl Comparison {
    pub(super) fn is_numeric(&self) -> bool {
        matches!(self, Comparison::Number(..))
    }

    /// Always false for a string comparison.
    pub(super) fn matches_number(&self, actual: f64) -> bool {
        match self {
            Comparison::Number(op, expected) => op.holds(actual, *expected),
            Comparison::Text(_) => false,
        }
    }

    /// Always false for a numeric comparison.
    pub(super) fn matches_text(&self, actual: &str) -> bool {
        match self {
            Comparison::Text(condition) => condition.holds(actual),
            Comparison::Number(..) => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NumericOp {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl NumericOp {
    /// IEEE comparisons already give the documented NaN behaviour: a NaN value satisfies
    /// only `!=`.
    fn holds(self, actual: f64, expected: f64) -> bool {
        match self {
            NumericOp::Equal => actual == expected,
            NumericOp::NotEqual => actual != expected,
            NumericOp::Less => actual < expected,
            NumericOp::LessOrEqual => actual <= expected,
            NumericOp::Greater => actual > expected,
            NumericOp::GreaterOrEqual => actual >= expected,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum TextCondition {
    Equal(String),
    NotEqual(String),
    Like(LikePattern),
    /// Holds a pattern already lowercased; the run's value is lowercased before matching.
    ILike(LikePattern),
    In(HashSet<String>),
    NotIn(HashSet<String>),
}

impl TextCondition {
    fn holds(&self, actual: &str) -> bool {
        match self {
            TextCondition::Equal(expected) => actual == expected,
            TextCondition::NotEqual(expected) => actual != expected,
            TextCondition::Like(pattern) => pattern.matches(actual),
            TextCondition::ILike(pattern) => pattern.matches(&actual.to_lowercase()),
            TextCondition::In(values) => values.contains(actual),
            TextCondition::NotIn(values) => !values.contains(actual),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::test_support::{id_of, matches, run, with_metric, with_param, with_tag};

    #[test]
    fn metric_comparators() {
        let r = with_metric(run(1, 0), "rmse", 0.5);
        let cases = [
            ("metrics.rmse = 0.5", true),
            ("metrics.rmse = 0.4", false),
            ("metrics.rmse != 0.4", true),
            ("metrics.rmse != 0.5", false),
            ("metrics.rmse < 0.6", true),
            ("metrics.rmse < 0.5", false),
            ("metrics.rmse <= 0.5", true),
            ("metrics.rmse <= 0.4", false),
            ("metrics.rmse > 0.4", true),
            ("metrics.rmse > 0.5", false),
            ("metrics.rmse >= 0.5", true),
            ("metrics.rmse >= 0.6", false),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(filter, &r), expected, "{filter}");
        }
    }

    #[test]
    fn nan_metrics_match_only_not_equal() {
        let r = with_metric(run(1, 0), "loss", f64::NAN);
        for filter in [
            "metrics.loss = 1",
            "metrics.loss < 1",
            "metrics.loss <= 1",
            "metrics.loss > 1",
            "metrics.loss >= 1",
        ] {
            assert!(!matches(filter, &r), "{filter}");
        }
        assert!(matches("metrics.loss != 1", &r));
    }

    #[test]
    fn infinite_metrics_compare_as_numbers() {
        let r = with_metric(run(1, 0), "loss", f64::INFINITY);
        assert!(matches("metrics.loss > 1e308", &r));
        assert!(!matches("metrics.loss < 0", &r));
    }

    #[test]
    fn param_comparators() {
        let r = with_param(run(1, 0), "optimizer", "Adam");
        let cases = [
            ("params.optimizer = 'Adam'", true),
            ("params.optimizer = 'adam'", false),
            ("params.optimizer != 'adam'", true),
            ("params.optimizer != 'Adam'", false),
            ("params.optimizer LIKE 'Ad%'", true),
            ("params.optimizer LIKE 'ad%'", false),
            ("params.optimizer ILIKE 'ad%'", true),
            ("params.optimizer ILIKE 'AD_M'", true),
            ("params.optimizer ILIKE 'sgd'", false),
            ("params.optimizer like 'A_am'", true),
            ("params.optimizer iLike '%DAM'", true),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(filter, &r), expected, "{filter}");
        }
    }

    #[test]
    fn tag_comparators() {
        let r = with_tag(run(1, 0), "team", "Vision");
        let cases = [
            ("tags.team = 'Vision'", true),
            ("tags.team = \"Vision\"", true),
            ("tags.team != 'Vision'", false),
            ("tags.team != 'nlp'", true),
            ("tags.team LIKE 'Vis%'", true),
            ("tags.team LIKE 'vis%'", false),
            ("tags.team ILIKE 'vis%'", true),
            ("tags.team ILIKE '%ION'", true),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(filter, &r), expected, "{filter}");
        }
    }

    #[test]
    fn like_wildcards() {
        let cases = [
            ("abc", "abc", true),
            ("abc", "ab", false),
            ("abc", "abcd", false),
            ("%", "", true),
            ("%", "anything", true),
            ("", "", true),
            ("", "a", false),
            ("a%", "abc", true),
            ("%c", "abc", true),
            ("%b%", "abc", true),
            ("%x%", "abc", false),
            ("a_c", "abc", true),
            ("a_c", "ac", false),
            ("a_c", "abbc", false),
            ("___", "abc", true),
            ("____", "abc", false),
            ("_%", "", false),
            ("_%", "a", true),
            ("a%b%c", "aXbYbZc", true),
            ("a%b%c", "aXbYbZ", false),
            ("%aab", "aaaab", true),
            ("%%%a", "ba", true),
            ("%_b", "ab", true),
            ("%_b", "b", false),
            ("é_", "éa", true),
            ("日本%", "日本語", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                LikePattern::compile(pattern).matches(text),
                expected,
                "{pattern:?} LIKE {text:?}"
            );
        }
    }

    #[test]
    fn like_backslash_makes_wildcards_literal() {
        let cases = [
            (r"100\%", "100%", true),
            (r"100\%", "1000", false),
            (r"a\_c", "a_c", true),
            (r"a\_c", "abc", false),
            (r"a\\b", r"a\b", true),
            ("end\\", "end\\", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                LikePattern::compile(pattern).matches(text),
                expected,
                "{pattern:?} LIKE {text:?}"
            );
        }
        // In a filter the string literal takes one level of backslashes first.
        let r = with_param(run(1, 0), "share", "100%");
        assert!(matches(r"params.share LIKE '100\\%'", &r));
        assert!(!matches(r"params.share LIKE '10\\%'", &r));
    }

    #[test]
    fn ilike_ignores_case_on_both_sides() {
        let r = with_tag(run(1, 0), "name", "ÉCOLE Run");
        assert!(matches("tags.name ILIKE 'école%'", &r));
        assert!(matches("tags.name ILIKE '%RUN'", &r));
        assert!(!matches("tags.name LIKE 'école%'", &r));
    }

    #[test]
    fn run_id_in_and_not_in() {
        let (one, two, three) = (run(1, 0), run(2, 0), run(3, 0));
        let listed = format!("attributes.run_id IN ('{}', \"{}\")", id_of(1), id_of(2));
        assert!(matches(&listed, &one));
        assert!(matches(&listed, &two));
        assert!(!matches(&listed, &three));
        let excluded = format!("attributes.run_id not in ('{}','{}')", id_of(1), id_of(2));
        assert!(!matches(&excluded, &one));
        assert!(!matches(&excluded, &two));
        assert!(matches(&excluded, &three));
        let single = format!("run.run_id in ( '{}' )", id_of(3));
        assert!(matches(&single, &three));
        assert!(!matches(&single, &one));
    }
}
