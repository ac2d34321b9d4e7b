//! sled with the writes not yet applied to it in front: the store's key-value layer.
//!
//! Every sled batch seals and writes sled's current log buffer, before and after it (a
//! synchronous `pwrite` and `sync_file_range` each), so a batch per write costs two disk
//! writes per write: at a few thousand writes a second that was half the scheduler's CPU.
//! Here each write lands in memory, readable at once by every read of the store, and the
//! group-commit flusher applies everything written since its last pass as one sled batch,
//! then flushes. A write is still atomic (it joins a pass whole), and still acknowledged
//! only once durable; what a crash loses was never acknowledged.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};

use sled::IVec;

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

    /// The unapplied changes in a key range, in key order, the newer winning.
    fn range(&self, start: &Bound<IVec>, end: &Bound<IVec>) -> Vec<(IVec, Option<IVec>)> {
        let bounds = (start.clone(), end.clone());
        if self.applying.is_empty() {
            return self.open.range(bounds).map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        let mut merged: Writes =
            self.applying.range(bounds.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
        merged.extend(self.open.range(bounds).map(|(k, v)| (k.clone(), v.clone())));
        merged.into_iter().collect()
    }
}

/// The store's database: sled, and the writes it has not been given yet.
pub struct Kv {
    db: sled::Db,
    unapplied: RwLock<Unapplied>,
    /// Serializes passes of [`Kv::apply_unapplied`].
    applier: Mutex<()>,
}

impl Kv {
    pub fn new(db: sled::Db) -> Kv {
        Kv { db, unapplied: RwLock::default(), applier: Mutex::new(()) }
    }

    /// sled itself, everything written so far applied to it: for schema migrations and
    /// tests that write around the store.
    pub fn sled(&self) -> &sled::Db {
        // An error here reaches whoever next waits for durability, from the flush.
        let _ = self.apply_unapplied();
        &self.db
    }

    /// Takes `batch` in, readable at once, durable once a flush after this returns.
    pub fn apply_batch(&self, batch: Batch) -> sled::Result<()> {
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
        self.db.get(key)
    }

    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan {
        let (start, end) = prefix_bounds(prefix.as_ref());
        self.range(start, end)
    }

    /// The entry with the greatest key starting with `prefix`, if there is one.
    pub fn last_in_prefix(&self, prefix: impl AsRef<[u8]>) -> sled::Result<Option<(IVec, IVec)>> {
        let (start, end) = prefix_bounds(prefix.as_ref());
        let mut unapplied = read(&self.unapplied).range(&start, &end).into_iter().rev().peekable();
        let mut sled = self.db.range::<IVec, _>((start, end)).rev();
        let mut sled_last = sled.next().transpose()?;
        while let Some((key, change)) = unapplied.peek() {
            if sled_last.as_ref().is_some_and(|(sled_key, _)| sled_key > key) {
                break;
            }
            if sled_last.as_ref().is_some_and(|(sled_key, _)| sled_key == key) {
                // Shadowed by the unapplied change.
                sled_last = sled.next().transpose()?;
            }
            if let Some(value) = change {
                return Ok(Some((key.clone(), value.clone())));
            }
            unapplied.next();
        }
        Ok(sled_last)
    }

    /// Entries from `start` on, in key order.
    pub fn range_from(&self, start: impl AsRef<[u8]>) -> Scan {
        self.range(Bound::Included(IVec::from(start.as_ref())), Bound::Unbounded)
    }

    fn range(&self, start: Bound<IVec>, end: Bound<IVec>) -> Scan {
        // The unapplied changes are copied first: one the flusher applies meanwhile is then
        // seen twice, once here and once in sled, and the merge keeps one.
        let unapplied = read(&self.unapplied).range(&start, &end);
        Scan {
            sled: self.db.range::<IVec, _>((start, end)),
            sled_next: None,
            sled_done: false,
            unapplied: unapplied.into_iter().peekable(),
        }
    }

    pub fn generate_id(&self) -> sled::Result<u64> {
        self.db.generate_id()
    }

    pub fn size_on_disk(&self) -> sled::Result<u64> {
        self.db.size_on_disk()
    }

    /// Applies every write taken in so far to sled, as one batch. The writes stay readable
    /// here until sled has them.
    pub fn apply_unapplied(&self) -> sled::Result<()> {
        let _pass = self.applier.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let writes = {
            let mut unapplied = write(&self.unapplied);
            if unapplied.open.is_empty() {
                return Ok(());
            }
            let writes = Arc::new(std::mem::take(&mut unapplied.open));
            unapplied.applying = writes.clone();
            writes
        };
        let mut batch = sled::Batch::default();
        for (key, value) in writes.iter() {
            match value {
                Some(value) => batch.insert(key.clone(), value.clone()),
                None => batch.remove(key.clone()),
            }
        }
        // On failure the writes stay readable; sled's error fails every later flush, so none
        // of them is acknowledged.
        self.db.apply_batch(batch)?;
        write(&self.unapplied).applying = Arc::default();
        Ok(())
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
pub struct Scan {
    sled: sled::Iter,
    sled_next: Option<(IVec, IVec)>,
    sled_done: bool,
    unapplied: std::iter::Peekable<std::vec::IntoIter<(IVec, Option<IVec>)>>,
}

impl Iterator for Scan {
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.sled_next.is_none() && !self.sled_done {
                match self.sled.next() {
                    Some(Ok(entry)) => self.sled_next = Some(entry),
                    Some(Err(error)) => return Some(Err(error)),
                    None => self.sled_done = true,
                }
            }
            let (take_unapplied, shadowed) = match (&self.sled_next, self.unapplied.peek()) {
                (None, None) => return None,
                (Some(_), None) => (false, false),
                (None, Some(_)) => (true, false),
                (Some((sled_key, _)), Some((key, _))) => (key <= sled_key, key == sled_key),
            };
            if shadowed {
                // The unapplied change is newer than what sled holds.
                self.sled_next = None;
            }
            if !take_unapplied {
                return self.sled_next.take().map(Ok);
            }
            if let Some((key, Some(value))) = self.unapplied.next() {
                return Some(Ok((key, value)));
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
        (dir, Kv::new(db))
    }

    fn keys(scan: Scan) -> Vec<(Vec<u8>, Vec<u8>)> {
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
        assert_eq!(keys(kv.range_from(b"a/2")).len(), 2);
        assert_eq!(kv.sled().get(b"a/3").unwrap(), None);
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
            let kv = Kv::new(super::super::open_database(dir.path()).expect("sled"));
            kv.insert(b"kept", b"yes").unwrap();
        }
        let db = super::super::open_database(dir.path()).expect("sled");
        assert_eq!(db.get(b"kept").unwrap().as_deref(), Some(b"yes".as_slice()));
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
    fn prefix_successor_carries_over_full_bytes() {
        assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_successor(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_successor(&[255, 255]), None);
    }
}
