//! The value log: an append-only file beside sled holding the store's bulk values (metric
//! history chunks and run log chunks), so sled keeps only a short pointer to each.
//!
//! sled rewrites a leaf of its tree whole each time the leaf splits or gathers ten changes,
//! and keeps the superseded copies until its cleaner reclaims a segment half dead. Values of
//! a kilobyte that are written once and never changed were therefore written about three times
//! and took about 2.5 times their size on disk. Here each is written once, and sled's leaves
//! hold pointers of about a dozen bytes.
//!
//! What sled keeps for such a key is a tag byte, then either the value itself (values under
//! 128 bytes: one metric point, a run's first log line; a write of only those syncs nothing
//! here) or a pointer: the value's offset and length (varints) and its CRC-32 (4 bytes,
//! little-endian), checked on every read. Values reach the file, and the file is synced,
//! before sled is given the pointers to them: a pointer on disk always points at durable
//! bytes. A crash between
//! the two leaves bytes at the file's end that nothing points at; appends go on after them.
//! Nothing is ever removed from the file: the values it holds are never deleted from the
//! store, and a run's earlier attempt's history, set aside, is written again once.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sled::IVec;

use super::chunk::{put_varint, varint};

/// The file's name in the store's data directory.
pub const FILE_NAME: &str = "values.log";

/// Key prefixes whose values live in the value log.
pub const PREFIXES: [&[u8]; 3] =
    [super::keys::HISTORY, super::keys::ATTEMPT_HISTORY, super::keys::LOG];

/// Values shorter than this stay in sled, after an [`INLINE`] byte: a pointer would save
/// them little, and a write of nothing but short values (one metric point, a run's first log
/// line) then costs no sync of the file.
pub const INLINE_BELOW: usize = 128;
/// The first byte of what sled keeps for a value it holds itself.
const INLINE: u8 = 1;
/// The first byte of a pointer.
const POINTER: u8 = 0;

/// Whether `key`'s value is kept in the value log.
pub fn holds(key: &[u8]) -> bool {
    PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

pub struct ValueLog {
    file: File,
    /// Serializes appends, so each knows where its bytes land: at the file's end.
    appending: Mutex<()>,
    /// Where the bytes this process knows of end: the file's length when opened, then past
    /// each append. Every pointer sled holds ends at or before it, so a read checks a
    /// pointer against it without asking the file system.
    known_end: AtomicU64,
}

impl ValueLog {
    /// Opens the value log in `dir`, creating it when absent if `may_create` (a store whose
    /// sled holds no pointers yet), else refusing. The directory is synced either way, so the
    /// file's entry is durable before anything points into it, even if an earlier process
    /// created it and died.
    pub fn open(dir: &Path, may_create: bool) -> io::Result<ValueLog> {
        let path = dir.join(FILE_NAME);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(may_create)
            .open(&path)
            .map_err(|error| match error.kind() {
                io::ErrorKind::NotFound => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} is missing: the store's metric histories and run logs are in it (restore it with the rest of the data directory)",
                        path.display()
                    ),
                ),
                _ => error,
            })?;
        File::open(dir)?.sync_all()?;
        let known_end = AtomicU64::new(file.metadata()?.len());
        Ok(ValueLog { file, appending: Mutex::new(()), known_end })
    }

    /// What sled keeps for each of `values`, in order: a value shorter than [`INLINE_BELOW`]
    /// itself, any other a pointer to it, appended to the file (synced, once for all of them).
    pub fn store<'a>(&self, values: impl Iterator<Item = &'a [u8]>) -> io::Result<Vec<IVec>> {
        let _appending = self.appending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The file is opened for appending, so the bytes land at its end, after whatever a
        // crash or a failed append left there.
        let end = self.file.metadata()?.len();
        let mut bytes = Vec::new();
        let mut stored = Vec::new();
        for value in values {
            if value.len() < INLINE_BELOW {
                stored.push(IVec::from([&[INLINE], value].concat()));
            } else {
                stored.push(encode_pointer(end + bytes.len() as u64, value));
                bytes.extend_from_slice(value);
            }
        }
        if !bytes.is_empty() {
            io::Write::write_all(&mut &self.file, &bytes)?;
            self.file.sync_data()?;
            self.known_end.store(end + bytes.len() as u64, Ordering::Release);
        }
        Ok(stored)
    }

    /// The value sled keeps `stored` for: the value itself, or the one it points at, checked.
    pub fn load(&self, stored: &[u8]) -> io::Result<IVec> {
        let unreadable = |what: &str| {
            io::Error::new(io::ErrorKind::InvalidData, format!("the value log {what}"))
        };
        if let Some((&INLINE, value)) = stored.split_first() {
            return Ok(value.into());
        }
        let (offset, len, crc) =
            decode_pointer(stored).ok_or_else(|| unreadable("has an unreadable pointer"))?;
        let known_end = self.known_end.load(Ordering::Acquire);
        if offset.checked_add(len as u64).is_none_or(|end| end > known_end) {
            return Err(unreadable(&format!(
                "ends at {known_end} bytes, before {len} bytes at offset {offset}"
            )));
        }
        let mut value = vec![0; len];
        self.file.read_exact_at(&mut value, offset)?;
        if crc32fast::hash(&value) != crc {
            return Err(unreadable(&format!(
                "holds damaged bytes: {len} bytes at offset {offset} fail their checksum"
            )));
        }
        Ok(value.into())
    }

    /// The file's size on disk.
    pub fn size(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata()?.blocks() * 512)
    }
}

fn encode_pointer(offset: u64, value: &[u8]) -> IVec {
    let mut pointer = Vec::with_capacity(16);
    pointer.push(POINTER);
    put_varint(&mut pointer, offset);
    put_varint(&mut pointer, value.len() as u64);
    pointer.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
    pointer.into()
}

fn decode_pointer(pointer: &[u8]) -> Option<(u64, usize, u32)> {
    if pointer.first() != Some(&POINTER) {
        return None;
    }
    let mut at = 1;
    let offset = varint(pointer, &mut at)?;
    let len = usize::try_from(varint(pointer, &mut at)?).ok()?;
    let crc = u32::from_le_bytes(pointer.get(at..at + 4)?.try_into().ok()?);
    (at + 4 == pointer.len()).then_some((offset, len, crc))
}

/// Moves the bulk values a schema-4 store kept in sled into the value log, in writes of at
/// most `batch_bytes` bytes of values. Every write sets `schema` (so a build that reads values
/// inline refuses the store as soon as any value has moved) and records the last key it
/// moved, so a move cut short resumes after it (values it had appended but not pointed at
/// stay unreferenced); the last write removes that record. Runs before the store serves
/// anything, whenever the record is present.
pub fn move_into_log(
    db: &sled::Db,
    log: &ValueLog,
    batch_bytes: usize,
    schema: u32,
) -> sled::Result<u64> {
    let done = db.get(super::keys::MIGRATION_PROGRESS)?;
    let mut moved = 0;
    let mut pending: Vec<(IVec, IVec)> = Vec::new();
    let mut pending_bytes = 0;
    let write = |pending: &mut Vec<(IVec, IVec)>, last: bool| -> sled::Result<()> {
        let stored = log.store(pending.iter().map(|(_, value)| value.as_ref()))?;
        let mut batch = sled::Batch::default();
        for ((key, _), stored) in pending.iter().zip(stored) {
            batch.insert(key, stored);
        }
        batch.insert(super::keys::SCHEMA, &schema.to_be_bytes());
        match (last, pending.last()) {
            (true, _) => batch.remove(super::keys::MIGRATION_PROGRESS),
            (false, Some((key, _))) => batch.insert(super::keys::MIGRATION_PROGRESS, key),
            (false, None) => {}
        }
        pending.clear();
        db.apply_batch(batch)
    };
    for prefix in PREFIXES {
        for entry in db.scan_prefix(prefix) {
            let (key, value) = entry?;
            if done.as_ref().is_some_and(|done| key <= *done) {
                continue;
            }
            pending_bytes += value.len();
            pending.push((key, value));
            moved += 1;
            if pending_bytes >= batch_bytes {
                write(&mut pending, false)?;
                pending_bytes = 0;
            }
        }
    }
    write(&mut pending, true)?;
    db.flush()?;
    Ok(moved)
}

/// Puts the bulk values back into sled, as a schema-4 store kept them: for tests of older
/// stores.
#[cfg(test)]
pub fn inline_all(db: &sled::Db, log: &ValueLog) {
    for prefix in PREFIXES {
        for entry in db.scan_prefix(prefix) {
            let (key, pointer) = entry.expect("readable");
            db.insert(key, log.load(&pointer).expect("in the value log")).expect("written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_across_reopening_and_after_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        // Short values stay inline, the rest go to the file.
        let values: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i as u8; i as usize]).collect();
        let stored = {
            let log = ValueLog::open(dir.path(), true).unwrap();
            log.store(values.iter().map(Vec::as_slice)).unwrap()
        };
        assert_eq!(stored[INLINE_BELOW - 1].len(), INLINE_BELOW);
        assert!(stored[INLINE_BELOW].len() < 16);
        let len = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len() as usize;
        assert_eq!(len, (INLINE_BELOW..300).sum::<usize>());
        // A crash mid-append leaves bytes nothing points at.
        let path = dir.path().join(FILE_NAME);
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        io::Write::write_all(&mut file, b"torn").unwrap();
        let log = ValueLog::open(dir.path(), false).unwrap();
        let after = [7u8; 200];
        let more = log.store([after.as_slice()].into_iter()).unwrap();
        for (stored, value) in stored.iter().zip(&values) {
            assert_eq!(log.load(stored).unwrap().as_ref(), value.as_slice());
        }
        assert_eq!(log.load(&more[0]).unwrap().as_ref(), after);
    }

    #[test]
    fn damaged_bytes_and_bad_pointers_are_errors_not_values() {
        let dir = tempfile::tempdir().unwrap();
        let missing = ValueLog::open(dir.path(), false).err().unwrap().to_string();
        assert!(missing.contains("values.log is missing"), "{missing}");
        let log = ValueLog::open(dir.path(), true).unwrap();
        let precious = [b'p'; INLINE_BELOW];
        let pointer = log.store([precious.as_slice()].into_iter()).unwrap().remove(0);
        let mut damaged = precious;
        damaged[3] = b'_';
        std::fs::write(dir.path().join(FILE_NAME), damaged).unwrap();
        let error = log.load(&pointer).unwrap_err().to_string();
        assert!(error.contains("fail their checksum"), "{error}");
        assert!(log.load(b"\xff").is_err());
        assert!(log.load(b"").is_err());
        let beyond = encode_pointer(1 << 20, b"x");
        assert!(log.load(&beyond).unwrap_err().to_string().contains("before 1 bytes"));
        // A damaged length is an error, not an allocation of it.
        let mut huge = vec![POINTER];
        put_varint(&mut huge, 0);
        put_varint(&mut huge, u64::MAX);
        huge.extend_from_slice(&[0; 4]);
        assert!(log.load(&huge).is_err());
    }

    #[test]
    fn a_move_into_the_log_cut_short_resumes_after_the_last_key_it_moved() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path().join("db")).open().unwrap();
        let log = ValueLog::open(dir.path(), true).unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..7u8)
            .map(|i| {
                let prefix = PREFIXES[usize::from(i) % PREFIXES.len()];
                ([prefix, &[i]].concat(), vec![i; 1 + usize::from(i) * 40])
            })
            .collect();
        for (key, value) in &entries {
            db.insert(key, value.as_slice()).unwrap();
        }
        db.insert(b"p/kept", b"inline").unwrap();
        // The first write of a move landed (pointers and progress), the rest did not.
        let mut sorted = entries.clone();
        sorted.sort();
        for (key, value) in &sorted[..2] {
            let stored = log.store([value.as_slice()].into_iter()).unwrap().remove(0);
            db.insert(key, stored).unwrap();
        }
        db.insert(super::super::keys::MIGRATION_PROGRESS, sorted[1].0.as_slice()).unwrap();
        assert_eq!(move_into_log(&db, &log, 200, 5).unwrap(), 5);
        for (key, value) in &entries {
            let stored = db.get(key).unwrap().unwrap();
            assert_eq!(log.load(&stored).unwrap().as_ref(), value.as_slice());
        }
        assert_eq!(db.get(b"p/kept").unwrap().as_deref(), Some(b"inline".as_slice()));
        assert_eq!(db.get(super::super::keys::MIGRATION_PROGRESS).unwrap(), None);
        let schema = db.get(super::super::keys::SCHEMA).unwrap().unwrap();
        assert_eq!(schema.as_ref(), 5u32.to_be_bytes());
    }
}
