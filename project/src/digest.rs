//! Content digests of the data a `path` parameter names: a file's is the sha256 of its bytes
//! (what `sha256sum` prints), a directory's the sha256 of its manifest, every entry under it
//! in byte order of its relative path with its kind, size and content digest (a link with
//! its target, never followed). Files are streamed, on every core, and a cache remembers each
//! file's digest by path, size, modification and change time and inode, so data that did not
//! change is not read again. A file changed in the last [`SETTLE`] is not cached: two writes
//! within one tick of the file system's clock would leave the same stamp on different bytes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};

/// What digesting a path found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDigest {
    /// `sha256:` and 64 hex characters.
    pub digest: String,
    /// Whether the path is a directory.
    pub directory: bool,
    pub files: u64,
    pub bytes: u64,
    /// Bytes read to get here: what the cache did not already know.
    pub bytes_read: u64,
}

impl DataDigest {
    /// One line for a run's log: what was digested, and what it cost.
    pub fn summary(&self, parameter: &str, elapsed: std::time::Duration) -> String {
        format!(
            "data '{parameter}': {} file{}, {} bytes, {}; read {} bytes in {:.1?} (the rest unchanged since last digested)",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.bytes,
            self.digest,
            self.bytes_read,
            elapsed
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0} is neither a file nor a directory")]
    Special(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DigestError + '_ {
    move |source| DigestError::Io { path: path.display().to_string(), source }
}

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    inode: u64,
}

impl Stamp {
    fn of(metadata: &fs::Metadata) -> Stamp {
        Stamp {
            size: metadata.len(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            ctime_ns: i128::from(metadata.ctime()) * 1_000_000_000
                + i128::from(metadata.ctime_nsec()),
            inode: metadata.ino(),
        }
    }
}

/// Each file's digest by absolute path and [`Stamp`], kept in a file between runs. A cache
/// that cannot be read starts empty; one that cannot be written is only slower next time.
#[derive(Debug, Default)]
pub struct DigestCache {
    file: Option<PathBuf>,
    entries: HashMap<PathBuf, (Stamp, [u8; 32])>,
    changed: bool,
}

/// How long ago a file must have last changed for its digest to be cached.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A cache larger than this starts again empty rather than grow without end.
const CACHE_LIMIT: usize = 2_000_000;

impl DigestCache {
    /// A cache kept in memory only.
    pub fn in_memory() -> DigestCache {
        DigestCache::default()
    }

    /// The cache kept in `file`, as far as it can be read.
    pub fn open(file: &Path) -> DigestCache {
        let mut cache = DigestCache { file: Some(file.to_path_buf()), ..DigestCache::default() };
        let Ok(reader) = File::open(file).map(BufReader::new) else { return cache };
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some((path, entry)) = parse_line(&line) {
                cache.entries.insert(path, entry);
            }
        }
        cache
    }

    /// Writes the cache back if it learnt anything: to a temporary file, then renamed over
    /// the old one, so a reader never sees half of it.
    pub fn save(&mut self) -> io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !self.changed {
            return Ok(());
        }
        if self.entries.len() > CACHE_LIMIT {
            self.entries.clear();
        }
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut out = tempfile::NamedTempFile::new_in(file.parent().unwrap_or(Path::new(".")))?;
        {
            let mut writer = io::BufWriter::new(out.as_file_mut());
            for (path, (stamp, digest)) in &self.entries {
                // Paths that would break a line are not kept: they are read again next time.
                let Some(text) = path.to_str().filter(|text| !text.contains(['\t', '\n', '\r']))
                else {
                    continue;
                };
                writeln!(
                    writer,
                    "{}\t{}\t{}\t{}\t{}\t{text}",
                    hex::encode(digest),
                    stamp.size,
                    stamp.mtime_ns,
                    stamp.ctime_ns,
                    stamp.inode
                )?;
            }
            writer.flush()?;
        }
        out.persist(file).map_err(|error| error.error)?;
        self.changed = false;
        Ok(())
    }

    fn get(&self, path: &Path, stamp: Stamp) -> Option<[u8; 32]> {
        self.entries.get(path).filter(|(known, _)| *known == stamp).map(|(_, digest)| *digest)
    }

    fn put(&mut self, path: PathBuf, stamp: Stamp, digest: [u8; 32]) {
        self.entries.insert(path, (stamp, digest));
        self.changed = true;
    }
}

fn parse_line(line: &str) -> Option<(PathBuf, (Stamp, [u8; 32]))> {
    let mut fields = line.splitn(6, '\t');
    let digest: [u8; 32] = hex::decode(fields.next()?).ok()?.try_into().ok()?;
    let stamp = Stamp {
        size: fields.next()?.parse().ok()?,
        mtime_ns: fields.next()?.parse().ok()?,
        ctime_ns: fields.next()?.parse().ok()?,
        inode: fields.next()?.parse().ok()?,
    };
    Some((PathBuf::from(fields.next()?), (stamp, digest)))
}

/// One entry of a directory's manifest.
enum Entry {
    Dir(String),
    File { relative: String, absolute: PathBuf, stamp: Stamp },
    Link { relative: String, target: String },
}

/// The digest of the file or directory at `path`, reading only what `cache` does not know.
pub fn digest_path(path: &Path, cache: &mut DigestCache) -> Result<DataDigest, DigestError> {
    let path = path.canonicalize().map_err(io_error(path))?;
    let metadata = fs::metadata(&path).map_err(io_error(&path))?;
    if metadata.is_file() {
        let stamp = Stamp::of(&metadata);
        let (digests, bytes_read) = digest_files(&[(path.clone(), stamp)], cache)?;
        return Ok(DataDigest {
            digest: format!("sha256:{}", hex::encode(digests[0])),
            directory: false,
            files: 1,
            bytes: stamp.size,
            bytes_read,
        });
    }
    if !metadata.is_dir() {
        return Err(DigestError::Special(path.display().to_string()));
    }
    let mut entries = Vec::new();
    walk(&path, "", &mut entries)?;
    entries.sort_by(|a, b| name(a).as_bytes().cmp(name(b).as_bytes()));
    let files: Vec<(PathBuf, Stamp)> = entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::File { absolute, stamp, .. } => Some((absolute.clone(), *stamp)),
            _ => None,
        })
        .collect();
    let (digests, bytes_read) = digest_files(&files, cache)?;
    let mut manifest = Sha256::new();
    let mut next = digests.iter();
    let mut bytes = 0;
    for entry in &entries {
        match entry {
            Entry::Dir(relative) => manifest.update(format!("dir {relative}\0")),
            Entry::Link { relative, target } => {
                manifest.update(format!("link {relative}\0{target}\0"))
            }
            Entry::File { relative, stamp, .. } => {
                let digest = next.next().expect("a digest for every file");
                manifest.update(format!("file {relative}\0{}\0", stamp.size));
                manifest.update(digest);
                bytes += stamp.size;
            }
        }
    }
    Ok(DataDigest {
        digest: format!("sha256:{}", hex::encode(manifest.finalize())),
        directory: true,
        files: files.len() as u64,
        bytes,
        bytes_read,
    })
}

fn name(entry: &Entry) -> &str {
    match entry {
        Entry::Dir(relative) | Entry::File { relative, .. } | Entry::Link { relative, .. } => {
            relative
        }
    }
}

/// Lists everything under `dir`, links as links; a name that is not UTF-8 is kept lossily
/// in the manifest (the file is still read by its real name).
fn walk(dir: &Path, prefix: &str, entries: &mut Vec<Entry>) -> Result<(), DigestError> {
    for item in fs::read_dir(dir).map_err(io_error(dir))? {
        let item = item.map_err(io_error(dir))?;
        let absolute = item.path();
        let relative = format!("{prefix}{}", item.file_name().to_string_lossy());
        let metadata = fs::symlink_metadata(&absolute).map_err(io_error(&absolute))?;
        if metadata.file_type().is_symlink() {
            let target = fs::read_link(&absolute).map_err(io_error(&absolute))?;
            entries.push(Entry::Link { relative, target: target.to_string_lossy().into_owned() });
        } else if metadata.is_dir() {
            walk(&absolute, &format!("{relative}/"), entries)?;
            entries.push(Entry::Dir(relative));
        } else if metadata.is_file() {
            entries.push(Entry::File { relative, absolute, stamp: Stamp::of(&metadata) });
        }
        // Sockets, FIFOs and devices hold no data to pin.
    }
    Ok(())
}

/// The digests of `files`, in order: from the cache where the stamp still matches, else read
/// on every core. A file that changed while it was read is not cached.
fn digest_files(
    files: &[(PathBuf, Stamp)],
    cache: &mut DigestCache,
) -> Result<(Vec<[u8; 32]>, u64), DigestError> {
    let mut digests: Vec<Option<[u8; 32]>> =
        files.iter().map(|(path, stamp)| cache.get(path, *stamp)).collect();
    let missing: Vec<usize> = (0..files.len()).filter(|&index| digests[index].is_none()).collect();
    if missing.is_empty() {
        return Ok((digests.into_iter().map(Option::unwrap).collect(), 0));
    }
    let bytes_read: u64 = missing.iter().map(|&index| files[index].1.size).sum();
    let settled_before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.saturating_sub(SETTLE).as_nanos() as i128);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(missing.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, FileResult)>> = Mutex::new(Vec::with_capacity(missing.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buffer = vec![0u8; 1 << 20];
                loop {
                    let slot = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&index) = missing.get(slot) else { break };
                    let (path, stamp) = &files[index];
                    let result = hash_file(path, *stamp, &mut buffer);
                    results.lock().expect("no panic holds this lock").push((index, result));
                }
            });
        }
    });
    for (index, result) in results.into_inner().expect("the threads are done") {
        let (digest, unchanged) = result?;
        let stamp = files[index].1;
        if unchanged && stamp.ctime_ns < settled_before && stamp.mtime_ns < settled_before {
            cache.put(files[index].0.clone(), files[index].1, digest);
        }
        digests[index] = Some(digest);
    }
    Ok((
        digests.into_iter().map(|digest| digest.expect("every file digested")).collect(),
        bytes_read,
    ))
}

/// A file's sha256, and whether it still had the stamp it was listed with once read.
type FileResult = Result<([u8; 32], bool), DigestError>;

fn hash_file(path: &Path, stamp: Stamp, buffer: &mut [u8]) -> FileResult {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    loop {
        let read = match file.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(io_error(path)(error)),
        };
        hasher.update(&buffer[..read]);
    }
    let after = file.metadata().map(|metadata| Stamp::of(&metadata)).map_err(io_error(path))?;
    Ok((hasher.finalize().into(), after == stamp))
}

/// Where `path`, as a container sees it, is on the Docker host: under the host directory of
/// the bind mount (`/host:container[:options]`) that holds it, the longest such mount point
/// winning; none when no bind mount does (the path is in the image, or in a named volume).
pub fn through_volumes(path: &str, volumes: &[String]) -> Option<PathBuf> {
    let path = Path::new(path);
    volumes
        .iter()
        .filter_map(|volume| {
            let mut parts = volume.split(':');
            let (host, container) = (parts.next()?, parts.next()?);
            if !host.starts_with('/') {
                return None;
            }
            let rest = path.strip_prefix(container).ok()?;
            Some((container.len(), Path::new(host).join(rest)))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, host)| host)
}

/// A parameter that names data: a `path` one, or a `uri` one (or a `path` given a URI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataParam {
    pub name: String,
    /// As the command gets it: relative to the project when it travels in the snapshot.
    pub value: String,
    pub kind: DataKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    /// Inside the project: digested where the project is packed.
    ProjectPath,
    /// Outside the project (absolute): digested on the worker, where the run reads it.
    HostPath,
    /// Recorded as a source only.
    Uri,
}

impl crate::MlProject {
    /// The parameters of `entry` that name data, with the values the run was given.
    pub fn data_params(&self, entry: &str, params: &[(String, String)]) -> Vec<DataParam> {
        let Some(entry_point) = self.entry_points.get(entry) else { return Vec::new() };
        params
            .iter()
            .filter_map(|(name, value)| {
                let spec = entry_point.parameters.iter().find(|spec| spec.name == *name)?;
                let kind = match spec.kind {
                    _ if value.is_empty() => return None,
                    crate::ParamType::Uri => DataKind::Uri,
                    crate::ParamType::Path if value.contains("://") => DataKind::Uri,
                    crate::ParamType::Path if Path::new(value).is_absolute() => DataKind::HostPath,
                    crate::ParamType::Path => DataKind::ProjectPath,
                    _ => return None,
                };
                Some(DataParam { name: name.clone(), value: value.clone(), kind })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn a_file_digests_to_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.csv");
        write(&file, "hello\n");
        let digest = digest_path(&file, &mut DigestCache::in_memory()).unwrap();
        // sha256sum of "hello\n".
        assert_eq!(
            digest.digest,
            "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!((digest.files, digest.bytes, digest.directory), (1, 6, false));
    }

    #[test]
    fn a_directory_digest_follows_content_names_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write(&data.join("a.csv"), "1,2\n");
        write(&data.join("sub/b.csv"), "3,4\n");
        let mut cache = DigestCache::in_memory();
        // Files this fresh are read every time.
        let fresh = digest_path(&data, &mut cache).unwrap();
        assert_eq!((fresh.files, fresh.bytes, fresh.bytes_read), (2, 8, 8));
        let first = digest_path(&data, &mut cache).unwrap();
        assert_eq!((first.digest.as_str(), first.bytes_read), (fresh.digest.as_str(), 8));
        std::thread::sleep(SETTLE);
        assert_eq!(digest_path(&data, &mut cache).unwrap().bytes_read, 8);
        // Nothing changed: the same digest, and nothing read.
        let again = digest_path(&data, &mut cache).unwrap();
        assert_eq!((again.digest.as_str(), again.bytes_read), (first.digest.as_str(), 0));
        // One changed file: a new digest, and only that file read.
        write(&data.join("sub/b.csv"), "3,5\n");
        let changed = digest_path(&data, &mut cache).unwrap();
        assert_ne!(changed.digest, first.digest);
        assert_eq!(changed.bytes_read, 4);
        // A renamed file changes the digest too, as does a link.
        fs::rename(data.join("a.csv"), data.join("c.csv")).unwrap();
        let renamed = digest_path(&data, &mut cache).unwrap();
        assert_ne!(renamed.digest, changed.digest);
        std::os::unix::fs::symlink("c.csv", data.join("link")).unwrap();
        let linked = digest_path(&data, &mut cache).unwrap();
        assert_ne!(linked.digest, renamed.digest);
        assert_eq!(linked.files, 2);
    }

    #[test]
    fn the_cache_survives_in_its_file_and_a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write(&data.join("x"), "x");
        std::thread::sleep(SETTLE);
        let cache_file = dir.path().join("cache/digests");
        let mut cache = DigestCache::open(&cache_file);
        let first = digest_path(&data, &mut cache).unwrap();
        cache.save().unwrap();
        let mut text = fs::read_to_string(&cache_file).unwrap();
        text.push_str("not a line\n0123\t1");
        fs::write(&cache_file, text).unwrap();
        let mut reopened = DigestCache::open(&cache_file);
        let second = digest_path(&data, &mut reopened).unwrap();
        assert_eq!((second.digest, second.bytes_read), (first.digest, 0));
    }

    #[test]
    fn a_missing_path_names_itself() {
        let error =
            digest_path(Path::new("/nonexistent/data"), &mut DigestCache::in_memory()).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/data"), "{error}");
    }
}
