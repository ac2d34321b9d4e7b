//! sled with the writes not yet applied to it in front: the store's key-value layer.
//!
//! Every sled batch seals and writes sled's current log buffer, before and after it (a
//! synchronous `pwrite` and `sync_file_range` each), so a batch per write costs two disk
//! writes per write: at a few thousand writes a second that was half the scheduler's CPU.
//! Here each write lands in memory, readable at once by every read of the store, and the
//! group-commit flusher applies everything written since its last pass as one sled batch,
//! then flushes. A write is still atomic (it joins a pass whole), and still acknowledged
//! only once durable; what a crash loses was never acknowledged.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use sled::IVec;

use super::values::{self, ValueLog};

/// Changes to apply together: a key's new value, or `None` to remove it. A key written twice
/// keeps its last change.
#[derive(Default)]
pub struct Batch {
    writes: BTreeMap<IVec, Option<IVec>>,
}

impl Batch {
    pub fn insert(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.writes.insert(key.into(), Some(value.into()));
    }

    pub fn remove(&mut self, key: impl Into<IVec>) {
        self.writes.insert(key.into(), None);
    }
}

type Writes = BTreeMap<IVec, Option<IVec>>;

#[derive(Default)]
struct Unapplied {
    /// Written since the flusher last took the writes.
    open: Writes,
    /// Taken by the flusher and being applied to sled; readable until they are.
    applying: Arc<Writes>,
}

impl Unapplied {
    /// The unapplied change to `key`, if there is one: `Some(None)` for a removal.
    fn get(&self, key: &[u8]) -> Option<Option<IVec>> {
        self.open.get(key).or_else(|| self.applying.get(key)).cloned()
    }

    /// The first unapplied change after `after` and before `end`, the newer winning.
    fn first_after(&self, after: &Bound<IVec>, end: &Bound<IVec>) -> Option<(IVec, Option<IVec>)> {
        self.edge((after.clone(), end.clone()), |mut range| range.next(), Ordering::Less)
    }

    /// The last unapplied change after `start` and before `end`, the newer winning.
    fn last_before(&self, start: &Bound<IVec>, end: &Bound<IVec>) -> Option<(IVec, Option<IVec>)> {
        self.edge((start.clone(), end.clone()), |mut range| range.next_back(), Ordering::Greater)
    }

    /// The change `pick` takes from each map's part of `bounds`: the one being applied if its
    /// key compares to the open one's as `applying_wins`, else the open one (newer).
    fn edge<'a>(
        &'a self,
        bounds: (Bound<IVec>, Bound<IVec>),
        pick: impl Fn(Range<'a>) -> Option<(&'a IVec, &'a Option<IVec>)>,
        applying_wins: Ordering,
    ) -> Option<(IVec, Option<IVec>)> {
        let open = pick(self.open.range(bounds.clone()));
        let applying = pick(self.applying.range(bounds));
        let (key, change) = match (open, applying) {
            (Some(open), Some(applying)) if applying.0.cmp(open.0) == applying_wins => applying,
            (Some(open), _) => open,
            (None, applying) => applying?,
        };
        Some((key.clone(), change.clone()))
    }
}

type Range<'a> = std::collections::btree_map::Range<'a, IVec, Option<IVec>>;

/// The store's database: sled, and the writes it has not been given yet.
pub struct Kv {
    db: sled::Db,
    /// The bulk values (see `values.rs`): sled holds pointers into it for their keys.
    values: ValueLog,
    unapplied: RwLock<Unapplied>,
    /// Serializes passes of [`Kv::apply_unapplied`].
    applier: Mutex<()>,
    /// Why sled refused a pass, once it has: from then on every write and flush fails, so
    /// no later write reaches the disk without the ones before it.
    failure: std::sync::OnceLock<String>,
}

impl Kv {
    pub fn new(db: sled::Db, values: ValueLog) -> Kv {
        Kv {
            db,
            values,
            unapplied: RwLock::default(),
            applier: Mutex::new(()),
            failure: std::sync::OnceLock::new(),
        }
    }

    /// sled itself, everything written so far applied to it: for schema migrations and
    /// tests that write around the store. It holds pointers into the value log for the keys
    /// `values::holds`.
    pub fn sled(&self) -> sled::Result<&sled::Db> {
        self.apply_unapplied()?;
        Ok(&self.db)
    }

    pub fn value_log(&self) -> &ValueLog {
        &self.values
    }

    /// The value of `key` as sled stores it, resolved: read from the value log where sled
    /// holds a pointer.
    fn stored(&self, key: &[u8], value: IVec) -> sled::Result<IVec> {
        if values::holds(key) { Ok(self.values.load(&value)?) } else { Ok(value) }
    }

    fn failed(&self) -> sled::Result<()> {
        match self.failure.get() {
            Some(failure) => Err(sled::Error::Io(std::io::Error::other(failure.clone()))),
            None => Ok(()),
        }
    }

    /// Takes `batch` in, readable at once, durable once a flush after this returns.
    pub fn apply_batch(&self, batch: Batch) -> sled::Result<()> {
        self.failed()?;
        let mut unapplied = write(&self.unapplied);
        if unapplied.open.is_empty() {
            unapplied.open = batch.writes;
        } else {
            // Key by key: `BTreeMap::append` would rebuild the whole map for a few keys.
            for (key, value) in batch.writes {
                unapplied.open.insert(key, value);
            }
        }
        Ok(())
    }

    pub fn insert(&self, key: impl Into<IVec>, value: impl Into<IVec>) -> sled::Result<()> {
        let mut batch = Batch::default();
        batch.insert(key, value);
        self.apply_batch(batch)
    }

    pub fn remove(&self, key: impl Into<IVec>) -> sled::Result<()> {
        let mut batch = Batch::default();
        batch.remove(key);
        self.apply_batch(batch)
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> sled::Result<Option<IVec>> {
        let key = key.as_ref();
        if let Some(change) = read(&self.unapplied).get(key) {
            return Ok(change);
        }
        // Not among the unapplied writes: sled has it (or never had it), even if a pass
        // applied it since.
        self.db.get(key)?.map(|value| self.stored(key, value)).transpose()
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan<'_> {
        let (start, end) = prefix_bounds(prefix.as_ref());
        self.range(start, end)
    }

    /// The entries starting with `prefix`, from `start` on, in key order.
    pub fn scan_prefix_from(&self, prefix: impl AsRef<[u8]>, start: impl AsRef<[u8]>) -> Scan<'_> {
        let (_, end) = prefix_bounds(prefix.as_ref());
        self.range(Bound::Included(IVec::from(start.as_ref())), end)
    }

    /// The entry with the greatest key starting with `prefix`, if there is one.
    pub fn last_in_prefix(&self, prefix: impl AsRef<[u8]>) -> sled::Result<Option<(IVec, IVec)>> {
        let (start, mut end) = prefix_bounds(prefix.as_ref());
        loop {
            let unapplied = read(&self.unapplied).last_before(&start, &end);
            let stored = self.db.range::<IVec, _>((start.clone(), end.clone())).next_back();
            let stored = stored.transpose()?;
            let resolved = |(key, value): (IVec, IVec)| {
                let value = self.stored(&key, value)?;
                sled::Result::Ok(Some((key, value)))
            };
            let newer = match (&unapplied, stored) {
                (None, None) => return Ok(None),
                (None, Some(stored)) => return resolved(stored),
                (Some((key, _)), Some(stored)) if stored.0 > *key => return resolved(stored),
                (Some(change), _) => change.clone(),
            };
            match newer {
                (key, Some(value)) => return Ok(Some((key, value))),
                // Removed: the last entry comes before it.
                (key, None) => end = Bound::Excluded(key),
            }
        }
    }

    /// Entries in a key range, in key order, each read as it is reached.
    fn range(&self, start: Bound<IVec>, end: Bound<IVec>) -> Scan<'_> {
        Scan {
            kv: self,
            sled: self.db.range::<IVec, _>((start.clone(), end.clone())),
            sled_next: None,
            sled_done: false,
            after: start,
            end,
        }
    }

    pub fn generate_id(&self) -> sled::Result<u64> {
        self.db.generate_id()
    }

    /// sled's files and the value log.
    pub fn size_on_disk(&self) -> sled::Result<u64> {
        Ok(self.db.size_on_disk()? + self.values.size()?)
    }

    /// Applies every write taken in so far to sled, as one batch. The writes stay readable
    /// here until sled has them.
    pub fn apply_unapplied(&self) -> sled::Result<()> {
        let _pass = self.applier.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.failed()?;
        let writes = {
            let mut unapplied = write(&self.unapplied);
            if unapplied.open.is_empty() {
                return Ok(());
            }
            let writes = Arc::new(std::mem::take(&mut unapplied.open));
            unapplied.applying = writes.clone();
            writes
        };
        // On failure the writes stay readable, and none of them, nor any later, is
        // acknowledged: every later write and flush fails.
        if let Err(error) = self.apply_to_sled(&writes) {
            let _ = self.failure.set(error.to_string());
            return Err(error);
        }
        write(&self.unapplied).applying = Arc::default();
        Ok(())
    }

    /// Writes the bulk values of `writes` to the value log (durably), then applies `writes` to
    /// sled as one batch, with what the value log says to keep in place of those values.
    fn apply_to_sled(&self, writes: &Writes) -> sled::Result<()> {
        let bulk = writes
            .iter()
            .filter_map(|(key, value)| Some((key, value.as_ref()?)))
            .filter(|(key, _)| values::holds(key));
        let mut stored = self.values.store(bulk.map(|(_, value)| value.as_ref()))?.into_iter();
        let mut batch = sled::Batch::default();
        for (key, value) in writes.iter() {
            match value {
                Some(_) if values::holds(key) => {
                    let stored = stored.next().ok_or_else(|| {
                        sled::Error::ReportableBug("the value log stored too few values".into())
                    })?;
                    batch.insert(key.clone(), stored)
                }
                Some(value) => batch.insert(key.clone(), value.clone()),
                None => batch.remove(key.clone()),
            }
        }
        self.db.apply_batch(batch)
    }

    /// Applies what is unapplied, then waits until sled has it on disk.
    pub fn flush(&self) -> sled::Result<()> {
        self.apply_unapplied()?;
        self.db.flush().map(|_| ())
    }

    /// Whether writes wait to be applied.
    pub fn has_unapplied(&self) -> bool {
        !read(&self.unapplied).open.is_empty()
    }
}

impl Drop for Kv {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::error!(%error, "could not write the store's last changes");
        }
    }
}

/// Entries of sled and of the unapplied writes, merged in key order; removals hide sled's.
/// Each step looks the unapplied writes up afresh, so a pass the flusher applies meanwhile is
/// seen once, in one place or the other, never as a stale copy beside newer keys.
pub struct Scan<'a> {
    kv: &'a Kv,
    sled: sled::Iter,
    sled_next: Option<(IVec, IVec)>,
    sled_done: bool,
    /// Entries come after this: the scan's start, then the last key it passed.
    after: Bound<IVec>,
    end: Bound<IVec>,
}

impl Scan<'_> {
    fn is_after(&self, key: &IVec) -> bool {
        match &self.after {
            Bound::Included(after) => key >= after,
            Bound::Excluded(after) => key > after,
            Bound::Unbounded => true,
        }
    }
}

impl Iterator for Scan<'_> {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            while self.sled_next.is_none() && !self.sled_done {
                match self.sled.next() {
                    // sled may show a key the scan already passed, applied since.
                    Some(Ok(entry)) if self.is_after(&entry.0) => self.sled_next = Some(entry),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Some(Err(error)),
                    None => self.sled_done = true,
                }
            }
            let unapplied = read(&self.kv.unapplied).first_after(&self.after, &self.end);
            let stored = |(key, value): (IVec, IVec)| (key, Some(value), true);
            let (key, value, from_sled) = match (self.sled_next.take(), unapplied) {
                (None, None) => return None,
                (Some(entry), None) => stored(entry),
                (None, Some((key, change))) => (key, change, false),
                (Some(entry), Some((key, change))) => match key.cmp(&entry.0) {
                    Ordering::Greater => stored(entry),
                    // The unapplied change is newer than what sled holds.
                    Ordering::Equal => (key, change, false),
                    Ordering::Less => {
                        self.sled_next = Some(entry);
                        (key, change, false)
                    }
                },
            };
            self.after = Bound::Excluded(key.clone());
            match value {
                Some(value) if from_sled => {
                    return Some(self.kv.stored(&key, value).map(|value| (key, value)));
                }
                Some(value) => return Some(Ok((key, value))),
                None => {}
            }
            // A removal: nothing to yield for it.
        }
    }
}

/// The key range of the keys starting with `prefix`.
fn prefix_bounds(prefix: &[u8]) -> (Bound<IVec>, Bound<IVec>) {
    let end = match prefix_successor(prefix) {
        Some(end) => Bound::Excluded(IVec::from(end)),
        None => Bound::Unbounded,
    };
    (Bound::Included(IVec::from(prefix)), end)
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn read(lock: &RwLock<Unapplied>) -> std::sync::RwLockReadGuard<'_, Unapplied> {
    // Writers only swap whole maps in and out, which a panic cannot leave half done.
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(lock: &RwLock<Unapplied>) -> std::sync::RwLockWriteGuard<'_, Unapplied> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv() -> (tempfile::TempDir, Kv) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path().join("db")).open().expect("sled");
        let values = ValueLog::open(dir.path(), true).expect("value log");
        (dir, Kv::new(db, values))
    }

    fn keys(scan: Scan<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        scan.map(|entry| {
            let (key, value) = entry.expect("readable");
            (key.to_vec(), value.to_vec())
        })
        .collect()
    }

    #[test]
    fn reads_see_writes_before_and_after_they_are_applied() {
        let (_dir, kv) = kv();
        kv.insert(b"a/1", b"one").unwrap();
        kv.insert(b"a/3", b"three").unwrap();
        kv.apply_unapplied().unwrap();
        assert!(!kv.has_unapplied());
        let mut batch = Batch::default();
        batch.insert(b"a/2".as_slice(), b"two".as_slice());
        batch.remove(b"a/3".as_slice());
        batch.insert(b"a/1".as_slice(), b"uno".as_slice());
        batch.insert(b"b/1".as_slice(), b"other".as_slice());
        kv.apply_batch(batch).unwrap();
        assert!(kv.has_unapplied());
        let expected = vec![(b"a/1".to_vec(), b"uno".to_vec()), (b"a/2".to_vec(), b"two".to_vec())];
        assert_eq!(keys(kv.scan_prefix(b"a/")), expected);
        assert_eq!(kv.get(b"a/3").unwrap(), None);
        assert_eq!(kv.get(b"a/1").unwrap().as_deref(), Some(b"uno".as_slice()));
        kv.apply_unapplied().unwrap();
        assert_eq!(keys(kv.scan_prefix(b"a/")), expected);
        assert_eq!(keys(kv.scan_prefix_from(b"a/", b"a/2")).len(), 1);
        assert_eq!(kv.sled().unwrap().get(b"a/3").unwrap(), None);
    }

    #[test]
    fn a_scan_taken_while_its_writes_are_applied_yields_each_key_once() {
        let (_dir, kv) = kv();
        for index in 0..100u8 {
            kv.insert(&[b'k', index][..], &[index][..]).unwrap();
        }
        let scan = kv.scan_prefix(b"k");
        kv.apply_unapplied().unwrap();
        let entries = keys(scan);
        assert_eq!(entries.len(), 100);
        assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn writes_reach_the_disk_when_the_store_closes() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let db = super::super::open_database(dir.path()).expect("sled");
            let kv = Kv::new(db, ValueLog::open(dir.path(), true).expect("value log"));
            kv.insert(b"kept", b"yes").unwrap();
        }
        let db = super::super::open_database(dir.path()).expect("sled");
        assert_eq!(db.get(b"kept").unwrap().as_deref(), Some(b"yes".as_slice()));
    }

    #[test]
    fn a_scan_never_shows_a_stale_copy_beside_a_newer_write() {
        let (_dir, kv) = kv();
        kv.insert(b"n/b", b"1").unwrap();
        let scan = kv.scan_prefix(b"n/");
        let mut rename = Batch::default();
        rename.remove(b"n/b".as_slice());
        rename.insert(b"n/c".as_slice(), b"1".as_slice());
        kv.apply_batch(rename).unwrap();
        kv.apply_unapplied().unwrap();
        assert_eq!(keys(scan), vec![(b"n/c".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn the_last_entry_of_a_prefix_counts_unapplied_writes_and_removals() {
        let (_dir, kv) = kv();
        assert_eq!(kv.last_in_prefix(b"a/").unwrap(), None);
        kv.insert(b"a/1", b"one").unwrap();
        kv.insert(b"a/3", b"three").unwrap();
        kv.insert(b"b/0", b"other").unwrap();
        let last = |kv: &Kv| kv.last_in_prefix(b"a/").unwrap().map(|(key, _)| key.to_vec());
        assert_eq!(last(&kv), Some(b"a/3".to_vec()));
        kv.apply_unapplied().unwrap();
        assert_eq!(last(&kv), Some(b"a/3".to_vec()));
        kv.remove(b"a/3").unwrap();
        assert_eq!(last(&kv), Some(b"a/1".to_vec()));
        kv.insert(b"a/2", b"two").unwrap();
        assert_eq!(last(&kv), Some(b"a/2".to_vec()));
        kv.apply_unapplied().unwrap();
        assert_eq!(last(&kv), Some(b"a/2".to_vec()));
        kv.remove(b"a/1").unwrap();
        kv.remove(b"a/2").unwrap();
        assert_eq!(last(&kv), None);
    }

    #[test]
    fn bulk_values_read_the_same_from_memory_sled_and_the_value_log() {
        let (dir, kv) = kv();
        let long = vec![9u8; 4_000];
        kv.insert(b"h/long", long.as_slice()).unwrap();
        kv.insert(b"h/short", b"tiny").unwrap();
        kv.insert(b"o/log", long.as_slice()).unwrap();
        let read = |kv: &Kv| {
            let scanned: Vec<_> = keys(kv.scan_prefix(b"h/"));
            (kv.get(b"h/long").unwrap(), kv.last_in_prefix(b"o/").unwrap(), scanned)
        };
        let before = read(&kv);
        kv.flush().unwrap();
        assert_eq!(read(&kv), before);
        assert_eq!(before.0.as_deref(), Some(long.as_slice()));
        // sled holds a pointer for the long values and the short one itself.
        let log_len = std::fs::metadata(dir.path().join(values::FILE_NAME)).unwrap().len();
        assert_eq!(log_len, 8_000);
        assert!(kv.sled().unwrap().get(b"h/long").unwrap().unwrap().len() < 16);
    }

    #[test]
    fn prefix_successor_carries_over_full_bytes() {
        assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_successor(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_successor(&[255, 255]), None);
    }
}
