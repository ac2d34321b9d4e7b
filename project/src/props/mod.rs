//! Property tests of what users hand drover on the command line and in their projects:
//! MLproject and sweep files, `-P` values and command templates, and snapshot archives.
//! `tests/properties.sh` runs them longer.

mod files;
mod params;
mod snapshot;

use proptest::prelude::*;

/// YAML made of the keys and shapes these files use, so arbitrary documents reach deep into
/// their readers: mappings, sequences, flow and block styles, anchors and aliases.
fn yaml_soup(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let key = prop_oneof![proptest::sample::select(keys).prop_map(str::to_string), "[a-z_]{1,6}"];
    let scalar = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-3".to_string()),
        Just("0.5".to_string()),
        Just("1e999".to_string()),
        Just("\"{alpha} {{x}}\"".to_string()),
        Just("'python train.py --alpha {alpha}'".to_string()),
        Just("float".to_string()),
        Just("int".to_string()),
        Just("path".to_string()),
        Just("uniform(0, 1)".to_string()),
        Just("*anchor".to_string()),
        Just("&anchor x".to_string()),
        Just("[a, b, {c: d}]".to_string()),
        Just("{min: 1, max: 0}".to_string()),
        ".{0,12}",
    ];
    let leaf = scalar.prop_map(|text| format!(" {text}\n"));
    leaf.prop_recursive(4, 40, 5, move |inner| {
        proptest::collection::vec((key.clone(), inner, any::<bool>()), 1..5).prop_map(|fields| {
            let mut text = String::from("\n");
            for (key, value, listed) in fields {
                let dash = if listed { "- " } else { "" };
                let nested = value.lines().map(|line| format!("  {line}\n")).collect::<String>();
                text.push_str(&format!(
                    "{dash}{key}:{}",
                    if value.starts_with(' ') { value } else { nested }
                ));
            }
            text
        })
    })
    .prop_map(|text| text.trim_start_matches('\n').to_string())
}
