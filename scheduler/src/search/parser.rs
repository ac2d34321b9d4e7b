//! The parser of the search grammar: a cursor over the text, its tokens, syntax errors and their
//! wording, and the reading of filters, order_by clauses and the untyped clauses of other searches.

use drover_proto::ApiError;

use super::clause::{Clause, Comparison, NumericOp, TextCondition};
use super::like::LikePattern;
use super::order::SortClause;
use super::subject::{ATTRIBUTE_NAMES, Attribute, Subject};

/// A parse failure before it is worded for a filter or an order_by clause.
#[derive(Debug)]
pub(super) struct SyntaxError {
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

/// Largest filter accepted, in bytes, and the most clauses it may join: room for any search
/// a person writes or a page builds (a few hundred run IDs in an IN list), and a bound on the
/// work one request can ask of the scheduler.
pub(super) const MAX_FILTER_BYTES: usize = 64 << 10;
pub(super) const MAX_FILTER_CLAUSES: usize = 100;
/// The most order_by clauses, and the longest one, in bytes.
pub(super) const MAX_ORDER_BY_CLAUSES: usize = 10;
pub(super) const MAX_ORDER_BY_BYTES: usize = 1_000;

/// Refuses a filter too long to be worth reading.
pub(super) fn check_filter_size(text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "the filter is {} bytes; filters may be at most {MAX_FILTER_BYTES} bytes",
            text.len()
        )));
    }
    Ok(())
}

/// Refuses a filter of more clauses than a search may join.
pub(super) fn check_clause_count(count: usize) -> Result<(), ApiError> {
    if count > MAX_FILTER_CLAUSES {
        return Err(ApiError::InvalidArgument(format!(
            "the filter joins {count} clauses; a filter may join at most {MAX_FILTER_CLAUSES}"
        )));
    }
    Ok(())
}

/// Refuses more order_by clauses, or a longer one, than a search sorts by.
pub(super) fn check_order_by_size(clauses: &[String]) -> Result<(), ApiError> {
    if clauses.len() > MAX_ORDER_BY_CLAUSES {
        return Err(ApiError::InvalidArgument(format!(
            "{} order_by clauses given; a search sorts by at most {MAX_ORDER_BY_CLAUSES}",
            clauses.len()
        )));
    }
    if let Some(long) = clauses.iter().find(|clause| clause.len() > MAX_ORDER_BY_BYTES) {
        return Err(ApiError::InvalidArgument(format!(
            "an order_by clause is {} bytes; clauses may be at most {MAX_ORDER_BY_BYTES} bytes",
            long.len()
        )));
    }
    Ok(())
}

pub(super) fn filter_error(error: SyntaxError) -> ApiError {
    ApiError::InvalidArgument(match error.near {
        Some(token) => format!("invalid filter near '{token}': {}", error.reason),
        None => format!("invalid filter: {}", error.reason),
    })
}

pub(super) fn order_by_error(clause: &str, error: SyntaxError) -> ApiError {
    ApiError::InvalidArgument(match error.near {
        Some(token) => {
            format!("invalid order_by clause '{clause}': {} (near '{token}')", error.reason)
        }
        None => format!("invalid order_by clause '{clause}': {}", error.reason),
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

pub(super) fn parse_clauses(text: &str) -> Parsed<Vec<Clause>> {
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

pub(super) fn parse_sort_clause(text: &str) -> Parsed<SortClause> {
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
        (Operator::In, RawValue::List(items)) => {
            Ok(Comparison::Text(TextCondition::In(items.into_iter().collect())))
        }
        (Operator::NotIn, RawValue::List(items)) => {
            Ok(Comparison::Text(TextCondition::NotIn(items.into_iter().collect())))
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
        (Operator::In, RawValue::List(items)) => {
            Ok(Comparison::Text(TextCondition::In(items.into_iter().collect())))
        }
        (Operator::NotIn, RawValue::List(items)) => {
            Ok(Comparison::Text(TextCondition::NotIn(items.into_iter().collect())))
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
pub(super) fn split_clauses(text: &str) -> Result<Vec<String>, ApiError> {
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
pub(super) fn tokenize_clause(
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
