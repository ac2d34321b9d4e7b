//! What drover's tests and benchmarks share: a real browser (`browser`), and for the property
//! tests, the case count and the bound each case keeps.
//!
//! What drover's property tests share. Every parser fed by users or the network has
//! properties next to it (`props` modules); they run a bounded number of cases under
//! `cargo test`, and `tests/properties.sh` runs them longer by setting `PROPTEST_CASES`.

pub mod browser;
pub mod http;

use std::time::{Duration, Instant};

use proptest::test_runner::Config;

/// The case count a plain `cargo test` runs for one property.
pub const DEFAULT_CASES: u32 = 256;

/// Longest one case may take: far longer than any parser needs for the inputs generated,
/// far shorter than a stalled request would.
pub const CASE_TIME: Duration = Duration::from_secs(2);

/// Peak resident memory the whole test process may reach.
pub const PEAK_MEMORY: u64 = 1 << 30;

/// `cases` for a plain run; `PROPTEST_CASES=N` scales every property by `N / 256`, so a long
/// run keeps the properties' relative weights.
pub fn config(cases: u32) -> Config {
    let wanted = std::env::var("PROPTEST_CASES").ok().and_then(|text| text.parse::<u32>().ok());
    let cases = match wanted {
        Some(wanted) => (wanted / DEFAULT_CASES).max(1).saturating_mul(cases),
        None => cases,
    };
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Runs one case and fails it if it took longer than [`CASE_TIME`] or the process's peak
/// resident memory passed [`PEAK_MEMORY`].
pub fn bounded<T>(case: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = case();
    let took = started.elapsed();
    assert!(took < CASE_TIME, "one case took {took:?}, over the bound of {CASE_TIME:?}");
    if let Some(peak) = peak_resident_bytes() {
        assert!(peak < PEAK_MEMORY, "peak resident memory reached {peak} bytes");
    }
    result
}

/// The process's peak resident set (`VmHWM`), where the kernel reports it.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
