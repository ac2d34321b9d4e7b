//! What lineage costs:
//! 1. digesting a 1 GiB directory of 10,000 files, cold (nothing cached: every byte read) and
//!    warm (nothing changed since: nothing read), against `sha256sum` over the same files, one
//!    process and one per core; the page cache is dropped before each cold pass where the
//!    machine allows it, and the table says whether it did;
//! 2. the same through the CLI: `drover run` of a project whose path parameter names that
//!    directory (the worker digests it), first and second time, beside the same run with no
//!    data parameter;
//! 3. comparing two snapshots of 10,000 files, 100 of them edited: the inner comparison, and
//!    `drover runs diff` end to end, against `diff -ru` of the two directories.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_bench::{drover_binary, print_table};
use drover_project::compare::{Tree, compare};
use drover_project::digest::{DigestCache, SETTLE, digest_path};
use drover_project::snapshot;

const FILES: usize = 10_000;
const TOTAL: u64 = 1 << 30;

fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

fn rate(bytes: u64, duration: Duration) -> String {
    format!("{:.0} MB/s", bytes as f64 / 1e6 / duration.as_secs_f64())
}

/// Drops the page cache, so a cold pass reads from the disk; false where that is not allowed.
fn drop_page_cache() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn time(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = command.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    anyhow::ensure!(status.success(), "{command:?} failed");
    Ok(started.elapsed())
}

/// 10,000 files of pseudo-random bytes, 1 GiB in all.
fn make_data(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let size = (TOTAL / FILES as u64) as usize;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut buffer = vec![0u8; size];
    for index in 0..FILES {
        for chunk in buffer.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let sub = dir.join(format!("shard-{:02}", index % 100));
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join(format!("part-{index:05}.bin")), &buffer)?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    eprintln!("lineage: writing 1 GiB in {FILES} files");
    make_data(&data)?;
    std::thread::sleep(SETTLE + Duration::from_millis(200));

    // 1. The digest itself.
    let cache_file = work.path().join("digests");
    let dropped = drop_page_cache();
    let started = Instant::now();
    let mut cache = DigestCache::open(&cache_file);
    let cold = digest_path(&data, &mut cache)?;
    cache.save()?;
    let cold_time = started.elapsed();
    anyhow::ensure!(cold.bytes_read == cold.bytes, "a cold digest reads everything");
    let started = Instant::now();
    let mut cache = DigestCache::open(&cache_file);
    let warm = digest_path(&data, &mut cache)?;
    let warm_time = started.elapsed();
    anyhow::ensure!(
        warm.bytes_read == 0 && warm.digest == cold.digest,
        "a warm digest reads nothing"
    );
    let sha256sum = |parallel: &str| -> anyhow::Result<Duration> {
        drop_page_cache();
        time(Command::new("sh").arg("-c").arg(format!(
            "find '{}' -type f -print0 | xargs -0 -P {parallel} -n 1000 sha256sum",
            data.display()
        )))
    };
    let one = sha256sum("1")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).to_string();
    let many = sha256sum(&cores)?;
    println!(
        "\nDigest of 1 GiB in {FILES} files (page cache {})\n",
        if dropped { "dropped before each cold pass" } else { "not droppable here: warm" }
    );
    print_table(
        &["pass", "drover", "sha256sum", &format!("sha256sum -P {cores}")],
        &[
            vec![
                "cold (every byte read)".into(),
                format!("{} ({})", seconds(cold_time), rate(cold.bytes, cold_time)),
                format!("{} ({})", seconds(one), rate(TOTAL, one)),
                format!("{} ({})", seconds(many), rate(TOTAL, many)),
            ],
            vec![
                "warm (nothing changed)".into(),
                format!("{:.0} ms, 0 bytes read", warm_time.as_secs_f64() * 1000.0),
                "reads it all again".into(),
                "reads it all again".into(),
            ],
        ],
    );

    // 2. Through the CLI: the worker digests the data before the run starts.
    let home = work.path().join("home");
    let project = work.path().join("project");
    std::fs::create_dir_all(&project)?;
    std::fs::write(
        project.join("MLproject"),
        "entry_points:\n  main:\n    parameters:\n      data: path\n    command: 'true'\n  plain:\n    parameters:\n      data: string\n    command: 'true'\n",
    )?;
    let drover_run = |entry: &str| -> anyhow::Result<Duration> {
        time(
            Command::new(drover_binary())
                .env("DROVER_HOME", &home)
                .args(["run", "-e", entry, "-P"])
                .arg(format!("data={}", data.display()))
                .arg(&project),
        )
    };
    drover_run("plain")?;
    let plain = drover_run("plain")?;
    std::fs::remove_file(home.join("worker/digests")).ok();
    drop_page_cache();
    let first = drover_run("main")?;
    let second = drover_run("main")?;
    println!("\n`drover run` with a 1 GiB data parameter (embedded scheduler and worker)\n");
    print_table(
        &["run", "wall time", "beyond a run without data"],
        &[
            vec!["no data parameter".into(), seconds(plain), "-".into()],
            vec![
                "first (digests 1 GiB)".into(),
                seconds(first),
                seconds(first.saturating_sub(plain)),
            ],
            vec![
                "second (unchanged)".into(),
                seconds(second),
                format!("{:.0} ms", second.saturating_sub(plain).as_secs_f64() * 1000.0),
            ],
        ],
    );

    // 3. Comparing two snapshots of 10,000 files, 100 of them edited.
    let tree_dir = |name: &str, edited: bool| -> anyhow::Result<std::path::PathBuf> {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("MLproject"), "entry_points:\n  main:\n    command: 'true'\n")?;
        for index in 0..FILES {
            let sub = dir.join(format!("pkg{:02}", index % 100));
            std::fs::create_dir_all(&sub)?;
            let mut text: String =
                (0..30).map(|line| format!("line {line} of module {index}\n")).collect();
            if edited && index % 100 == 7 {
                text = text.replace("line 15 of", "line fifteen of");
            }
            std::fs::write(sub.join(format!("module_{index:05}.py")), text)?;
        }
        Ok(dir)
    };
    let (dir_a, dir_b) = (tree_dir("code-a", false)?, tree_dir("code-b", true)?);
    let packed_a = snapshot::pack(&dir_a, snapshot::DEFAULT_SIZE_LIMIT)?;
    let packed_b = snapshot::pack(&dir_b, snapshot::DEFAULT_SIZE_LIMIT)?;
    let started = Instant::now();
    let tree_a = Tree::read(std::io::BufReader::new(std::fs::File::open(packed_a.file.path())?))?;
    let tree_b = Tree::read(std::io::BufReader::new(std::fs::File::open(packed_b.file.path())?))?;
    let diff = compare(&tree_a, &tree_b);
    let inner = started.elapsed();
    anyhow::ensure!(diff.changed.len() == 100, "100 files changed, found {}", diff.changed.len());
    let run_id = |dir: &Path| -> anyhow::Result<String> {
        let output =
            Command::new(drover_binary()).env("DROVER_HOME", &home).arg("run").arg(dir).output()?;
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        anyhow::ensure!(output.status.success(), "drover run failed: {text}");
        let start = text.find("Run (ID='").ok_or_else(|| anyhow::anyhow!("no run id: {text}"))?;
        Ok(text[start + 9..start + 41].to_string())
    };
    let (run_a, run_b) = (run_id(&dir_a)?, run_id(&dir_b)?);
    let cli_diff = |extra: &[&str]| -> anyhow::Result<Duration> {
        time(
            Command::new(drover_binary())
                .env("DROVER_HOME", &home)
                .args(["runs", "diff", &run_a, &run_b])
                .args(extra),
        )
    };
    cli_diff(&[])?;
    let full = cli_diff(&[])?;
    let stat = cli_diff(&["--stat"])?;
    let started = Instant::now();
    let _ =
        Command::new("diff").arg("-ru").arg(&dir_a).arg(&dir_b).stdout(Stdio::null()).status()?;
    let peer = started.elapsed();
    println!("\nDiff of two snapshots of {FILES} files, 100 edited\n");
    print_table(
        &["measure", "drover", "diff -ru (the two directories)"],
        &[
            vec![
                "inner: read both archives and compare".into(),
                format!("{:.0} ms", inner.as_secs_f64() * 1000.0),
                format!("{:.0} ms", peer.as_secs_f64() * 1000.0),
            ],
            vec![
                "`drover runs diff` end to end".into(),
                format!("{:.0} ms", full.as_secs_f64() * 1000.0),
                "-".into(),
            ],
            vec![
                "`drover runs diff --stat`".into(),
                format!("{:.0} ms", stat.as_secs_f64() * 1000.0),
                "-".into(),
            ],
        ],
    );
    Ok(())
}
