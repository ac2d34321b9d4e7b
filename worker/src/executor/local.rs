//! The local-process executor: the command in `sh -c`, in its own process group, in the
//! extracted snapshot. Cancelling sends SIGTERM to the group, then SIGKILL after the grace
//! period.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use drover_proto::execution::LogStream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::{Cancellation, ExecutorError, Outcome, Output, Started};

pub struct LocalRun {
    pub command: String,
    pub dir: PathBuf,
    pub environment: Vec<(String, String)>,
}

impl LocalRun {
    pub async fn execute(
        self,
        output: Output,
        mut cancellation: Cancellation,
        started: Started,
    ) -> Result<Outcome, ExecutorError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .current_dir(&self.dir)
            .envs(self.environment.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ExecutorError::Spawn { source })?;
        let group = child.id().map(|pid| Pid::from_raw(pid as i32));
        let _ = started.send(Vec::new());
        // The pipes are read beside the supervision, in this future rather than in tasks of
        // their own, so that nothing outlives the run if it is dropped.
        let stdout = pump(child.stdout.take(), LogStream::Stdout, output.clone());
        let stderr = pump(child.stderr.take(), LogStream::Stderr, output);
        let supervision = async {
            let (status, killed) = supervise(&mut child, group, &mut cancellation).await;
            // The run ends with its main process; whatever it left behind in its group goes
            // too, so that nothing holds the output pipes open.
            signal_group(group, Signal::SIGKILL);
            status.map(|status| (status, killed))
        };
        let (supervised, (), ()) = tokio::join!(supervision, stdout, stderr);
        let (status, killed) = supervised?;
        let exit_code = status.code().or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            status.signal().map(|signal| 128 + signal)
        });
        Ok(Outcome { exit_code, killed })
    }
}

/// Waits for the command to exit; a cancellation sends SIGTERM to its group, then SIGKILL
/// once the grace period is over. Returns how it exited, and whether it was cancelled.
async fn supervise(
    child: &mut Child,
    group: Option<Pid>,
    cancellation: &mut Cancellation,
) -> (Result<ExitStatus, ExecutorError>, bool) {
    let waited = |result: std::io::Result<ExitStatus>| {
        result.map_err(|source| ExecutorError::Wait { source })
    };
    let mut killed = false;
    loop {
        tokio::select! {
            status = child.wait() => return (waited(status), killed),
            grace = cancellation.requested(), if !killed => {
                killed = true;
                signal_group(group, Signal::SIGTERM);
                let deadline = tokio::time::sleep(grace);
                tokio::select! {
                    status = child.wait() => return (waited(status), killed),
                    () = deadline => signal_group(group, Signal::SIGKILL),
                }
            }
        }
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        // ESRCH (the group is already gone) is the expected case after a normal exit.
        let _ = killpg(group, signal);
    }
}

/// Copies a pipe to the output channel as the bytes arrive.
async fn pump(pipe: Option<impl tokio::io::AsyncRead + Unpin>, stream: LogStream, output: Output) {
    let Some(mut pipe) = pipe else { return };
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                if output.send((stream, buffer[..read].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
}
