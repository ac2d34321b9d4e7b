//! Metric lines in a run's standard output:
//!
//! ```text
//! ::metric loss=0.25 accuracy=0.91 step=3
//! ::param optimizer=adam
//! ::tag phase=warmup
//! ```
//!
//! Lines stay in the log as printed. Points get the worker's clock as timestamp and, without
//! `step=N`, the next step of a counter per key. A malformed line is noted once and never
//! fails the run.

use std::collections::HashMap;

use drover_proto::domain::{Metric, Param, Tag};
use drover_proto::validate::{self, MAX_PARAM_VALUE_LEN, MAX_TAG_VALUE_LEN};

/// What the lines of some output declared.
#[derive(Debug, Default, PartialEq)]
pub struct Declared {
    pub metrics: Vec<Metric>,
    pub params: Vec<Param>,
    pub tags: Vec<Tag>,
}

impl Declared {
    pub fn len(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn append(&mut self, other: Declared) {
        self.metrics.extend(other.metrics);
        self.params.extend(other.params);
        self.tags.extend(other.tags);
    }
}

/// Splits output into lines (across chunk boundaries) and parses the directive lines.
#[derive(Default)]
pub struct MetricLines {
    partial: Vec<u8>,
    next_step: HashMap<String, i64>,
    noted_malformed: bool,
}

/// Longest line kept while waiting for its end; longer ones are not directives.
const MAX_LINE: usize = 1 << 20;

impl MetricLines {
    /// Parses the complete lines in `data`; returns what they declared and, the first time a
    /// line is malformed, a note for the log.
    pub fn feed(&mut self, data: &[u8], now_ms: i64) -> (Declared, Option<String>) {
        self.partial.extend_from_slice(data);
        let mut declared = Declared::default();
        let mut note = None;
        let mut consumed = 0;
        while let Some(end) = self.partial[consumed..].iter().position(|b| *b == b'\n') {
            let line =
                String::from_utf8_lossy(&self.partial[consumed..consumed + end]).into_owned();
            consumed += end + 1;
            self.parse(&line, now_ms, &mut declared, &mut note);
        }
        self.partial.drain(..consumed);
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
        }
        (declared, note)
    }

    /// Parses a last line that had no newline.
    pub fn finish(&mut self, now_ms: i64) -> (Declared, Option<String>) {
        let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
        let mut declared = Declared::default();
        let mut note = None;
        self.parse(&line, now_ms, &mut declared, &mut note);
        (declared, note)
    }

    fn parse(
        &mut self,
        line: &str,
        now_ms: i64,
        declared: &mut Declared,
        note: &mut Option<String>,
    ) {
        let line = line.trim_end_matches('\r');
        let result = if let Some(rest) = line.strip_prefix("::metric ") {
            self.parse_metrics(rest, now_ms).map(|metrics| declared.metrics.extend(metrics))
        } else if let Some(rest) = line.strip_prefix("::param ") {
            parse_pair("param", rest, MAX_PARAM_VALUE_LEN)
                .map(|(key, value)| declared.params.push(Param { key, value }))
        } else if let Some(rest) = line.strip_prefix("::tag ") {
            parse_pair("tag", rest, MAX_TAG_VALUE_LEN)
                .map(|(key, value)| declared.tags.push(Tag { key, value }))
        } else {
            return;
        };
        if let Err(reason) = result
            && !self.noted_malformed
        {
            self.noted_malformed = true;
            let shown: String = line.chars().take(200).collect();
            *note = Some(format!(
                "drover: ignored a malformed metric line '{shown}': {reason}; further malformed lines are ignored silently\n"
            ));
        }
    }

    fn parse_metrics(&mut self, rest: &str, now_ms: i64) -> Result<Vec<Metric>, String> {
        let mut step = None;
        let mut values = Vec::new();
        for token in rest.split_whitespace() {
            let (key, value) =
                token.split_once('=').ok_or_else(|| format!("'{token}' is not name=value"))?;
            if key == "step" {
                step = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| format!("step '{value}' is not an integer"))?,
                );
                continue;
            }
            validate::key("metric", key).map_err(|error| error.to_string())?;
            let number = value
                .parse::<f64>()
                .map_err(|_| format!("metric '{key}' has value '{value}', not a number"))?;
            values.push((key, number));
        }
        if values.is_empty() {
            return Err("no name=value pair".to_string());
        }
        Ok(values
            .into_iter()
            .map(|(key, value)| {
                let counter = self.next_step.entry(key.to_string()).or_insert(0);
                let step = match step {
                    Some(step) => step,
                    None => {
                        *counter += 1;
                        *counter - 1
                    }
                };
                Metric { key: key.to_string(), value, timestamp_ms: now_ms, step }
            })
            .collect())
    }
}

fn parse_pair(kind: &str, rest: &str, limit: usize) -> Result<(String, String), String> {
    let (key, value) =
        rest.trim().split_once('=').ok_or_else(|| format!("expected ::{kind} name=value"))?;
    validate::key(kind, key).map_err(|error| error.to_string())?;
    validate::value(kind, key, value, limit).map_err(|error| error.to_string())?;
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metric_param_and_tag_lines_across_chunks() {
        let mut lines = MetricLines::default();
        let (first, note) = lines.feed(b"epoch 1\n::metric loss=0.5 acc=0.9\n::met", 10);
        assert!(note.is_none());
        assert_eq!(first.metrics.len(), 2);
        assert_eq!(
            (first.metrics[0].key.as_str(), first.metrics[0].value, first.metrics[0].step),
            ("loss", 0.5, 0)
        );
        let (second, _) = lines.feed(
            b"ric loss=0.25\n::metric loss=nan step=10\n::param opt=adam w\n::tag phase=warm\n",
            20,
        );
        let steps: Vec<_> = second.metrics.iter().map(|m| (m.step, m.timestamp_ms)).collect();
        assert_eq!(steps, vec![(1, 20), (10, 20)]);
        assert!(second.metrics[1].value.is_nan());
        assert_eq!(second.params, vec![Param { key: "opt".into(), value: "adam w".into() }]);
        assert_eq!(second.tags, vec![Tag { key: "phase".into(), value: "warm".into() }]);
        let (last, _) = lines.finish(30);
        assert!(last.is_empty());
    }

    #[test]
    fn malformed_lines_are_noted_once() {
        let mut lines = MetricLines::default();
        let (declared, note) =
            lines.feed(b"::metric loss=abc\n::metric ok=1\n::metric ../x=1\n", 1);
        assert_eq!(declared.metrics.len(), 1);
        assert!(note.unwrap().contains("metric 'loss' has value 'abc'"));
        let (_, note) = lines.feed(b"::metric step=x loss=1\n", 2);
        assert!(note.is_none());
    }
}
