//! Following a run: its output to the terminal as it arrives, Ctrl-C to cancel it, and the
//! MLflow-style closing line.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use drover_proto::domain::{RunId, RunStatus};
use drover_proto::execution::{FollowRun, LogStream, RunEvent};
use drover_proto::{ApiError, Client};
use tokio_stream::StreamExt;

/// How a followed run ended, or where following stopped.
#[derive(Debug)]
pub struct RunEnd {
    pub status: RunStatus,
}

/// Prints the run's log (and, with `follow`, live output until it ends). With `cancel_on_interrupt`,
/// the first Ctrl-C cancels the run and the second stops following.
pub async fn follow_run(
    client: &Client,
    run_id: RunId,
    follow: bool,
    cancel_on_interrupt: bool,
) -> anyhow::Result<RunEnd> {
    let mut cursor = 0;
    let mut interrupts = 0;
    // One handler for the whole follow: Ctrl-C cancels the run, a second one stops following.
    let mut interrupt = if cancel_on_interrupt {
        Some(tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?)
    } else {
        None
    };
    let mut retries = 0;
    loop {
        let mut events =
            match client.follow_run(FollowRun { run_id, follow, after_cursor: cursor }).await {
                Ok(events) => events,
                Err(ApiError::Unavailable(message)) if retries < 30 => {
                    retries += 1;
                    tracing::debug!(message, "reconnecting to follow the run");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                // A quiet stream is reopened from the cursor now and then, so that a stream
                // stalled anywhere between here and the scheduler cannot stall the follower.
                () = tokio::time::sleep(QUIET_REOPEN), if follow => {
                    tracing::debug!("no news from the scheduler for a while; reopening the run's stream");
                    break;
                }
                Some(()) = recv_interrupt(&mut interrupt), if cancel_on_interrupt => {
                    interrupts += 1;
                    if interrupts == 1 {
                        eprintln!("drover: cancelling run {run_id} (Ctrl-C again to stop following; the run is still cancelled)");
                        if let Err(error) = client.cancel_run(run_id).await {
                            eprintln!("drover: cannot cancel the run: {error}");
                        }
                        continue;
                    }
                    return Ok(RunEnd { status: RunStatus::Running });
                }
            };
            match event {
                Some(Ok(RunEvent::Log { stream, data, cursor: next })) => {
                    cursor = next;
                    retries = 0;
                    match stream {
                        LogStream::Stdout => {
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(&data);
                            let _ = out.flush();
                        }
                        LogStream::Stderr | LogStream::System => {
                            let mut err = std::io::stderr().lock();
                            let _ = err.write_all(&data);
                            let _ = err.flush();
                        }
                    }
                }
                // How it ended (exit code, reason) is already in the log's last lines.
                Some(Ok(RunEvent::State { status, .. })) => return Ok(RunEnd { status }),
                Some(Err(ApiError::Unavailable(_))) | None if follow && retries < 30 => {
                    // The scheduler restarted or the connection dropped: pick up where we were.
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
                Some(Err(error)) => return Err(error.into()),
                None => {
                    return Err(anyhow::anyhow!("the scheduler stopped sending the run's output"));
                }
            }
        }
    }
}

/// How long a followed run's stream may stay silent before it is reopened.
const QUIET_REOPEN: Duration = Duration::from_secs(15);

async fn recv_interrupt(interrupt: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match interrupt {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

/// Prints MLflow's closing line for a run and returns the exit code for the command.
pub fn report_end(run_id: RunId, end: &RunEnd) -> ExitCode {
    match end.status {
        RunStatus::Finished => {
            eprintln!("=== Run (ID='{run_id}') succeeded ===");
            ExitCode::SUCCESS
        }
        RunStatus::Failed | RunStatus::Killed => {
            eprintln!("=== Run (ID='{run_id}') failed ===");
            ExitCode::FAILURE
        }
        RunStatus::Running | RunStatus::Scheduled => {
            eprintln!("=== Run (ID='{run_id}') is still {} ===", end.status);
            ExitCode::from(130)
        }
    }
}
