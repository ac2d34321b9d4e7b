//! The structure ARCHITECTURE.md promises, checked on the source: the modules inside the
//! scheduler and the worker depend one way (no module both uses and is used by another,
//! directly or around a loop), no source file outside the tests grows past what a reader can
//! hold, and no code but `drover_proto::tags` spells a reserved run tag key.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 800;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A crate's modules by path (`""` for the root, `"store::runs"`), with their source up to
/// their unit tests.
fn modules(src: &Path) -> BTreeMap<String, String> {
    rust_files(src)
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> =
                relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|last| last == "mod" || last == "lib") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_string();
            (parts.join("::"), code)
        })
        .collect()
}

/// The module a path such as `crate::store::Store` or `super::Scheduler` lands in, seen from
/// `module`: the longest prefix that is a module.
fn target(modules: &BTreeMap<String, String>, module: &str, path: &str) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> =
        if module.is_empty() { Vec::new() } else { module.split("::").collect() };
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        Some("self") => {
            segments.remove(0);
        }
        _ => return None,
    }
    (0..=segments.len()).rev().find_map(|length| {
        let mut candidate = base.clone();
        candidate.extend(&segments[..length]);
        let candidate = candidate.join("::");
        modules.contains_key(&candidate).then_some(candidate)
    })
}

/// Which modules each module names in its paths (`crate::`, `super::`, `self::`, and
/// `use child::...` of its own children).
fn dependencies(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (module, code) in modules {
        let mut uses = BTreeSet::new();
        let words: Vec<&str> =
            code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).collect();
        // Paths only: `pub(crate)` names no module.
        for word in words.iter().map(|word| word.trim_end_matches(':')).filter(|w| w.contains("::"))
        {
            if let Some(found) = target(modules, module, word)
                && found != *module
            {
                uses.insert(found);
            }
        }
        for line in code.lines() {
            let line =
                line.trim_start().trim_start_matches("pub ").trim_start_matches("pub(crate) ");
            if let Some(rest) = line.strip_prefix("use ")
                && let Some((first, _)) = rest.trim_start_matches('{').split_once("::")
            {
                let child = if module.is_empty() {
                    first.to_string()
                } else {
                    format!("{module}::{first}")
                };
                if modules.contains_key(&child) {
                    uses.insert(child);
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A loop in the graph, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in &graph[node] {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                1 => {
                    let start = stack.iter().position(|entry| entry == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_scheduler_and_the_worker_have_no_module_cycles() {
    for krate in ["scheduler", "worker"] {
        let modules = modules(&workspace().join(krate).join("src"));
        assert!(modules.len() > 5, "{krate}: no modules found");
        let graph = dependencies(&modules);
        if let Some(cycle) = find_cycle(&graph) {
            let cycle: Vec<&str> =
                cycle.iter().map(|m| if m.is_empty() { "<crate root>" } else { m }).collect();
            panic!("{krate}: modules depend on each other in a loop: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_finds_a_loop_between_neighbours() {
    let modules: BTreeMap<String, String> = [
        (String::new(), "mod a;\nmod b;\n".to_string()),
        ("a".to_string(), "use crate::b::Thing;\n".to_string()),
        ("b".to_string(), "use super::a::Other;\n".to_string()),
    ]
    .into();
    let cycle = find_cycle(&dependencies(&modules)).expect("a loop");
    assert_eq!(cycle.len(), 3, "{cycle:?}");
}

#[test]
fn no_source_file_outside_the_tests_is_too_long_to_hold() {
    let mut long = Vec::new();
    for krate in ["proto", "project", "scheduler", "worker", "cli", "bench"] {
        for file in rust_files(&workspace().join(krate).join("src")) {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these along their seams: {long:?}");
}

#[test]
fn reserved_tag_keys_are_spelled_only_in_drover_proto_tags() {
    let tags_module = std::fs::read_to_string(workspace().join("proto/src/tags.rs")).unwrap();
    let keys: Vec<&str> = tags_module
        .lines()
        .filter_map(|line| line.strip_prefix("pub const "))
        .filter_map(|line| line.split('"').nth(1))
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    let mut spelled = Vec::new();
    for krate in ["proto", "scheduler", "worker", "cli"] {
        for file in rust_files(&workspace().join(krate).join("src")) {
            if file.ends_with("proto/src/tags.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            // Container labels share a name with one tag; they are labels, not tags.
            let code: String = code
                .lines()
                .filter(|line| !line.contains("_LABEL: &str"))
                .collect::<Vec<_>>()
                .join("\n");
            for key in &keys {
                if code.contains(&format!("\"{key}\"")) {
                    spelled.push(format!("{}: \"{key}\"", file.display()));
                }
            }
        }
    }
    assert!(spelled.is_empty(), "use the constants of drover_proto::tags: {spelled:?}");
}
