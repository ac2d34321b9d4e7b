//! What a worker records of a run's inputs as it starts it: the digests of the data outside
//! the project its path parameters name (read here, where the run reads them, with a cache in
//! the work directory), the environment variables it passes (the value of a secret-looking
//! name left out), and drover's version; and, for a rerun, whether its data is still what
//! the original run read.

use std::path::Path;

use drover_project::digest::{DataKind, DigestCache, digest_path};
use drover_project::{Invocation, MlProject};
use drover_proto::domain::Tag;
use drover_proto::execution::RunSpec;
use drover_proto::tags;

/// Tags to record with the run's start, and lines to write into its log first.
#[derive(Debug, Default)]
pub struct Lineage {
    pub tags: Vec<Tag>,
    pub notes: Vec<String>,
}

/// Reads what the run is about to use, in `run_dir` (its copy of the project) and on this
/// machine. Fails only for a strict rerun whose data changed.
pub fn record(
    work_dir: &Path,
    run_dir: &Path,
    project: &MlProject,
    invocation: &Invocation,
    spec: &RunSpec,
    environment: &[(String, String)],
) -> Result<Lineage, String> {
    let mut lineage = Lineage::default();
    lineage.tags.push(Tag::new(tags::VERSION, env!("CARGO_PKG_VERSION")));
    for (name, value) in environment {
        let value = if tags::looks_secret(name) { tags::ENV_REDACTED } else { value };
        lineage.tags.push(Tag::new(tags::env(name), value));
    }
    let expected = spec.expect.as_ref();
    let mut cache: Option<DigestCache> = None;
    for param in project.data_params(&invocation.entry_point, &invocation.params) {
        if !tags::data_tags_fit(&param.name) {
            continue;
        }
        lineage.tags.push(Tag::new(tags::data_source(&param.name), &param.value));
        let path = match param.kind {
            DataKind::Uri => continue,
            // The run's own copy, as the snapshot made it: not cached, as every attempt has
            // its own directory (and the files were just written).
            DataKind::ProjectPath => Some(run_dir.join(&param.value)),
            DataKind::HostPath => spec.data_path(&param.value),
        };
        let Some(path) = path else {
            lineage.notes.push(format!(
                "data parameter '{}' ({}) is under no bind mount: it is in the image (pinned by its id) or a named volume, and is not digested",
                param.name, param.value
            ));
            continue;
        };
        let mut scratch = DigestCache::in_memory();
        let cache = match param.kind {
            DataKind::ProjectPath => &mut scratch,
            _ => cache.get_or_insert_with(|| DigestCache::open(&work_dir.join("digests"))),
        };
        let started = std::time::Instant::now();
        let digest = match digest_path(&path, cache) {
            Ok(digest) => {
                lineage.notes.push(digest.summary(&param.name, started.elapsed()));
                digest.digest
            }
            Err(error) => {
                lineage.notes.push(format!("data parameter '{}': {error}", param.name));
                String::new()
            }
        };
        if !digest.is_empty() {
            lineage.tags.push(Tag::new(tags::data_digest(&param.name), &digest));
        }
        let Some(expected) = expected else { continue };
        let Some((_, before)) = expected.data.iter().find(|(name, _)| *name == param.name) else {
            continue;
        };
        if *before != digest {
            let now = if digest.is_empty() { "unreadable" } else { digest.as_str() };
            let note = format!(
                "data parameter '{}' ({}) differs from the run this reruns: {before} then, {now} now",
                param.name, param.value
            );
            if expected.strict {
                return Err(format!("{note}; a strict rerun does not start"));
            }
            lineage.notes.push(note);
        }
    }
    if let Some(cache) = &mut cache
        && let Err(error) = cache.save()
    {
        tracing::warn!(%error, "cannot keep the data digest cache");
    }
    Ok(lineage)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use drover_project::PathCheck;
    use drover_project::snapshot::SnapshotDigest;
    use drover_proto::execution::EnvManager;
    use drover_proto::execution::Expectation;

    use super::*;

    #[test]
    fn a_docker_run_reads_its_data_through_its_volumes() {
        let snapshot: SnapshotDigest =
            format!("sha256:{}", "0".repeat(64)).parse().expect("a digest");
        let mut spec = RunSpec::local("p", snapshot, 0);
        spec.volumes = vec!["/srv/datasets:/data:ro".into(), "/srv/big:/data/big".into()];
        spec.volumes.push("named:/cache".into());
        let here = |value: &str, spec: &RunSpec| spec.data_path(value);
        assert_eq!(here("/data/train.csv", &spec), Some(PathBuf::from("/data/train.csv")));
        spec.env_manager = EnvManager::Docker;
        assert_eq!(here("/data/train.csv", &spec), Some(PathBuf::from("/srv/datasets/train.csv")));
        assert_eq!(here("/data/big/x", &spec), Some(PathBuf::from("/srv/big/x")));
        assert_eq!(here("/database/x", &spec), None);
        assert_eq!(here("/cache/x", &spec), None);
    }

    fn value(lineage: &Lineage, key: &str) -> Option<String> {
        lineage.tags.iter().find(|tag| tag.key == key).map(|tag| tag.value.clone())
    }

    #[test]
    fn records_data_outside_the_project_and_refuses_a_strict_rerun_whose_data_changed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let project_dir = dir.path().join("p");
        std::fs::create_dir_all(&project_dir).expect("the project");
        std::fs::write(
            project_dir.join("MLproject"),
            "entry_points: {main: {parameters: {data: path, inside: {type: path, default: x}}, command: 'true'}}",
        )
        .expect("the MLproject");
        let data = dir.path().join("data.csv");
        std::fs::write(&data, "hello\n").expect("the data");
        let project = MlProject::load(&project_dir).expect("the project loads");
        let params = vec![("data".to_string(), data.display().to_string())];
        let invocation =
            project.invocation("main", &params, &PathCheck::AsSubmitted).expect("an invocation");
        let digest = digest_path(&data, &mut DigestCache::in_memory()).expect("a digest").digest;
        let snapshot: SnapshotDigest =
            format!("sha256:{}", "0".repeat(64)).parse().expect("a digest");
        let mut spec = RunSpec::local("p", snapshot, 0);
        let environment = vec![
            ("DB_PASSWORD".to_string(), "hunter2".to_string()),
            ("BATCH".to_string(), "32".to_string()),
        ];

        let lineage = record(dir.path(), &project_dir, &project, &invocation, &spec, &environment)
            .expect("a first run records its data");
        assert_eq!(value(&lineage, &tags::data_digest("data")), Some(digest.clone()));
        // The path inside the project is read from the run's copy of it.
        std::fs::write(project_dir.join("x"), "hello\n").expect("the project's data");
        let inside =
            record(dir.path(), &project_dir, &project, &invocation, &spec, &[]).expect("recorded");
        assert_eq!(value(&inside, &tags::data_digest("inside")), Some(digest.clone()));
        assert_eq!(value(&inside, &tags::data_source("inside")).as_deref(), Some("x"));
        assert_eq!(value(&lineage, &tags::env("DB_PASSWORD")).as_deref(), Some(tags::ENV_REDACTED));
        assert_eq!(value(&lineage, &tags::env("BATCH")).as_deref(), Some("32"));
        assert!(!lineage.tags.iter().any(|tag| tag.value.contains("hunter2")));

        std::fs::write(&data, "changed\n").expect("the data changes");
        let expect =
            Expectation { image_id: None, data: vec![("data".into(), digest)], strict: false };
        spec.expect = Some(expect.clone());
        let lineage = record(dir.path(), &project_dir, &project, &invocation, &spec, &[])
            .expect("a plain rerun runs");
        assert!(lineage.notes.iter().any(|note| note.contains("differs from the run this reruns")));
        spec.expect = Some(Expectation { strict: true, ..expect });
        let refused = record(dir.path(), &project_dir, &project, &invocation, &spec, &[])
            .expect_err("refused");
        assert!(refused.contains("a strict rerun does not start"), "{refused}");
    }
}
