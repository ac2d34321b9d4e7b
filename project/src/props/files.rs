//! MLproject and sweep files: arbitrary YAML never panics and is read within the bound; a
//! file written from a project or a sweep reads back as that project or sweep.

use std::collections::BTreeMap;

use drover_testkit::{bounded, config};
use proptest::prelude::*;
use serde_yaml::{Mapping, Value};

use super::yaml_soup;
use crate::mlproject::{
    DockerEnv, EntryPoint, EnvVar, Environment, MlProject, ParamType, ParameterSpec,
};
use crate::params::PathCheck;
use crate::sweep::{Domain, SweepArgs, build_sweep};

const MLPROJECT_KEYS: &[&str] = &[
    "name",
    "docker_env",
    "python_env",
    "conda_env",
    "entry_points",
    "main",
    "parameters",
    "command",
    "type",
    "default",
    "image",
    "volumes",
    "environment",
];

const SWEEP_KEYS: &[&str] = &[
    "name",
    "method",
    "metric",
    "goal",
    "parameters",
    "alpha",
    "values",
    "value",
    "distribution",
    "min",
    "max",
    "q",
    "run_cap",
    "parallel",
    "max_failures",
    "early_terminate",
    "type",
    "min_iter",
    "eta",
    "seed",
];

fn text(value: impl Into<String>) -> Value {
    Value::String(value.into())
}

fn mapping<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Mapping(fields.into_iter().map(|(key, value)| (text(key), value)).collect())
}

fn param_type() -> impl Strategy<Value = ParamType> {
    prop_oneof![
        Just(ParamType::String),
        Just(ParamType::Float),
        Just(ParamType::Int),
        Just(ParamType::Path),
        Just(ParamType::Uri),
    ]
}

/// A default of the parameter's type, as text that reads back unchanged.
fn default_of(kind: ParamType) -> BoxedStrategy<Option<String>> {
    let value = match kind {
        ParamType::Float => any::<f64>()
            .prop_filter("finite", |value| value.is_finite())
            .prop_map(|value| value.to_string())
            .boxed(),
        ParamType::Int => any::<i64>().prop_map(|value| value.to_string()).boxed(),
        _ => "[^\\x00-\\x1f]{0,12}".boxed(),
    };
    proptest::option::of(value).boxed()
}

fn parameter() -> impl Strategy<Value = ParameterSpec> {
    ("[a-z][a-z0-9_]{0,8}", param_type()).prop_flat_map(|(name, kind)| {
        default_of(kind).prop_map(move |default| ParameterSpec {
            name: name.clone(),
            kind,
            default,
        })
    })
}

fn entry_point() -> impl Strategy<Value = EntryPoint> {
    (
        "[a-z][a-z_]{0,6}",
        proptest::collection::vec(parameter(), 0..5),
        "[a-z]{1,8}( [a-z.-]{1,8}){0,3}",
    )
        .prop_map(|(name, mut parameters, command)| {
            let mut seen = std::collections::HashSet::new();
            parameters.retain(|spec| seen.insert(spec.name.clone()));
            let mut command = command;
            for spec in &parameters {
                command.push_str(&format!(" --{0} {{{0}}}", spec.name));
            }
            EntryPoint { name, parameters, command }
        })
}

fn environment() -> impl Strategy<Value = Environment> {
    let variable = prop_oneof![
        "[A-Z_][A-Z0-9_]{0,8}".prop_map(EnvVar::Copy),
        ("[A-Z_][A-Z0-9_]{0,8}", "[^\\x00-\\x1f]{0,12}")
            .prop_map(|(name, value)| EnvVar::Set(name, value)),
    ];
    prop_oneof![
        Just(Environment::None),
        "[a-z0-9./-]{1,12}(:[a-z0-9.]{1,6})?".prop_map(Environment::Python),
        "[a-z0-9./-]{1,12}".prop_map(Environment::Conda),
        (
            "[a-z0-9./-]{1,12}(:[a-z0-9.]{1,6})?",
            proptest::collection::vec("[a-z0-9./]{1,8}:/[a-z0-9/]{1,8}(:ro)?", 0..3),
            proptest::collection::vec(variable, 0..3),
        )
            .prop_map(|(image, volumes, environment)| {
                Environment::Docker(DockerEnv { image, volumes, environment })
            }),
    ]
}

fn project() -> impl Strategy<Value = MlProject> {
    ("[A-Za-z][A-Za-z0-9 _-]{0,12}", environment(), proptest::collection::vec(entry_point(), 0..4))
        .prop_map(|(name, environment, entries)| MlProject {
            name,
            environment,
            entry_points: entries.into_iter().map(|entry| (entry.name.clone(), entry)).collect(),
            declared: true,
        })
}

/// The MLproject file a user would write for `project`.
fn write_mlproject(project: &MlProject) -> String {
    let mut top = Mapping::new();
    top.insert(text("name"), text(project.name.clone()));
    match &project.environment {
        Environment::None => {}
        Environment::Python(file) => {
            top.insert(text("python_env"), text(file.clone()));
        }
        Environment::Conda(file) => {
            top.insert(text("conda_env"), text(file.clone()));
        }
        Environment::Docker(docker) => {
            let environment = docker
                .environment
                .iter()
                .map(|variable| match variable {
                    EnvVar::Copy(name) => text(name.clone()),
                    EnvVar::Set(name, value) => {
                        Value::Sequence(vec![text(name.clone()), text(value.clone())])
                    }
                })
                .collect();
            top.insert(
                text("docker_env"),
                mapping([
                    ("image", text(docker.image.clone())),
                    (
                        "volumes",
                        Value::Sequence(docker.volumes.iter().cloned().map(text).collect()),
                    ),
                    ("environment", Value::Sequence(environment)),
                ]),
            );
        }
    }
    let mut entries = Mapping::new();
    for entry in project.entry_points.values() {
        let mut parameters = Mapping::new();
        for spec in &entry.parameters {
            let mut fields = Mapping::new();
            fields.insert(text("type"), text(spec.kind.to_string()));
            if let Some(default) = &spec.default {
                fields.insert(text("default"), text(default.clone()));
            }
            parameters.insert(text(spec.name.clone()), Value::Mapping(fields));
        }
        entries.insert(
            text(entry.name.clone()),
            mapping([
                ("parameters", Value::Mapping(parameters)),
                ("command", text(entry.command.clone())),
            ]),
        );
    }
    top.insert(text("entry_points"), Value::Mapping(entries));
    serde_yaml::to_string(&Value::Mapping(top)).expect("a mapping of strings serializes")
}

/// Two different numbers, in order.
fn range<T: PartialOrd + Copy + std::fmt::Debug>(
    numbers: impl Strategy<Value = T> + Clone,
) -> impl Strategy<Value = (T, T)> {
    (numbers.clone(), numbers)
        .prop_filter("two different numbers", |(a, b)| a != b)
        .prop_map(|(a, b)| if a < b { (a, b) } else { (b, a) })
}

/// A swept parameter as the file writes it, W&B style, and the domain drover reads.
fn swept_parameter() -> impl Strategy<Value = (Value, Domain)> {
    let finite = any::<f64>().prop_filter("finite", |value| value.is_finite());
    prop_oneof![
        proptest::collection::vec("[a-z0-9.]{1,8}", 1..5).prop_map(|values| {
            let listed = Value::Sequence(values.iter().cloned().map(text).collect());
            (mapping([("values", listed)]), Domain::Values(values))
        }),
        range(finite).prop_map(|(low, high)| {
            let file = mapping([
                ("distribution", text("uniform")),
                ("min", low.into()),
                ("max", high.into()),
            ]);
            (file, Domain::Uniform { low, high })
        }),
        range(1e-12f64..1e6).prop_map(|(low, high)| {
            let file = mapping([
                ("distribution", text("log_uniform_values")),
                ("min", low.into()),
                ("max", high.into()),
            ]);
            (file, Domain::LogUniform { low, high })
        }),
        range(any::<i64>()).prop_map(|(low, high)| {
            let file = mapping([
                ("distribution", text("int_uniform")),
                ("min", low.into()),
                ("max", high.into()),
            ]);
            (file, Domain::Int { low, high })
        }),
        (range(-1e6f64..1e6), 1e-3f64..1e3).prop_map(|((low, high), q)| {
            let file = mapping([
                ("distribution", text("q_uniform")),
                ("min", low.into()),
                ("max", high.into()),
                ("q", q.into()),
            ]);
            (file, Domain::QUniform { low, high, q })
        }),
    ]
}

/// Any parameter a sweep file gives: swept, or fixed to one value.
fn file_parameter() -> impl Strategy<Value = (Value, Domain)> {
    prop_oneof![
        1 => "[a-z0-9.]{1,8}".prop_map(|value| (mapping([("value", text(value.clone()))]), Domain::Fixed(value))),
        4 => swept_parameter(),
    ]
}

fn file_project() -> MlProject {
    MlProject {
        name: "p".into(),
        environment: Environment::None,
        entry_points: BTreeMap::new(),
        declared: false,
    }
}

fn build_from_file(text: &str) -> Result<crate::sweep::SweepSpec, crate::ProjectError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("sweep.yaml");
    std::fs::write(&path, text).expect("the sweep file is written");
    build_sweep(
        Some(&path),
        &SweepArgs::default(),
        &file_project(),
        "train.py",
        &PathCheck::AsSubmitted,
        7,
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_mlproject_files_never_panic(text in prop_oneof![yaml_soup(MLPROJECT_KEYS), ".{0,200}"]) {
        bounded(|| MlProject::parse(&text, "dir").map(drop).ok());
    }

    #[test]
    fn mlproject_files_read_back_as_written(project in project()) {
        let written = write_mlproject(&project);
        let read = MlProject::parse(&written, "dir");
        prop_assert_eq!(read.as_ref().ok(), Some(&project), "{}\n{:?}", written, read);
    }

    #[test]
    fn arbitrary_sweep_files_never_panic(text in prop_oneof![yaml_soup(SWEEP_KEYS), ".{0,200}"]) {
        bounded(|| build_from_file(&text).map(drop).ok());
    }

    #[test]
    fn sweep_files_read_back_as_written(
        first in swept_parameter(),
        others in proptest::collection::vec(file_parameter(), 0..4),
        run_cap in 1u32..10_000,
        parallel in 1u32..64,
        metric in proptest::option::of("[a-z_]{1,8}"),
    ) {
        let parameters: Vec<(Value, Domain)> = std::iter::once(first).chain(others).collect();
        let mut swept = Mapping::new();
        for (index, (file, _)) in parameters.iter().enumerate() {
            swept.insert(text(format!("p{index}")), file.clone());
        }
        let mut top = Mapping::new();
        top.insert(text("method"), text("random"));
        top.insert(text("parameters"), Value::Mapping(swept));
        top.insert(text("run_cap"), run_cap.into());
        top.insert(text("parallel"), parallel.into());
        if let Some(metric) = &metric {
            top.insert(text("metric"), mapping([("name", text(metric.clone())), ("goal", text("maximize"))]));
        }
        let written = serde_yaml::to_string(&Value::Mapping(top)).expect("serializes");
        let spec = build_from_file(&written);
        let spec = spec.map_err(|error| TestCaseError::fail(format!("{error}\n{written}")))?;
        prop_assert_eq!((spec.max_runs, spec.parallel), (run_cap, parallel));
        prop_assert_eq!(spec.objective.map(|objective| objective.metric), metric);
        let read: Vec<&Domain> = spec.parameters.iter().map(|parameter| &parameter.domain).collect();
        let expected: Vec<&Domain> = parameters.iter().map(|(_, domain)| domain).collect();
        prop_assert_eq!(read, expected, "{}", written);
    }
}

#[test]
fn aliases_cannot_expand_a_small_file_into_a_huge_document() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let previous = level - 1;
        text.push_str(&format!(
            "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
        ));
    }
    text.push_str("entry_points: *a11\n");
    assert!(bounded(|| MlProject::parse(&text, "dir")).is_err());
    assert!(bounded(|| build_from_file(&text)).is_err());
}
