//! Command templates: `{param}` placeholders filled with shell-quoted values, as MLflow does
//! with Python's `str.format` and `shlex.quote`.

use crate::ProjectError;

/// Quotes `value` for a POSIX shell so that it arrives as one literal word.
pub fn shell_quote(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !value.is_empty() && value.chars().all(safe) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r#"'"'"'"#))
    }
}

/// Replaces each `{name}` in `template` by the quoted value of `name`; `{{` and `}}` are
/// literal braces.
pub fn render_template(
    entry_point: &str,
    template: &str,
    values: &[(String, String)],
) -> Result<String, ProjectError> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => {
                            return Err(ProjectError::Param(format!(
                                "the command of entry point '{entry_point}' has an unclosed '{{'"
                            )));
                        }
                    }
                }
                let name = name.trim();
                let value = values.iter().find(|(key, _)| key == name).map(|(_, value)| value);
                match value {
                    Some(value) => out.push_str(&shell_quote(value)),
                    None => {
                        return Err(ProjectError::Param(format!(
                            "the command of entry point '{entry_point}' uses {{{name}}}, which is not one of its parameters"
                        )));
                    }
                }
            }
            '}' => {
                return Err(ProjectError::Param(format!(
                    "the command of entry point '{entry_point}' has a single '}}'; write '}}}}' for a literal brace"
                )));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_values_literal() {
        assert_eq!(shell_quote("0.5"), "0.5");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("; rm -rf /"), "'; rm -rf /'");
        assert_eq!(shell_quote("$(id)"), "'$(id)'");
        assert_eq!(shell_quote("it's"), r#"'it'"'"'s'"#);
    }

    #[test]
    fn templates_fill_and_escape() {
        let values = vec![("a".to_string(), "x y".to_string())];
        assert_eq!(
            render_template("main", "echo {a} {{literal}}", &values).unwrap(),
            "echo 'x y' {literal}"
        );
        assert!(
            render_template("main", "echo {b}", &values).unwrap_err().to_string().contains("{b}")
        );
        assert!(render_template("main", "echo {a", &values).is_err());
        assert!(render_template("main", "echo }", &values).is_err());
    }
}
