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
    use super::key;

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
