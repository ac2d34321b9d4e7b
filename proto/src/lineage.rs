//! Lineage: what differs between two runs, from what each recorded (parameters, data digests,
//! image, command, environment, final metrics) and from their snapshots compared file by file.
//! `drover runs diff` and the web UI's diff page both print this one answer.

use std::collections::BTreeSet;

use drover_project::compare::CodeDiff;
use serde::Serialize;

use crate::domain::Run;
use crate::tags;

/// A value on each side; `None` where a run has none.
#[derive(Debug, Serialize, PartialEq)]
pub struct Change {
    pub key: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MetricChange {
    pub key: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// b - a, where both have the metric.
    pub delta: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CodeSection {
    pub snapshot_a: Option<String>,
    pub snapshot_b: Option<String>,
    #[serde(flatten)]
    pub files: CodeDiff,
}

/// Everything `runs diff` finds, in the order it prints it.
#[derive(Debug, Serialize)]
pub struct RunDiff {
    pub run_a: String,
    pub run_b: String,
    /// Same code, parameters, data, image, command and environment.
    pub matches: bool,
    pub code: CodeSection,
    pub parameters: Vec<Change>,
    pub data: Vec<Change>,
    pub image: Vec<Change>,
    pub command: Vec<Change>,
    pub environment: Vec<Change>,
    pub metrics: Vec<MetricChange>,
}

/// The two snapshots to compare file by file, when the runs have different ones.
pub fn snapshots_to_compare(a: &Run, b: &Run) -> Option<(String, String)> {
    match (a.tag(tags::SNAPSHOT), b.tag(tags::SNAPSHOT)) {
        (Some(x), Some(y)) if x != y => Some((x.to_string(), y.to_string())),
        _ => None,
    }
}

/// The code section of a diff, given the file comparison of its snapshots (empty when they
/// are the same).
pub fn code_section(a: &Run, b: &Run, files: CodeDiff) -> CodeSection {
    CodeSection {
        snapshot_a: a.tag(tags::SNAPSHOT).map(str::to_string),
        snapshot_b: b.tag(tags::SNAPSHOT).map(str::to_string),
        files,
    }
}

/// Every key either run has under `prefix` among its tags, with each side's value, where
/// they differ.
fn tag_changes(a: &Run, b: &Run, keep: impl Fn(&str) -> Option<String>) -> Vec<Change> {
    let keys: BTreeSet<(String, String)> = a
        .data
        .tags
        .iter()
        .chain(&b.data.tags)
        .filter_map(|tag| keep(&tag.key).map(|label| (label, tag.key.clone())))
        .collect();
    keys.into_iter()
        .map(|(label, key)| Change {
            key: label,
            a: a.tag(&key).map(str::to_string),
            b: b.tag(&key).map(str::to_string),
        })
        .filter(|change| change.a != change.b)
        .collect()
}

pub fn run_diff(a: &Run, b: &Run, code: CodeSection) -> RunDiff {
    let params: BTreeSet<&str> =
        a.data.params.iter().chain(&b.data.params).map(|param| param.key.as_str()).collect();
    let param = |run: &Run, key: &str| {
        run.data.params.iter().find(|param| param.key == key).map(|param| param.value.clone())
    };
    let parameters: Vec<Change> = params
        .into_iter()
        .map(|key| Change { key: key.to_string(), a: param(a, key), b: param(b, key) })
        .filter(|change| change.a != change.b)
        .collect();
    let data = tag_changes(a, b, |key| {
        tags::parse_data_tag(key).map(|(parameter, fact)| format!("{parameter} {fact}"))
    });
    let image = tag_changes(a, b, |key| {
        [(tags::IMAGE, "image"), (tags::IMAGE_ID, "image id")]
            .iter()
            .find(|(tag, _)| *tag == key)
            .map(|(_, label)| label.to_string())
    });
    let command = tag_changes(a, b, |key| (key == tags::COMMAND).then(|| "command".to_string()));
    let environment =
        tag_changes(a, b, |key| key.strip_prefix(tags::ENV_PREFIX).map(str::to_string));
    let metrics: BTreeSet<&str> = a
        .data
        .latest_metrics
        .iter()
        .chain(&b.data.latest_metrics)
        .map(|metric| metric.key.as_str())
        .collect();
    let metric = |run: &Run, key: &str| {
        run.data.latest_metrics.iter().find(|metric| metric.key == key).map(|metric| metric.value)
    };
    let metrics = metrics
        .into_iter()
        .map(|key| {
            let (x, y) = (metric(a, key), metric(b, key));
            let delta = x.zip(y).map(|(x, y)| y - x);
            MetricChange { key: key.to_string(), a: x, b: y, delta }
        })
        .collect();
    let same_code = code.snapshot_a.is_some() && code.snapshot_a == code.snapshot_b;
    let matches = same_code
        && parameters.is_empty()
        && data.is_empty()
        && image.is_empty()
        && command.is_empty()
        && environment.is_empty();
    RunDiff {
        run_a: a.info.run_id.to_string(),
        run_b: b.info.run_id.to_string(),
        matches,
        code,
        parameters,
        data,
        image,
        command,
        environment,
        metrics,
    }
}
