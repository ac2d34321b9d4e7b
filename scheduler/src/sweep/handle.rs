//! The sweep driver's command channel: the cheap handle the service creates and cancels
//! sweeps through, and the receiving end the driver owns.

use drover_proto::ApiError;
use drover_proto::domain::RunId;
use drover_proto::sweep::CreateSweep;
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::stopped;

pub(super) enum Command {
    Create { request: Box<CreateSweep>, reply: oneshot::Sender<Result<RunId, ApiError>> },
    Cancel { id: RunId, reply: oneshot::Sender<Result<(), ApiError>> },
}

/// The driver's end of a [`SweepHandle`].
pub struct SweepCommands(pub(super) mpsc::Receiver<Command>);

/// Sends commands to the sweep driver.
#[derive(Clone)]
pub struct SweepHandle {
    commands: mpsc::Sender<Command>,
}

impl SweepHandle {
    /// A handle, and the receiving end for [`Driver::recover`].
    pub fn new() -> (SweepHandle, SweepCommands) {
        let (commands, receiver) = mpsc::channel(64);
        (SweepHandle { commands }, SweepCommands(receiver))
    }

    pub async fn create(&self, request: CreateSweep) -> Result<RunId, ApiError> {
        let (reply, answer) = oneshot::channel();
        let request = Box::new(request);
        self.commands.send(Command::Create { request, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn cancel(&self, id: RunId) -> Result<(), ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Cancel { id, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}
