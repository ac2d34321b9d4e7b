//! `-P` values and command templates: arguments split back into the pairs given, parameter
//! domains print and parse back, and a rendered command hands `sh` exactly the values given.

use std::process::Command;

use drover_testkit::{bounded, config};
use proptest::prelude::*;

use crate::command::{render_template, shell_quote};
use crate::params::parse_param_args;
use crate::sweep::Domain;

/// A key as users type it: no `=`, nothing to trim.
fn key() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.-]{0,12}"
}

fn domain() -> impl Strategy<Value = Domain> {
    let finite = || any::<f64>().prop_filter("finite", |value| value.is_finite());
    prop_oneof![
        "[a-z0-9._/]{1,10}".prop_map(Domain::Fixed),
        proptest::collection::vec("[a-z0-9._/]{1,8}", 2..6).prop_map(Domain::Values),
        (finite(), finite()).prop_map(|(low, high)| Domain::Uniform { low, high }),
        (finite(), finite()).prop_map(|(low, high)| Domain::LogUniform { low, high }),
        (any::<i64>(), any::<i64>()).prop_map(|(low, high)| Domain::Int { low, high }),
        (finite(), finite(), finite()).prop_map(|(low, high, q)| Domain::QUniform { low, high, q }),
    ]
    .prop_filter("a valid domain", |domain| domain.check("p").is_ok())
}

/// What `sh` receives as arguments when it runs `command`.
fn words_in_sh(command: &str) -> Vec<String> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("for word in {command}; do printf '%s\\0' \"$word\"; done"))
        .output()
        .expect("sh runs");
    assert!(output.status.success(), "sh refused {command}");
    output
        .stdout
        .split(|byte| *byte == 0)
        .filter(|word| !word.is_empty())
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_arguments_never_panic(args in proptest::collection::vec(".{0,40}", 0..8)) {
        bounded(|| parse_param_args(&args).map(drop).ok());
    }

    #[test]
    fn arguments_split_into_the_pairs_given(
        pairs in proptest::collection::btree_map(key(), ".{0,40}", 0..8),
    ) {
        let args: Vec<String> = pairs.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let parsed = parse_param_args(&args).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let expected: Vec<(String, String)> = pairs.into_iter().collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn a_repeated_key_is_refused(key in key(), first in ".{0,8}", second in ".{0,8}") {
        let args = [format!("{key}={first}"), format!(" {key} ={second}")];
        prop_assert!(parse_param_args(&args).is_err());
    }

    #[test]
    fn arbitrary_domains_never_panic(text in ".{0,80}") {
        bounded(|| Domain::parse("p", &text).map(drop).ok());
    }

    #[test]
    fn domains_print_and_parse_back(domain in domain()) {
        let printed = domain.to_string();
        let parsed = Domain::parse("p", &printed).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(parsed, domain, "{}", printed);
    }

    #[test]
    fn arbitrary_templates_never_panic(template in "[a-z {}]{0,60}", value in ".{0,20}") {
        let values = vec![("a".to_string(), value)];
        bounded(|| render_template("main", &template, &values).map(drop).ok());
    }
}

proptest! {
    // Each case starts a shell.
    #![proptest_config(config(64))]

    #[test]
    fn the_shell_receives_exactly_the_values_given(
        values in proptest::collection::vec("[^\\x00]{0,24}", 1..4),
    ) {
        let named: Vec<(String, String)> =
            values.iter().enumerate().map(|(index, value)| (format!("p{index}"), value.clone())).collect();
        let template = named.iter().map(|(name, _)| format!("{{{name}}}")).collect::<Vec<_>>().join(" ");
        let command = render_template("main", &template, &named)
            .map_err(|error| TestCaseError::fail(error.to_string()))?;
        let expected: Vec<String> = values.iter().filter(|value| !value.is_empty()).cloned().collect();
        let received: Vec<String> = words_in_sh(&command).into_iter().collect();
        prop_assert_eq!(received, expected, "{}", command);
    }

    #[test]
    fn one_quoted_value_is_one_word(value in "[^\\x00]{1,40}") {
        prop_assert_eq!(words_in_sh(&shell_quote(&value)), vec![value]);
    }
}
