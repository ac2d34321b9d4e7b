//! Rendering for terminals and scripts: aligned tables, JSON, and human times.

use std::time::{Duration, UNIX_EPOCH};

use clap::ValueEnum;
use serde::Serialize;

/// How listing commands print their results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document for scripts.
    Json,
}

/// A table with a header row, printed with columns padded to their widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| terminal_safe(h)).collect(), rows: Vec::new() }
    }

    /// Adds a row; what a cell holds is shown escaped where it could steer the terminal.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|cell| terminal_safe(cell)).collect());
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(index) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (index, cell) in row.iter().enumerate() {
                if index + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[index].saturating_sub(cell.chars().count());
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Text from the store as a terminal may show it: control characters (ESC, CR, NUL, ...)
/// and bidirectional overrides written as escapes, so a crafted name cannot rewrite the
/// screen or disguise itself.
pub fn terminal_safe(text: &str) -> String {
    if !text.chars().any(drover_proto::validate::is_unprintable) {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            c if drover_proto::validate::is_unprintable(c) => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Indents every line of `text` by two spaces, for a section under its title.
pub fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `2026-11-29 11:44:55` in UTC.
pub fn format_time(epoch_ms: i64) -> String {
    let Ok(ms) = u64::try_from(epoch_ms) else {
        return epoch_ms.to_string();
    };
    let time = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(time).to_string().replace('T', " ").replace('Z', "")
}

/// `3.2s`, `4m 5s`, `2h 1m`.
pub fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let seconds = ms / 1000;
    match seconds {
        0..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m {}s", seconds / 60, seconds % 60),
        _ => format!("{}h {}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// A progress bar for uploads big enough to notice, when a person is watching.
pub fn upload_progress(size: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if size < (8 << 20) || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "uploading project {bar:40} {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// The file's content as a stream of 1 MiB chunks, advancing `progress` as they go.
pub fn file_chunks(
    mut file: tokio::fs::File,
    progress: Option<indicatif::ProgressBar>,
) -> tokio_stream::wrappers::ReceiverStream<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let mut buffer = vec![0u8; 1 << 20];
            match file.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    buffer.truncate(read);
                    if let Some(bar) = &progress {
                        bar.inc(read as u64);
                    }
                    if sender.send(buffer).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["0".into(), "Default".into()]);
        table.row(vec!["12".into(), "model-training".into()]);
        assert_eq!(table.render(), "ID  NAME\n0   Default\n12  model-training\n");
    }

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_duration(3200), "3.2s");
        assert_eq!(format_duration(245_000), "4m 5s");
        assert_eq!(format_duration(7_260_000), "2h 1m");
    }

    #[test]
    fn tables_escape_what_could_steer_a_terminal() {
        let mut table = Table::new(&["NAME"]);
        table.row(vec!["evil\u{1b}[2J\rname\u{202e}".to_string()]);
        table.row(vec!["école".to_string()]);
        let shown = table.render();
        assert!(!shown.replace('\n', "").chars().any(drover_proto::validate::is_unprintable));
        assert!(shown.contains(r"evil\u{1b}[2J\u{d}name\u{202e}"), "{shown}");
        assert!(shown.contains("école"), "{shown}");
    }
}
