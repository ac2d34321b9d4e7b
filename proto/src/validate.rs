//! Rules for the keys and values users log, the same as MLflow's so that scripts written for
//! MLflow are accepted and refused alike.

use crate::error::ApiError;

pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
pub const MAX_TAG_VALUE_LEN: usize = 8000;

/// Checks a metric, param or tag key: 1 to 250 characters of letters, digits, `_`, `-`, `.`,
/// space and `/`, with no `..`, no empty path component and no leading `/`.
pub fn key(kind: &str, key: &str) -> Result<(), ApiError> {
    let invalid =
        |why: &str| ApiError::InvalidArgument(format!("invalid {kind} name '{key}': {why}"));
    if key.is_empty() {
        return Err(ApiError::InvalidArgument(format!("{kind} name must not be empty")));
    }
    let length = key.chars().count();
    if length > MAX_KEY_LEN {
        return Err(invalid(&format!("{length} characters long; the limit is {MAX_KEY_LEN}")));
    }
    if let Some(bad) =
        key.chars().find(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/')))
    {
        return Err(invalid(&format!(
            "'{}' is not allowed; names may contain letters, digits, '_', '-', '.', ' ' and '/'",
            bad.escape_default()
        )));
    }
    if key.contains("..") {
        return Err(invalid("'..' is not allowed"));
    }
    if key.starts_with('/') {
        return Err(invalid("it must not start with '/'"));
    }
    if key.split('/').any(|component| component.is_empty() || component == ".") {
        return Err(invalid("it must be a normalized relative path"));
    }
    Ok(())
}

/// Whether a character may rewrite a terminal or reorder the text around it: control
/// characters (ESC, CR, NUL, ...) and the bidirectional overrides and isolates.
pub fn is_unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Checks a name people read in listings (an experiment's, a run's): no character that could
/// rewrite the terminal showing it, and at most `limit` characters.
pub fn name(kind: &str, name: &str, limit: usize) -> Result<(), ApiError> {
    if let Some(bad) = name.chars().find(|c| is_unprintable(*c)) {
        return Err(ApiError::InvalidArgument(format!(
            "{kind} '{}' holds the control character {}; names are plain text",
            name.escape_default(),
            bad.escape_unicode()
        )));
    }
    let length = name.chars().count();
    if length > limit {
        return Err(ApiError::InvalidArgument(format!(
            "{kind} is {length} characters long; the limit is {limit}"
        )));
    }
    Ok(())
}

/// Checks a tag: its key, its value's length, and (over a list) that no key comes twice.
pub fn tags<'a>(tags: impl IntoIterator<Item = &'a crate::domain::Tag>) -> Result<(), ApiError> {
    let mut seen = std::collections::HashSet::new();
    for tag in tags {
        key("tag", &tag.key)?;
        value("tag", &tag.key, &tag.value, MAX_TAG_VALUE_LEN)?;
        if !seen.insert(tag.key.as_str()) {
            return Err(ApiError::InvalidArgument(format!(
                "tag '{}' is given twice; give each key once",
                tag.key
            )));
        }
    }
    Ok(())
}

pub fn value(kind: &str, key: &str, value: &str, limit: usize) -> Result<(), ApiError> {
    let length = value.chars().count();
    if length > limit {
        return Err(ApiError::InvalidArgument(format!(
            "value of {kind} '{key}' is {length} characters long; the limit is {limit}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{key, name};

    #[test]
    fn names_hold_no_terminal_controls() {
        for bad in ["a\u{1b}[2Jb", "line\rover", "nul\0", "evil\u{202e}txt.exe", "tab\there"] {
            assert!(name("experiment name", bad, 500).is_err(), "{bad:?}");
        }
        assert!(name("experiment name", "école / run-1 (β)", 500).is_ok());
        assert!(name("run name", &"n".repeat(501), 500).is_err());
    }

    #[test]
    fn keys_follow_mlflow_rules() {
        for good in ["rmse", "train/loss", "a b", "x-y_z.1", "ünïcode"] {
            assert!(key("metric", good).is_ok(), "{good}");
        }
        for bad in
            ["", "../x", "a/../b", "/abs", "a//b", "a/", "./a", "semi;colon", "nul\0", "a..b"]
        {
            assert!(key("metric", bad).is_err(), "{bad:?}");
        }
        assert!(key("metric", &"k".repeat(251)).is_err());
    }
}
