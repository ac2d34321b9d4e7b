//! Property tests of metric lines, the parser fed by every run's output: arbitrary bytes in
//! arbitrary chunks never panic, read the same however they are split, and keep memory
//! bounded; well-formed lines declare exactly what they say.

use drover_proto::domain::{Param, Tag};
use drover_testkit::{bounded, config};
use proptest::prelude::*;

use crate::metrics::{Declared, MetricLines};

const NOW: i64 = 1_700_000_000_000;

/// Output made of directive fragments and noise, so arbitrary input reaches every branch.
fn output() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"::metric ".to_vec()),
        Just(b"::param ".to_vec()),
        Just(b"::tag ".to_vec()),
        Just(b"loss=0.5".to_vec()),
        Just(b" step=".to_vec()),
        Just(b"=".to_vec()),
        Just(b"-9223372036854775809".to_vec()),
        Just(b"NaN".to_vec()),
        Just(b"a/../b".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b" ".to_vec()),
        Just(vec![0xff, 0xfe]),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Feeds `data` in chunks that end at `cuts`, then finishes.
fn read(data: &[u8], cuts: &[usize]) -> (Declared, Vec<String>) {
    let mut lines = MetricLines::default();
    let mut declared = Declared::default();
    let mut notes = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|cut| cut % (data.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(data.len());
    for end in ends {
        let (more, note) = lines.feed(&data[start..end], NOW);
        declared.append(more);
        notes.extend(note);
        start = end;
    }
    let (more, note) = lines.finish(NOW);
    declared.append(more);
    notes.extend(note);
    (declared, notes)
}

fn metric_key() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,8}(/[A-Za-z0-9_-]{1,8}){0,2}".prop_filter("not the step", |key| key != "step")
}

/// A value as a line carries it: no line break, nothing to trim at its end.
fn pair_value() -> impl Strategy<Value = String> {
    "([^\\s]([^\\n\\r]{0,30}[^\\s])?)?"
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_output_reads_the_same_in_any_chunks(
        data in output(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = bounded(|| read(&data, &[]));
        let chunked = bounded(|| read(&data, &cuts));
        // Compared as printed, so that NaN values (which metric lines may carry) compare equal.
        prop_assert_eq!(format!("{:?}", whole.0), format!("{:?}", chunked.0));
        prop_assert!(whole.1.len() <= 1, "a malformed line is noted once: {:?}", whole.1);
        prop_assert_eq!(whole.1, chunked.1);
    }

    #[test]
    fn metric_lines_declare_what_they_say(
        points in proptest::collection::btree_map(metric_key(), any::<f64>().prop_filter("finite", |v| v.is_finite()), 1..5),
        step in proptest::option::of(any::<i64>()),
    ) {
        let mut line = String::from("::metric");
        for (key, value) in &points {
            line.push_str(&format!(" {key}={value}"));
        }
        if let Some(step) = step {
            line.push_str(&format!(" step={step}"));
        }
        line.push('\n');
        let (declared, notes) = read(line.as_bytes(), &[]);
        prop_assert!(notes.is_empty(), "{:?}", notes);
        let read: Vec<(String, f64, i64)> =
            declared.metrics.iter().map(|m| (m.key.clone(), m.value, m.step)).collect();
        let expected: Vec<(String, f64, i64)> =
            points.iter().map(|(key, value)| (key.clone(), *value, step.unwrap_or(0))).collect();
        prop_assert_eq!(read, expected);
        prop_assert!(declared.metrics.iter().all(|m| m.timestamp_ms == NOW));
    }

    #[test]
    fn param_and_tag_lines_declare_what_they_say(key in metric_key(), value in pair_value()) {
        let text = format!("::param {key}={value}\r\nnoise\n::tag {key}={value}\n");
        let (declared, notes) = read(text.as_bytes(), &[]);
        prop_assert!(notes.is_empty(), "{:?}", notes);
        prop_assert_eq!(declared.params, vec![Param { key: key.clone(), value: value.clone() }]);
        prop_assert_eq!(declared.tags, vec![Tag { key, value }]);
    }
}

#[test]
fn steps_count_up_per_key_without_step() {
    let (declared, _) = read(b"::metric a=1\n::metric a=2 b=3\n::metric a=4\n", &[]);
    let steps: Vec<(&str, i64)> =
        declared.metrics.iter().map(|m| (m.key.as_str(), m.step)).collect();
    assert_eq!(steps, [("a", 0), ("a", 1), ("b", 0), ("a", 2)]);
}

#[test]
fn an_endless_line_is_not_kept() {
    let mut lines = MetricLines::default();
    let chunk = vec![b'x'; 1 << 16];
    bounded(|| {
        for _ in 0..256 {
            lines.feed(&chunk, NOW);
        }
    });
    let (declared, _) = lines.feed(b"\n::metric a=1\n", NOW);
    assert_eq!(declared.metrics.len(), 1);
}
