//! MLflow's run search grammar: `filter` strings such as `metrics.rmse < 1 AND params.lr = '0.1'`
//! and `order_by` clauses such as `metrics.rmse DESC`, parsed once and applied to runs.

use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;
use std::fmt;

use drover_proto::ApiError;
use drover_proto::domain::Run;

/// A parsed filter: clauses joined by AND. An empty or blank filter matches everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    clauses: Vec<Clause>,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, ApiError> {
        parse_clauses(text).map(|clauses| Filter { clauses }).map_err(filter_error)
    }

    pub fn matches(&self, run: &Run) -> bool {
        self.clauses.iter().all(|clause| clause.matches(run))
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
        let clauses = clauses
            .iter()
            .map(|text| {
                parse_sort_clause(text).map_err(|error| {
                    ApiError::InvalidArgument(match error.near {
                        Some(token) => format!(
                            "invalid order_by clause '{text}': {} (near '{token}')",
                            error.reason
                        ),
                        None => format!("invalid order_by clause '{text}': {}", error.reason),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OrderBy { clauses })
    }

    /// Sorts runs in place. The default order (no clauses), and the tie-break after all clauses,
    /// is start_time DESC, then run_id ASC.
    pub fn sort<R: Borrow<Run>>(&self, runs: &mut [R]) {
        // Each run's sort values are looked up once rather than on every comparison, since
        // finding a metric or param is a linear scan of the run's data.
        let keys: Vec<Vec<Option<SortValue>>> = runs
            .iter()
            .map(|run| {
                self.clauses.iter().map(|clause| clause.subject.sort_value(run.borrow())).collect()
            })
            .collect();
        let mut order: Vec<usize> = (0..runs.len()).collect();
        order.sort_by(|&left, &right| {
            self.clauses
                .iter()
                .enumerate()
                .map(|(index, clause)| {
                    compare_sort_values(
                        keys[left][index].as_ref(),
                        keys[right][index].as_ref(),
                        clause.descending,
                    )
                })
                .find(|ordering| ordering.is_ne())
                .unwrap_or(Ordering::Equal)
                .then_with(|| {
                    let (left, right) = (runs[left].borrow(), runs[right].borrow());
                    right.info.start_time_ms.cmp(&left.info.start_time_ms)
                })
                .then_with(|| {
                    runs[left].borrow().info.run_id.cmp(&runs[right].borrow().info.run_id)
                })
        });
        apply_permutation(runs, &order);
    }
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

// ---------------------------------------------------------------------------
// What a clause is about
// ---------------------------------------------------------------------------

/// The run attributes a filter or an order_by clause may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attribute {
    RunId,
    RunName,
    Status,
    UserId,
    StartTime,
    EndTime,
    ArtifactUri,
}

const ATTRIBUTE_NAMES: &str =
    "run_id, run_name, status, user_id, start_time, end_time, artifact_uri";

impl Attribute {
    fn from_name(name: &str) -> Option<Attribute> {
        // The camelCase spellings are the ones MLflow's own UI and clients produce.
        Some(match name {
            "run_id" | "runId" => Attribute::RunId,
            "run_name" | "runName" => Attribute::RunName,
            "status" => Attribute::Status,
            "user_id" | "userId" => Attribute::UserId,
            "start_time" | "startTime" => Attribute::StartTime,
            "end_time" | "endTime" => Attribute::EndTime,
            "artifact_uri" | "artifactUri" => Attribute::ArtifactUri,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Attribute::RunId => "run_id",
            Attribute::RunName => "run_name",
            Attribute::Status => "status",
            Attribute::UserId => "user_id",
            Attribute::StartTime => "start_time",
            Attribute::EndTime => "end_time",
            Attribute::ArtifactUri => "artifact_uri",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Subject {
    Metric(String),
    Param(String),
    Tag(String),
    Attribute(Attribute),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Metric(key) => write!(f, "metric '{key}'"),
            Subject::Param(key) => write!(f, "param '{key}'"),
            Subject::Tag(key) => write!(f, "tag '{key}'"),
            Subject::Attribute(attribute) => write!(f, "attribute '{}'", attribute.name()),
        }
    }
}

impl Subject {
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Subject::Metric(_) | Subject::Attribute(Attribute::StartTime | Attribute::EndTime)
        )
    }

    /// The run's value for a numeric subject; `None` when the run lacks it.
    fn number(&self, run: &Run) -> Option<f64> {
        match self {
            Subject::Metric(key) => {
                run.data.latest_metrics.iter().find(|metric| &metric.key == key).map(|m| m.value)
            }
            // Epoch milliseconds stay exact in an f64 for the next quarter of a million years.
            Subject::Attribute(Attribute::StartTime) => Some(run.info.start_time_ms as f64),
            Subject::Attribute(Attribute::EndTime) => run.info.end_time_ms.map(|ms| ms as f64),
            _ => None,
        }
    }

    /// The run's value for a string subject; `None` when the run lacks it.
    fn text<'run>(&self, run: &'run Run) -> Option<Cow<'run, str>> {
        match self {
            Subject::Param(key) => run
                .data
                .params
                .iter()
                .find(|param| &param.key == key)
                .map(|param| Cow::Borrowed(param.value.as_str())),
            Subject::Tag(key) => run
                .data
                .tags
                .iter()
                .find(|tag| &tag.key == key)
                .map(|tag| Cow::Borrowed(tag.value.as_str())),
            Subject::Attribute(Attribute::RunId) => Some(Cow::Owned(run.info.run_id.to_string())),
            Subject::Attribute(Attribute::RunName) => Some(Cow::Borrowed(&run.info.run_name)),
            Subject::Attribute(Attribute::Status) => Some(Cow::Borrowed(run.info.status.as_str())),
            Subject::Attribute(Attribute::UserId) => Some(Cow::Borrowed(&run.info.user_id)),
            Subject::Attribute(Attribute::ArtifactUri) => {
                Some(Cow::Borrowed(&run.info.artifact_uri))
            }
            _ => None,
        }
    }

    fn sort_value(&self, run: &Run) -> Option<SortValue> {
        match self {
            Subject::Metric(_) => self.number(run).map(SortValue::Number),
            Subject::Attribute(Attribute::StartTime) => {
                Some(SortValue::Integer(run.info.start_time_ms))
            }
            Subject::Attribute(Attribute::EndTime) => run.info.end_time_ms.map(SortValue::Integer),
            _ => self.text(run).map(|text| SortValue::Text(text.into_owned())),
        }
    }
}

// ---------------------------------------------------------------------------
// Filter clauses
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Clause {
    subject: Subject,
    comparison: Comparison,
}

impl Clause {
    fn matches(&self, run: &Run) -> bool {
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
pub(crate) enum Comparison {
    Number(NumericOp, f64),
    Text(TextCondition),
}

impl Comparison {
    pub(crate) fn is_numeric(&self) -> bool {
        matches!(self, Comparison::Number(..))
    }

    /// Always false for a string comparison.
    pub(crate) fn matches_number(&self, actual: f64) -> bool {
        match self {
            Comparison::Number(op, expected) => op.holds(actual, *expected),
            Comparison::Text(_) => false,
        }
    }

    /// Always false for a numeric comparison.
    pub(crate) fn matches_text(&self, actual: &str) -> bool {
        match self {
            Comparison::Text(condition) => condition.holds(actual),
            Comparison::Number(..) => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumericOp {
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
pub(crate) enum TextCondition {
    Equal(String),
    NotEqual(String),
    Like(LikePattern),
    /// Holds a pattern already lowercased; the run's value is lowercased before matching.
    ILike(LikePattern),
    In(Vec<String>),
    NotIn(Vec<String>),
}

impl TextCondition {
    fn holds(&self, actual: &str) -> bool {
        match self {
            TextCondition::Equal(expected) => actual == expected,
            TextCondition::NotEqual(expected) => actual != expected,
            TextCondition::Like(pattern) => pattern.matches(actual),
            TextCondition::ILike(pattern) => pattern.matches(&actual.to_lowercase()),
            TextCondition::In(values) => values.iter().any(|value| value == actual),
            TextCondition::NotIn(values) => values.iter().all(|value| value != actual),
        }
    }
}

/// A compiled SQL LIKE pattern: `%` matches any run of characters, `_` exactly one, and a
/// backslash makes the next character literal (as in PostgreSQL) so `%` and `_` can be matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LikePattern {
    pieces: Vec<LikePiece>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LikePiece {
    AnyRun,
    AnyOne,
    Literal(char),
}

impl LikePattern {
    fn compile(pattern: &str) -> LikePattern {
        let mut pieces = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                // A trailing lone backslash has nothing to escape, so it stands for itself.
                '\\' => LikePiece::Literal(chars.next().unwrap_or('\\')),
                '%' => LikePiece::AnyRun,
                '_' => LikePiece::AnyOne,
                other => LikePiece::Literal(other),
            };
            // Runs of `%` mean the same as one and would only slow the backtracking down.
            if piece == LikePiece::AnyRun && pieces.last() == Some(&LikePiece::AnyRun) {
                continue;
            }
            pieces.push(piece);
        }
        LikePattern { pieces }
    }

    /// Greedy matching that remembers only the latest `%`: backtracking to an earlier one can
    /// never help, so this runs in O(text × pattern) at worst.
    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let pieces = &self.pieces;
        let (mut at_text, mut at_piece) = (0, 0);
        // After the latest `%`: the piece following it and the text position it resumes from.
        let mut last_run: Option<(usize, usize)> = None;
        while at_text < text.len() {
            let step_matches = match pieces.get(at_piece) {
                Some(LikePiece::AnyOne) => true,
                Some(LikePiece::Literal(c)) => *c == text[at_text],
                Some(LikePiece::AnyRun) | None => false,
            };
            if step_matches {
                at_text += 1;
                at_piece += 1;
            } else if pieces.get(at_piece) == Some(&LikePiece::AnyRun) {
                at_piece += 1;
                last_run = Some((at_piece, at_text));
            } else if let Some((resume_piece, resume_text)) = last_run {
                // Let the latest `%` swallow one more character and try again from there.
                at_piece = resume_piece;
                at_text = resume_text + 1;
                last_run = Some((resume_piece, resume_text + 1));
            } else {
                return false;
            }
        }
        pieces[at_piece.min(pieces.len())..].iter().all(|piece| *piece == LikePiece::AnyRun)
    }
}

// ---------------------------------------------------------------------------
// Sorting
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct SortClause {
    subject: Subject,
    descending: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum SortValue {
    Number(f64),
    Integer(i64),
    Text(String),
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

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// A parse failure before it is worded for a filter or an order_by clause.
#[derive(Debug)]
struct SyntaxError {
    /// The offending token as written, when there is one.
    near: Option<String>,
    reason: String,
}

impl SyntaxError {
    fn near(token: impl Into<String>, reason: impl Into<String>) -> SyntaxError {
        SyntaxError { near: Some(token.into()), reason: reason.into() }
    }

    fn plain(reason: impl Into<String>) -> SyntaxError {
        SyntaxError { near: None, reason: reason.into() }
    }
}

type Parsed<T> = Result<T, SyntaxError>;

fn filter_error(error: SyntaxError) -> ApiError {
    ApiError::InvalidArgument(match error.near {
        Some(token) => format!("invalid filter near '{token}': {}", error.reason),
        None => format!("invalid filter: {}", error.reason),
    })
}

const SUBJECT_EXAMPLE: &str =
    "'<entity>.<key>' such as metrics.rmse, params.lr, tags.team or attributes.status";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Compare(NumericOp),
    Like,
    ILike,
    In,
    NotIn,
}

/// A clause's right-hand side before it is checked against the subject's type.
#[derive(Debug)]
enum RawValue {
    /// An unquoted word, which only a numeric subject accepts.
    Bare(String),
    Quoted(String),
    List(Vec<String>),
}

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')
}

/// Characters of an unquoted value: digits, signs, a decimal point and exponent letters, and
/// letters so a stray word is reported whole.
fn is_bare_value_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '+' | '-')
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>')
}

/// Accepts only plain decimal notation (`-1`, `0.5`, `.5`, `1e-3`), not the `inf` and `NaN`
/// spellings Rust's float parser also knows.
fn parse_number(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut at = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        at += 1;
    }
    let integer_digits = bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    at += integer_digits;
    let mut fraction_digits = 0;
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        fraction_digits = bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        at += fraction_digits;
    }
    if integer_digits + fraction_digits == 0 {
        return None;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent_digits = bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exponent_digits == 0 {
            return None;
        }
        at += exponent_digits;
    }
    if at != bytes.len() {
        return None;
    }
    text.parse().ok()
}

fn parse_clauses(text: &str) -> Parsed<Vec<Clause>> {
    let mut parser = Parser::new(text);
    let mut clauses = Vec::new();
    parser.skip_whitespace();
    if parser.at_end() {
        return Ok(clauses);
    }
    loop {
        clauses.push(parser.clause()?);
        parser.skip_whitespace();
        if parser.at_end() {
            return Ok(clauses);
        }
        parser.reject_unsupported_syntax()?;
        let word = parser.take_while(is_key_char);
        if !word.eq_ignore_ascii_case("and") {
            return Err(parser.unexpected_before(word, "AND between clauses"));
        }
    }
}

fn parse_sort_clause(text: &str) -> Parsed<SortClause> {
    let mut parser = Parser::new(text);
    parser.skip_whitespace();
    let subject = parser.subject()?;
    parser.skip_whitespace();
    let direction = parser.take_while(char::is_alphanumeric);
    let descending = if direction.is_empty() || direction.eq_ignore_ascii_case("asc") {
        false
    } else if direction.eq_ignore_ascii_case("desc") {
        true
    } else {
        return Err(SyntaxError::near(direction, "expected ASC or DESC after the key"));
    };
    parser.skip_whitespace();
    match parser.peek_token() {
        None => Ok(SortClause { subject, descending }),
        Some(token) if direction.is_empty() => {
            Err(SyntaxError::near(token, "expected ASC or DESC after the key"))
        }
        Some(token) => Err(SyntaxError::near(token, "expected nothing after the sort direction")),
    }
}

/// A cursor over the text of one filter or one order_by clause.
struct Parser<'text> {
    text: &'text str,
    /// Byte offset of the next unread character.
    at: usize,
}

impl<'text> Parser<'text> {
    fn new(text: &'text str) -> Parser<'text> {
        Parser { text, at: 0 }
    }

    fn rest(&self) -> &'text str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn skip_whitespace(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'text str {
        let rest = self.rest();
        let length = rest.find(|c: char| !keep(c)).unwrap_or(rest.len());
        self.at += length;
        &rest[..length]
    }

    /// The next token as the user wrote it, for error messages: a word, a quoted string, a
    /// run of operator characters, or else a single character.
    fn peek_token(&self) -> Option<String> {
        let rest = self.rest();
        let first = rest.chars().next()?;
        let length = if is_bare_value_char(first) || is_key_char(first) {
            rest.find(|c: char| !(is_bare_value_char(c) || is_key_char(c))).unwrap_or(rest.len())
        } else if is_operator_char(first) {
            rest.find(|c: char| !is_operator_char(c)).unwrap_or(rest.len())
        } else if matches!(first, '\'' | '"' | '`') {
            quoted_length(rest).unwrap_or(rest.len())
        } else {
            first.len_utf8()
        };
        Some(rest[..length].to_string())
    }

    /// An error naming whatever comes next, or the end of the text.
    fn unexpected(&self, expected: &str) -> SyntaxError {
        match self.peek_token() {
            Some(token) => SyntaxError::near(token, format!("expected {expected}")),
            None => SyntaxError::plain(format!("unexpected end of input, expected {expected}")),
        }
    }

    /// Like `unexpected`, for a word that has already been consumed.
    fn unexpected_before(&self, word: &str, expected: &str) -> SyntaxError {
        if word.is_empty() {
            self.unexpected(expected)
        } else {
            SyntaxError::near(word, format!("expected {expected}"))
        }
    }

    /// OR and parentheses are common in SQL but absent from MLflow's grammar; saying so beats
    /// a generic "unexpected token".
    fn reject_unsupported_syntax(&self) -> Parsed<()> {
        match self.peek_token() {
            Some(token) if token == "(" || token == ")" => Err(SyntaxError::near(
                token,
                "parentheses are not supported; join clauses with AND",
            )),
            Some(token) if token.eq_ignore_ascii_case("or") => {
                Err(SyntaxError::near(token, "OR is not supported; join clauses with AND"))
            }
            _ => Ok(()),
        }
    }

    fn clause(&mut self) -> Parsed<Clause> {
        self.skip_whitespace();
        self.reject_unsupported_syntax()?;
        let subject = self.subject()?;
        let (operator, operator_text, value, value_text) = self.operator_and_value()?;
        let comparison = typed_comparison(&subject, operator, operator_text, value, value_text)?;
        Ok(Clause { subject, comparison })
    }

    /// What follows a clause's key: the operator and the value, each with its text as written.
    fn operator_and_value(&mut self) -> Parsed<(Operator, &'text str, RawValue, &'text str)> {
        self.skip_whitespace();
        let (operator, operator_text) = self.operator()?;
        self.skip_whitespace();
        let value_start = self.at;
        let value = self.value()?;
        Ok((operator, operator_text, value, &self.text[value_start..self.at]))
    }

    /// `<entity>.<key>`, the key either a plain word (dots allowed) or quoted.
    fn subject(&mut self) -> Parsed<Subject> {
        let word = self.take_while(is_key_char);
        if word.is_empty() {
            return Err(self.unexpected(SUBJECT_EXAMPLE));
        }
        let Some((entity, plain_key)) = word.split_once('.') else {
            return Err(SyntaxError::near(
                word,
                format!("expected {SUBJECT_EXAMPLE}; a key needs its entity prefix"),
            ));
        };
        let entity = entity.to_ascii_lowercase();
        let make: fn(String) -> Parsed<Subject> = match entity.as_str() {
            "metrics" | "metric" => |key| Ok(Subject::Metric(key)),
            "params" | "param" | "parameters" => |key| Ok(Subject::Param(key)),
            "tags" | "tag" => |key| Ok(Subject::Tag(key)),
            "attributes" | "attribute" | "attr" | "run" => |key| {
                Attribute::from_name(&key).map(Subject::Attribute).ok_or_else(|| {
                    SyntaxError::plain(format!(
                        "unknown attribute '{key}'; expected one of {ATTRIBUTE_NAMES}"
                    ))
                })
            },
            _ => {
                return Err(SyntaxError::plain(format!(
                    "unknown entity '{entity}' in '{word}'; \
                     expected metrics, params, tags or attributes"
                )));
            }
        };
        if !plain_key.is_empty() {
            return make(plain_key.to_string());
        }
        let key = match self.peek() {
            Some('`') => self.backticked()?,
            Some('\'' | '"') => self.quoted()?,
            // Whitespace after the dot would make `params. x` look like a key, so refuse it.
            _ => return Err(SyntaxError::near(word, "expected a key after the entity")),
        };
        if key.is_empty() {
            return Err(SyntaxError::plain(format!("empty key after '{word}'")));
        }
        make(key)
    }

    fn operator(&mut self) -> Parsed<(Operator, &'text str)> {
        const EXPECTED: &str =
            "a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN)";
        let start = self.at;
        let operator = match self.peek() {
            Some(c) if is_operator_char(c) => match self.take_while(is_operator_char) {
                "=" => Operator::Compare(NumericOp::Equal),
                "!=" => Operator::Compare(NumericOp::NotEqual),
                "<" => Operator::Compare(NumericOp::Less),
                "<=" => Operator::Compare(NumericOp::LessOrEqual),
                ">" => Operator::Compare(NumericOp::Greater),
                ">=" => Operator::Compare(NumericOp::GreaterOrEqual),
                other => return Err(SyntaxError::near(other, format!("expected {EXPECTED}"))),
            },
            Some(c) if c.is_alphabetic() => {
                let word = self.take_while(is_key_char);
                if word.eq_ignore_ascii_case("like") {
                    Operator::Like
                } else if word.eq_ignore_ascii_case("ilike") {
                    Operator::ILike
                } else if word.eq_ignore_ascii_case("in") {
                    Operator::In
                } else if word.eq_ignore_ascii_case("not") {
                    self.skip_whitespace();
                    let next = self.take_while(is_key_char);
                    if !next.eq_ignore_ascii_case("in") {
                        return Err(self.unexpected_before(next, "IN after NOT"));
                    }
                    Operator::NotIn
                } else {
                    return Err(SyntaxError::near(word, format!("expected {EXPECTED}")));
                }
            }
            _ => return Err(self.unexpected(EXPECTED)),
        };
        Ok((operator, &self.text[start..self.at]))
    }

    fn value(&mut self) -> Parsed<RawValue> {
        match self.peek() {
            Some('\'' | '"') => self.quoted().map(RawValue::Quoted),
            Some('(') => self.list().map(RawValue::List),
            Some(c) if is_bare_value_char(c) => {
                Ok(RawValue::Bare(self.take_while(is_bare_value_char).to_string()))
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    /// `('a', "b", ...)`: at least one quoted string.
    fn list(&mut self) -> Parsed<Vec<String>> {
        self.at += '('.len_utf8();
        let mut items = Vec::new();
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some('\'' | '"') => items.push(self.quoted()?),
                _ => return Err(self.unexpected("a quoted string in the list")),
            }
            self.skip_whitespace();
            match self.peek() {
                Some(',') => self.at += ','.len_utf8(),
                Some(')') => {
                    self.at += ')'.len_utf8();
                    return Ok(items);
                }
                _ => return Err(self.unexpected("',' or ')' in the list")),
            }
        }
    }

    /// A string in single or double quotes, in which a backslash escapes the next character.
    fn quoted(&mut self) -> Parsed<String> {
        let rest = self.rest();
        let Some(length) = quoted_length(rest) else {
            return Err(SyntaxError::near(rest, "unterminated string"));
        };
        let mut value = String::new();
        let mut chars = rest[1..length - 1].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                other => value.push(other),
            }
        }
        self.at += length;
        Ok(value)
    }

    /// A key in backticks, taken literally as MLflow does.
    fn backticked(&mut self) -> Parsed<String> {
        let rest = self.rest();
        let Some(length) = quoted_length(rest) else {
            return Err(SyntaxError::near(rest, "unterminated backticked key"));
        };
        self.at += length;
        Ok(rest[1..length - 1].to_string())
    }
}

/// The byte length of the quoted token at the start of `text`, quotes included, or `None` if it
/// is never closed. Backslashes escape inside single and double quotes but not backticks.
fn quoted_length(text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    let (_, quote) = chars.next()?;
    while let Some((index, c)) = chars.next() {
        if c == quote {
            return Some(index + c.len_utf8());
        }
        if c == '\\' && quote != '`' {
            chars.next();
        }
    }
    None
}

/// Checks a clause's operator and value against its subject's type and builds the comparison.
fn typed_comparison(
    subject: &Subject,
    operator: Operator,
    operator_text: &str,
    value: RawValue,
    value_text: &str,
) -> Parsed<Comparison> {
    if subject.is_numeric() {
        let Operator::Compare(op) = operator else {
            return Err(SyntaxError::near(
                operator_text,
                format!("{subject} is numeric; use =, !=, <, <=, > or >="),
            ));
        };
        let RawValue::Bare(text) = value else {
            return Err(SyntaxError::near(
                value_text,
                format!("{subject} must be compared with a number, not a string"),
            ));
        };
        return parse_number(&text)
            .map(|number| Comparison::Number(op, number))
            .ok_or_else(|| SyntaxError::near(text, format!("expected a number for {subject}")));
    }
    let is_run_id = *subject == Subject::Attribute(Attribute::RunId);
    let text_operators =
        if is_run_id { "=, !=, LIKE, ILIKE, IN or NOT IN" } else { "=, !=, LIKE or ILIKE" };
    match (operator, value) {
        (Operator::Compare(_) | Operator::Like | Operator::ILike, RawValue::Quoted(text)) => {
            text_comparison(operator, text).ok_or_else(|| {
                SyntaxError::near(
                    operator_text,
                    format!("{subject} is a string; use {text_operators}"),
                )
            })
        }
        (Operator::In | Operator::NotIn, _) if !is_run_id => Err(SyntaxError::near(
            operator_text,
            format!("IN and NOT IN apply only to attributes.run_id, not to {subject}"),
        )),
        (Operator::In, RawValue::List(items)) => Ok(Comparison::Text(TextCondition::In(items))),
        (Operator::NotIn, RawValue::List(items)) => {
            Ok(Comparison::Text(TextCondition::NotIn(items)))
        }
        (Operator::In | Operator::NotIn, _) => Err(SyntaxError::near(
            value_text,
            format!("{operator_text} needs a parenthesized list such as ('id1', 'id2')"),
        )),
        (Operator::Compare(NumericOp::Equal | NumericOp::NotEqual), _)
        | (Operator::Like | Operator::ILike, _) => {
            Err(SyntaxError::near(value_text, format!("expected a quoted string for {subject}")))
        }
        (Operator::Compare(_), _) => Err(SyntaxError::near(
            operator_text,
            format!("{subject} is a string; use {text_operators}"),
        )),
    }
}

/// The string comparisons `=`, `!=`, `LIKE` and `ILIKE` against a quoted value; `None` for any
/// other operator.
fn text_comparison(operator: Operator, text: String) -> Option<Comparison> {
    Some(Comparison::Text(match operator {
        Operator::Compare(NumericOp::Equal) => TextCondition::Equal(text),
        Operator::Compare(NumericOp::NotEqual) => TextCondition::NotEqual(text),
        Operator::Like => TextCondition::Like(LikePattern::compile(&text)),
        Operator::ILike => TextCondition::ILike(LikePattern::compile(&text.to_lowercase())),
        _ => return None,
    }))
}

/// Builds a comparison from the value's own type, for callers that know nothing of the
/// subject: a bare number compares numerically, a quoted string as text.
fn untyped_comparison(
    operator: Operator,
    operator_text: &str,
    value: RawValue,
    value_text: &str,
) -> Parsed<Comparison> {
    match (operator, value) {
        (Operator::Compare(op), RawValue::Bare(text)) => parse_number(&text)
            .map(|number| Comparison::Number(op, number))
            .ok_or_else(|| SyntaxError::near(text, "expected a number or a quoted string")),
        (Operator::Compare(_) | Operator::Like | Operator::ILike, RawValue::Quoted(text)) => {
            text_comparison(operator, text).ok_or_else(|| {
                SyntaxError::near(operator_text, "strings compare only with =, !=, LIKE or ILIKE")
            })
        }
        (Operator::In, RawValue::List(items)) => Ok(Comparison::Text(TextCondition::In(items))),
        (Operator::NotIn, RawValue::List(items)) => {
            Ok(Comparison::Text(TextCondition::NotIn(items)))
        }
        (Operator::In | Operator::NotIn, _) => Err(SyntaxError::near(
            value_text,
            format!("{operator_text} needs a parenthesized list such as ('a', 'b')"),
        )),
        (Operator::Like | Operator::ILike, _) => {
            Err(SyntaxError::near(value_text, "expected a quoted string"))
        }
        (Operator::Compare(_), _) => {
            Err(SyntaxError::near(value_text, "expected a number or a quoted string"))
        }
    }
}

/// Splits a filter into its clauses at each top-level AND (not inside quotes), for searches
/// over other things than runs that share this grammar; a blank filter has no clauses.
pub(crate) fn split_clauses(text: &str) -> Result<Vec<String>, ApiError> {
    let mut parser = Parser::new(text);
    let mut clauses = Vec::new();
    let mut clause_start = 0;
    loop {
        parser.skip_whitespace();
        let token_start = parser.at;
        let Some(next) = parser.peek() else {
            break;
        };
        if matches!(next, '\'' | '"' | '`') {
            let Some(length) = quoted_length(parser.rest()) else {
                return Err(filter_error(SyntaxError::near(parser.rest(), "unterminated string")));
            };
            parser.at += length;
        } else if is_bare_value_char(next) || is_key_char(next) {
            let word = parser.take_while(|c| is_bare_value_char(c) || is_key_char(c));
            if word.eq_ignore_ascii_case("and") {
                let clause = text[clause_start..token_start].trim();
                if clause.is_empty() {
                    return Err(filter_error(SyntaxError::near(
                        word,
                        "expected a clause before AND",
                    )));
                }
                clauses.push(clause.to_string());
                clause_start = parser.at;
            }
        } else {
            parser.at += next.len_utf8();
        }
    }
    let last = text[clause_start..].trim();
    if last.is_empty() {
        if clauses.is_empty() {
            return Ok(clauses);
        }
        return Err(filter_error(SyntaxError::plain(
            "unexpected end of input, expected a clause after AND",
        )));
    }
    clauses.push(last.to_string());
    Ok(clauses)
}

/// Reads one clause (as `split_clauses` yields them) into its entity, key and comparison,
/// leaving the caller to decide which entities and keys exist. The entity is `None` for a bare
/// key such as `name`; a key after an entity may be backticked or quoted as in run filters.
pub(crate) fn tokenize_clause(
    clause: &str,
) -> Result<(Option<String>, String, Comparison), ApiError> {
    read_untyped_clause(&mut Parser::new(clause)).map_err(filter_error)
}

fn read_untyped_clause(parser: &mut Parser<'_>) -> Parsed<(Option<String>, String, Comparison)> {
    parser.skip_whitespace();
    parser.reject_unsupported_syntax()?;
    let (entity, key) = match parser.peek() {
        Some('`') => (None, parser.backticked()?),
        Some('\'' | '"') => (None, parser.quoted()?),
        Some(c) if is_key_char(c) => {
            let word = parser.take_while(is_key_char);
            match word.split_once('.') {
                None => (None, word.to_string()),
                Some((entity, "")) => {
                    let key = match parser.peek() {
                        Some('`') => parser.backticked()?,
                        Some('\'' | '"') => parser.quoted()?,
                        _ => {
                            return Err(SyntaxError::near(word, "expected a key after the entity"));
                        }
                    };
                    (Some(entity.to_string()), key)
                }
                Some((entity, key)) => (Some(entity.to_string()), key.to_string()),
            }
        }
        _ => return Err(parser.unexpected("a key")),
    };
    if key.is_empty() {
        return Err(SyntaxError::plain("empty key"));
    }
    let (operator, operator_text, value, value_text) = parser.operator_and_value()?;
    let comparison = untyped_comparison(operator, operator_text, value, value_text)?;
    parser.skip_whitespace();
    if !parser.at_end() {
        parser.reject_unsupported_syntax()?;
        return Err(parser.unexpected("AND between clauses"));
    }
    Ok((entity, key, comparison))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::domain::{
        ExperimentId, LifecycleStage, Metric, Param, RunData, RunId, RunInfo, RunStatus, Tag,
    };

    fn run(id: u8, start_time_ms: i64) -> Run {
        let mut bytes = [0u8; 16];
        bytes[15] = id;
        Run {
            info: RunInfo {
                run_id: RunId(bytes),
                experiment_id: ExperimentId(0),
                run_name: format!("run-{id}"),
                user_id: "alice".to_string(),
                status: RunStatus::Finished,
                start_time_ms,
                end_time_ms: Some(start_time_ms + 1000),
                lifecycle_stage: LifecycleStage::Active,
                artifact_uri: format!("s3://bucket/runs/{id}"),
            },
            data: RunData::default(),
        }
    }

    fn id_of(id: u8) -> String {
        run(id, 0).info.run_id.to_string()
    }

    fn with_metric(mut run: Run, key: &str, value: f64) -> Run {
        run.data.latest_metrics.push(Metric {
            key: key.to_string(),
            value,
            timestamp_ms: 0,
            step: 0,
        });
        run
    }

    fn with_param(mut run: Run, key: &str, value: &str) -> Run {
        run.data.params.push(Param { key: key.to_string(), value: value.to_string() });
        run
    }

    fn with_tag(mut run: Run, key: &str, value: &str) -> Run {
        run.data.tags.push(Tag { key: key.to_string(), value: value.to_string() });
        run
    }

    fn matches(filter: &str, run: &Run) -> bool {
        Filter::parse(filter).unwrap_or_else(|error| panic!("{filter:?}: {error}")).matches(run)
    }

    /// Asserts the filter is refused as invalid and returns the message.
    fn filter_error(filter: &str) -> String {
        match Filter::parse(filter) {
            Err(ApiError::InvalidArgument(message)) => {
                assert!(message.starts_with("invalid filter"), "{filter:?}: {message}");
                message
            }
            Err(other) => panic!("{filter:?}: wrong error kind {other:?}"),
            Ok(parsed) => panic!("{filter:?} should be refused, got {parsed:?}"),
        }
    }

    fn assert_filter_error(filter: &str, fragments: &[&str]) {
        let message = filter_error(filter);
        for fragment in fragments {
            assert!(message.contains(fragment), "{filter:?}: {message:?} lacks {fragment:?}");
        }
    }

    fn order_by(clauses: &[&str]) -> OrderBy {
        let clauses: Vec<String> = clauses.iter().map(|c| c.to_string()).collect();
        OrderBy::parse(&clauses).unwrap_or_else(|error| panic!("{clauses:?}: {error}"))
    }

    fn order_by_error(clause: &str) -> String {
        match OrderBy::parse(&[clause.to_string()]) {
            Err(ApiError::InvalidArgument(message)) => {
                assert!(
                    message.starts_with(&format!("invalid order_by clause '{clause}': ")),
                    "{message}"
                );
                message
            }
            Err(other) => panic!("{clause:?}: wrong error kind {other:?}"),
            Ok(parsed) => panic!("{clause:?} should be refused, got {parsed:?}"),
        }
    }

    fn sorted_ids(order: &OrderBy, mut runs: Vec<Run>) -> Vec<u8> {
        order.sort(&mut runs);
        runs.iter().map(|run| run.info.run_id.0[15]).collect()
    }

    // --- filters: basics -------------------------------------------------------------------

    #[test]
    fn blank_filters_match_everything() {
        let plain = run(1, 0);
        for blank in ["", " ", "\t\n  "] {
            assert!(matches(blank, &plain), "{blank:?}");
        }
        assert!(Filter::default().matches(&plain));
    }

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
    fn missing_metric_param_or_tag_never_matches() {
        let bare = run(1, 0);
        for filter in [
            "metrics.rmse = 1",
            "metrics.rmse != 1",
            "metrics.rmse < 1",
            "metrics.rmse >= 1",
            "params.lr = '0.1'",
            "params.lr != '0.1'",
            "params.lr LIKE '%'",
            "tags.team != 'x'",
            "tags.team ILIKE '%'",
        ] {
            assert!(!matches(filter, &bare), "{filter}");
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
    fn metrics_use_the_matching_key_only() {
        let r = with_metric(with_metric(run(1, 0), "a", 1.0), "b", 2.0);
        assert!(matches("metrics.a = 1 AND metrics.b = 2", &r));
        assert!(!matches("metrics.a = 2", &r));
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
    fn params_compare_as_strings_even_when_numeric() {
        let r = with_param(run(1, 0), "lr", "0.10");
        assert!(matches("params.lr = '0.10'", &r));
        assert!(!matches("params.lr = '0.1'", &r));
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

    // --- strings and LIKE ----------------------------------------------------------------

    #[test]
    fn string_escapes() {
        let r = with_param(with_param(run(1, 0), "q", "it's \"quoted\""), "path", r"C:\data");
        assert!(matches(r#"params.q = 'it\'s "quoted"'"#, &r));
        assert!(matches(r#"params.q = "it's \"quoted\"""#, &r));
        assert!(matches(r"params.path = 'C:\\data'", &r));
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

    // --- attributes ----------------------------------------------------------------------

    #[test]
    fn string_attributes() {
        let r = run(7, 1000);
        let id = id_of(7);
        let cases = [
            (format!("attributes.run_id = '{id}'"), true),
            (format!("attributes.run_id != '{id}'"), false),
            ("attributes.run_id LIKE '%07'".to_string(), true),
            ("attributes.run_name = 'run-7'".to_string(), true),
            ("attributes.run_name LIKE 'run-_'".to_string(), true),
            ("attributes.run_name ILIKE 'RUN-%'".to_string(), true),
            ("attributes.run_name != 'run-7'".to_string(), false),
            ("attributes.status = 'FINISHED'".to_string(), true),
            ("attributes.status != 'RUNNING'".to_string(), true),
            ("attributes.status = 'finished'".to_string(), false),
            ("attributes.status ILIKE 'finished'".to_string(), true),
            ("attributes.user_id = 'alice'".to_string(), true),
            ("attributes.user_id LIKE 'b%'".to_string(), false),
            ("attributes.artifact_uri LIKE 's3://bucket/%'".to_string(), true),
            ("attributes.artifact_uri = 's3://bucket/runs/7'".to_string(), true),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(&filter, &r), expected, "{filter}");
        }
    }

    #[test]
    fn time_attributes() {
        let r = run(1, 1_700_000_000_000);
        let cases = [
            ("attributes.start_time = 1700000000000", true),
            ("attributes.start_time != 1700000000000", false),
            ("attributes.start_time > 1699999999999", true),
            ("attributes.start_time >= 1700000000001", false),
            ("attributes.start_time < 1700000000001", true),
            ("attributes.start_time <= 1699999999999", false),
            ("attributes.end_time = 1700000001000", true),
            ("attributes.end_time > 1700000000000", true),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(filter, &r), expected, "{filter}");
        }
    }

    #[test]
    fn running_runs_have_no_end_time() {
        let mut r = run(1, 1000);
        r.info.end_time_ms = None;
        r.info.status = RunStatus::Running;
        for filter in
            ["attributes.end_time > 0", "attributes.end_time != 5", "attributes.end_time < 1e18"]
        {
            assert!(!matches(filter, &r), "{filter}");
        }
        assert!(matches("attributes.status = 'RUNNING' AND attributes.start_time = 1000", &r));
    }

    #[test]
    fn camel_case_attribute_aliases() {
        let r = run(3, 500);
        assert!(matches("attributes.runName = 'run-3'", &r));
        assert!(matches("attributes.startTime = 500", &r));
        assert!(matches("attributes.endTime = 1500", &r));
        assert!(matches("attributes.userId = 'alice'", &r));
        assert!(matches(&format!("attributes.runId = '{}'", id_of(3)), &r));
        assert!(matches("attributes.artifactUri LIKE '%/3'", &r));
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

    // --- order_by ------------------------------------------------------------------------

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

    // --- helpers shared with experiment search -------------------------------------------

    #[test]
    fn split_clauses_splits_at_top_level_and_only() {
        assert!(split_clauses("").expect("blank").is_empty());
        assert!(split_clauses("   ").expect("blank").is_empty());
        assert_eq!(
            split_clauses("name = 'a AND b' and tags.`x and y` LIKE '%' AND creation_time > 5")
                .expect("valid"),
            ["name = 'a AND b'", "tags.`x and y` LIKE '%'", "creation_time > 5"]
        );
        assert_eq!(split_clauses("tags.brand = 'x'").expect("valid"), ["tags.brand = 'x'"]);
        for (bad, fragment) in [
            ("name = 'a' AND", "after AND"),
            ("AND name = 'a'", "near 'AND'"),
            ("name = 'a' AND and name = 'b'", "near 'and'"),
            ("name = 'a", "near ''a'"),
        ] {
            match split_clauses(bad) {
                Err(ApiError::InvalidArgument(message)) => {
                    assert!(message.starts_with("invalid filter"), "{message}");
                    assert!(message.contains(fragment), "{bad:?}: {message:?}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn tokenize_clause_reads_entity_key_and_comparison() {
        let (entity, key, comparison) = tokenize_clause("name LIKE 'exp%'").expect("valid");
        assert_eq!((entity, key.as_str()), (None, "name"));
        assert!(!comparison.is_numeric());
        assert!(comparison.matches_text("exp-1"));
        assert!(!comparison.matches_text("Exp-1"));
        assert!(!comparison.matches_number(1.0));

        let (entity, key, comparison) =
            tokenize_clause("  attributes.creation_time >= 100 ").expect("valid");
        assert_eq!((entity.as_deref(), key.as_str()), (Some("attributes"), "creation_time"));
        assert!(comparison.is_numeric());
        assert!(comparison.matches_number(100.0));
        assert!(!comparison.matches_number(99.0));
        assert!(!comparison.matches_text("100"));

        let (entity, key, _) = tokenize_clause("tags.mlflow.note = 'x'").expect("valid");
        assert_eq!((entity.as_deref(), key.as_str()), (Some("tags"), "mlflow.note"));
        let (entity, key, comparison) = tokenize_clause("tags.`my tag` ILIKE 'A%'").expect("valid");
        assert_eq!((entity.as_deref(), key.as_str()), (Some("tags"), "my tag"));
        assert!(comparison.matches_text("abc"));
        let (entity, key, comparison) = tokenize_clause("`odd key` != \"v\"").expect("valid");
        assert_eq!((entity, key.as_str()), (None, "odd key"));
        assert!(comparison.matches_text("w"));

        for (bad, fragment) in [
            ("name", "end of input"),
            ("name < 'b'", "near '<'"),
            ("name = b", "near 'b'"),
            ("name LIKE 5", "near '5'"),
            ("name IN 'a'", "near ''a''"),
            ("name = 'a' OR name = 'b'", "near 'OR'"),
            ("name = 'a' extra", "near 'extra'"),
            ("tags. = 'a'", "near 'tags.'"),
            ("(name = 'a')", "near '('"),
        ] {
            match tokenize_clause(bad) {
                Err(ApiError::InvalidArgument(message)) => {
                    assert!(message.starts_with("invalid filter"), "{message}");
                    assert!(message.contains(fragment), "{bad:?}: {message:?}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
