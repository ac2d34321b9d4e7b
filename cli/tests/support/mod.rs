//! Helpers for the CLI's end-to-end tests: the built `drover` binary, run against a temporary
//! home (the embedded default) or a `drover scheduler` child process.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use drover_scheduler::{Holder, read_holder};

pub const DROVER: &str = env!("CARGO_BIN_EXE_drover");

/// A `drover` command whose embedded default store is `home`.
pub fn drover(home: &Path) -> Command {
    let mut command = Command::new(DROVER);
    command
        .env("DROVER_HOME", home)
        .env_remove("DROVER_SCHEDULER")
        .env_remove("DROVER_LOG")
        .current_dir(home.parent().unwrap_or(home))
        .stdin(Stdio::null());
    command
}

/// What a finished command printed and how it exited.
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(command: &mut Command) -> Outcome {
    let Output { status, stdout, stderr } = command.output().expect("run drover");
    Outcome {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `args` on `home` and expects success; returns stdout.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let outcome = run(drover(home).args(args));
    assert!(outcome.success, "drover {args:?} failed:\n{}", outcome.stderr);
    outcome.stdout
}

/// Runs `args` on `home` and expects a failure with a one-line error; returns that line.
pub fn fails(home: &Path, args: &[&str]) -> String {
    let outcome = run(drover(home).args(args));
    assert!(!outcome.success, "drover {args:?} should have failed:\n{}", outcome.stdout);
    let lines: Vec<&str> = outcome.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected a one-line error from drover {args:?}, got:\n{}",
        outcome.stderr
    );
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    lines[0].trim_start_matches("error: ").to_string()
}

/// A `drover scheduler` child process on an ephemeral loopback port.
pub struct SchedulerProcess {
    pub child: Child,
    pub address: String,
}

impl SchedulerProcess {
    pub fn spawn(data_dir: &Path) -> SchedulerProcess {
        let child = Command::new(DROVER)
            .args(["scheduler", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("DROVER_SCHEDULER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn drover scheduler");
        // Owned from here on, so a failed start still kills the child.
        let mut process = SchedulerProcess { child, address: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Holder { pid, address: Some(address) }) = read_holder(data_dir)
                && pid == process.child.id()
            {
                process.address = address;
                return process;
            }
            assert!(Instant::now() < deadline, "the scheduler did not announce its address");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        #[allow(unsafe_code)]
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal})");
    }

    /// Waits for the process to exit and returns whether it exited with status 0.
    pub fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the scheduler did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
