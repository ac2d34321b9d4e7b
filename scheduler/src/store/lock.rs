//! The data directory's owner lock. One process at a time holds `scheduler.lock` in the data
//! directory; the file also says who holds it and, when that process serves the scheduler
//! API, at which address, so other processes can talk to it instead of opening the store.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

const LOCK_FILE: &str = "scheduler.lock";

/// Who holds a data directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// Where the holder serves the scheduler API, if it does.
    pub address: Option<String>,
}

/// Reads who holds the data directory at `dir`, if the lock file says so. The answer may be
/// stale (a holder killed hard leaves its file behind); only the lock itself is authoritative.
pub fn read_holder(dir: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(dir.join(LOCK_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Why a data directory's lock could not be taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it (and says who, unless its file is unreadable).
    Held(Option<Holder>),
    Io(std::io::Error),
}

/// An exclusive hold on a data directory, released when dropped.
pub struct DirLock {
    file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_error = LockError::Io;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held(serde_json::from_str(&text).ok()));
            }
            Err(TryLockError::Error(source)) => return Err(io_error(source)),
        }
        let lock = DirLock { file };
        lock.record(&Holder { pid: std::process::id(), address: None }).map_err(io_error)?;
        Ok(lock)
    }

    /// Tells other processes where this one serves the scheduler API.
    pub fn announce(&self, address: &str) -> std::io::Result<()> {
        self.record(&Holder { pid: std::process::id(), address: Some(address.to_string()) })
    }

    fn record(&self, holder: &Holder) -> std::io::Result<()> {
        let text = serde_json::to_string(holder).map_err(std::io::Error::other)?;
        let mut file = &self.file;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Leave no address behind for a process that no longer serves it.
        let _ = self.file.set_len(0);
    }
}
