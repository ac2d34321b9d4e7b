//! Project snapshots: a deterministic tar of a project directory, named by its sha256, and
//! its safe extraction on a worker.
//!
//! Packing honours `.gitignore` and `.droverignore` and leaves out `.git/` and `.drover/`.
//! Entries are sorted and carry no owner, time or umask, so the same tree always packs to
//! the same digest. Extraction trusts nothing: absolute paths, `..`, links leading out of the
//! directory, hard links, devices and oversize archives are refused with the reason.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Largest snapshot accepted by default, packed or unpacked.
pub const DEFAULT_SIZE_LIMIT: u64 = 1 << 30;

const EXCLUDED_DIRS: &[&str] = &[".git", ".drover"];
pub const IGNORE_FILE: &str = ".droverignore";

/// A snapshot's name: `sha256:` and 64 lowercase hex characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotDigest(String);

impl SnapshotDigest {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex characters, for file names.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    fn from_hasher(hasher: Sha256) -> SnapshotDigest {
        SnapshotDigest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }
}

impl serde::Serialize for SnapshotDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SnapshotDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for SnapshotDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SnapshotDigest {
    type Err = SnapshotError;

    fn from_str(text: &str) -> Result<Self, SnapshotError> {
        let valid = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if valid {
            Ok(SnapshotDigest(text.to_string()))
        } else {
            Err(SnapshotError::Refused(format!(
                "invalid snapshot digest '{text}': expected sha256:<64 hex characters>"
            )))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("the snapshot is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Refused(String),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.display().to_string(), source }
}

/// A packed snapshot in a temporary file, deleted when dropped.
pub struct PackedSnapshot {
    pub file: tempfile::NamedTempFile,
    pub digest: SnapshotDigest,
    pub size: u64,
    pub files: usize,
    /// Every path packed (files, links and directories), relative to the project.
    pub entries: Vec<PathBuf>,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packs `dir` into a deterministic tar, refusing projects over `limit` bytes.
pub fn pack(dir: &Path, limit: u64) -> Result<PackedSnapshot, SnapshotError> {
    let root = dir.canonicalize().map_err(io_error(dir))?;
    let mut entries = Vec::new();
    let walker = ignore::WalkBuilder::new(&root)
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_global(false)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|entry| !EXCLUDED_DIRS.iter().any(|name| entry.file_name() == *name))
        .build();
    for entry in walker {
        let entry = entry
            .map_err(|error| SnapshotError::Refused(format!("cannot read the project: {error}")))?;
        if entry.depth() == 0 {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(&root)
            .map_err(|_| {
                SnapshotError::Refused(format!("{} is outside the project", entry.path().display()))
            })?
            .to_path_buf();
        entries.push(relative);
    }
    entries.sort();

    let file = tempfile::NamedTempFile::new().map_err(io_error(Path::new("temporary snapshot")))?;
    let writer = Hashing {
        inner: BufWriter::new(file.reopen().map_err(io_error(file.path()))?),
        hasher: Sha256::new(),
        written: 0,
    };
    let mut builder = tar::Builder::new(writer);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut total = 0u64;
    let mut files = 0usize;
    for relative in &entries {
        let path = root.join(relative);
        let metadata = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, relative, io::empty()).map_err(io_error(&path))?;
        } else if file_type.is_file() {
            total += metadata.len();
            if total > limit {
                return Err(SnapshotError::TooLarge { size: total, limit });
            }
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if is_executable(&metadata) { 0o755 } else { 0o644 });
            header.set_size(metadata.len());
            let content = File::open(&path).map_err(io_error(&path))?;
            builder
                .append_data(&mut header, relative, content.take(metadata.len()))
                .map_err(io_error(&path))?;
            files += 1;
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_error(&path))?;
            if !link_stays_inside(relative, &target) {
                return Err(SnapshotError::Refused(format!(
                    "the project's link '{}' points outside the project ({}); list it in {IGNORE_FILE}, or mount the data with docker_env volumes",
                    relative.display(),
                    target.display()
                )));
            }
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, relative, &target).map_err(io_error(&path))?;
        }
        // Sockets and FIFOs cannot travel in a snapshot; they are left out.
    }
    let mut writer = builder.into_inner().map_err(io_error(file.path()))?;
    writer.flush().map_err(io_error(file.path()))?;
    let size = writer.written;
    let digest = SnapshotDigest::from_hasher(writer.hasher);
    if size > limit {
        return Err(SnapshotError::TooLarge { size, limit });
    }
    Ok(PackedSnapshot { file, digest, size, files, entries })
}

fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

/// Whether a link at `link` (relative to the root) pointing to `target` resolves inside the
/// root, judged lexically.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = 0;
    let parent = link.parent().unwrap_or(Path::new(""));
    for component in parent.components().chain(target.components()) {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Computes the digest of an archive on disk.
pub fn digest_file(path: &Path) -> Result<SnapshotDigest, SnapshotError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(io_error(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(SnapshotDigest::from_hasher(hasher))
}

/// Extracts the archive at `archive` into `dest` (created if missing), refusing anything that
/// could write outside `dest` or exceed `limit` bytes.
pub fn unpack(archive: &Path, dest: &Path, limit: u64) -> Result<(), SnapshotError> {
    let file = File::open(archive).map_err(io_error(archive))?;
    let archive_size = file.metadata().map_err(io_error(archive))?.len();
    if archive_size > limit {
        return Err(SnapshotError::TooLarge { size: archive_size, limit });
    }
    std::fs::create_dir_all(dest).map_err(io_error(dest))?;
    let root = dest.canonicalize().map_err(io_error(dest))?;
    let mut tar = tar::Archive::new(file);
    let mut total = 0u64;
    let refused = |path: &Path, why: &str| {
        SnapshotError::Refused(format!("snapshot entry '{}' refused: {why}", path.display()))
    };
    for entry in tar.entries().map_err(io_error(archive))? {
        let mut entry = entry.map_err(io_error(archive))?;
        let path = entry.path().map_err(io_error(archive))?.into_owned();
        let mut relative = PathBuf::new();
        for component in path.components() {
            match component {
                Component::Normal(part) => relative.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(refused(&path, "it contains a '..' component")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refused(&path, "it is an absolute path"));
                }
            }
        }
        if relative.as_os_str().is_empty() {
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > limit {
            return Err(SnapshotError::TooLarge { size: total, limit });
        }
        let target = root.join(&relative);
        let entry_type = entry.header().entry_type();
        match entry_type {
            tar::EntryType::Directory => {
                ensure_parent_inside(&root, &target).map_err(|why| refused(&path, &why))?;
                std::fs::create_dir_all(&target).map_err(io_error(&target))?;
                ensure_inside(&root, &target).map_err(|why| refused(&path, &why))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                ensure_parent_inside(&root, &target).map_err(|why| refused(&path, &why))?;
                if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(refused(&path, "it would write through a link"));
                }
                let mode = entry.header().mode().unwrap_or(0o644);
                let mut out = File::create(&target).map_err(io_error(&target))?;
                io::copy(&mut entry, &mut out).map_err(io_error(&target))?;
                use std::os::unix::fs::PermissionsExt;
                let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .map_err(io_error(&target))?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(io_error(archive))?
                    .ok_or_else(|| refused(&path, "a link without a target"))?
                    .into_owned();
                if !link_stays_inside(&relative, &link) {
                    return Err(refused(
                        &path,
                        &format!("it links to '{}', outside the snapshot", link.display()),
                    ));
                }
                ensure_parent_inside(&root, &target).map_err(|why| refused(&path, &why))?;
                if std::fs::symlink_metadata(&target).is_ok() {
                    return Err(refused(&path, "a link would replace an existing entry"));
                }
                std::os::unix::fs::symlink(&link, &target).map_err(io_error(&target))?;
            }
            tar::EntryType::Link => return Err(refused(&path, "hard links are not accepted")),
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(refused(&path, "device files are not accepted"));
            }
            tar::EntryType::Fifo => return Err(refused(&path, "FIFOs are not accepted")),
            other => return Err(refused(&path, &format!("entry type {other:?} is not accepted"))),
        }
    }
    Ok(())
}

/// Creates `target`'s parent directories and checks that, with links resolved, they are
/// inside `root`.
fn ensure_parent_inside(root: &Path, target: &Path) -> Result<(), String> {
    let parent = target.parent().ok_or("it has no parent directory")?;
    std::fs::create_dir_all(parent)
        .map_err(|error| format!("cannot create its directory: {error}"))?;
    ensure_inside(root, parent)
}

fn ensure_inside(root: &Path, path: &Path) -> Result<(), String> {
    let resolved = path.canonicalize().map_err(|error| format!("cannot resolve it: {error}"))?;
    if resolved.starts_with(root) {
        Ok(())
    } else {
        Err("it resolves outside the snapshot".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn packing_is_deterministic_and_honours_ignores() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("train.py"), "print(1)");
        write(&root.join("data/a.csv"), "1,2");
        write(&root.join(".gitignore"), "*.log\n");
        write(&root.join(".droverignore"), "secret/\n");
        write(&root.join("debug.log"), "noise");
        write(&root.join("secret/key"), "k");
        write(&root.join(".git/HEAD"), "ref");
        write(&root.join(".drover/db"), "store");
        std::os::unix::fs::symlink("data/a.csv", root.join("link.csv")).unwrap();

        let first = pack(root, DEFAULT_SIZE_LIMIT).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&root.join("debug.log"), "more noise"); // ignored: no change
        let second = pack(root, DEFAULT_SIZE_LIMIT).unwrap();
        assert_eq!(first.digest, second.digest);
        assert_eq!(digest_file(first.file.path()).unwrap(), first.digest);
        assert_eq!(first.files, 4); // train.py, data/a.csv, .gitignore, .droverignore

        let out = tempfile::tempdir().unwrap();
        unpack(first.file.path(), out.path(), DEFAULT_SIZE_LIMIT).unwrap();
        assert_eq!(std::fs::read_to_string(out.path().join("link.csv")).unwrap(), "1,2");
        assert!(!out.path().join("debug.log").exists());
        assert!(!out.path().join("secret").exists());
        assert!(!out.path().join(".git").exists());
        assert!(!out.path().join(".drover").exists());

        write(&root.join("train.py"), "print(2)");
        assert_ne!(pack(root, DEFAULT_SIZE_LIMIT).unwrap().digest, first.digest);
    }

    #[test]
    fn packing_refuses_escaping_links_and_oversize_projects() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("big.bin"), &"x".repeat(2048));
        assert!(matches!(pack(dir.path(), 1024), Err(SnapshotError::TooLarge { .. })));
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let error = pack(dir.path(), DEFAULT_SIZE_LIMIT).err().unwrap().to_string();
        assert!(error.contains("points outside the project"), "{error}");
    }

    #[test]
    fn digests_parse_strictly() {
        let hex = "a".repeat(64);
        assert!(format!("sha256:{hex}").parse::<SnapshotDigest>().is_ok());
        assert!(hex.parse::<SnapshotDigest>().is_err());
        assert!(format!("sha256:{}", "A".repeat(64)).parse::<SnapshotDigest>().is_err());
    }

    /// An archive entry: path, type, link target, content.
    type RawEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

    /// Writes an archive with raw headers, the way a hostile client could.
    fn hostile(entries: &[RawEntry<'_>]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut builder = tar::Builder::new(file.reopen().unwrap());
        for (path, kind, link, data) in entries {
            let mut header = tar::Header::new_gnu();
            let name = &mut header.as_gnu_mut().unwrap().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap();
        file
    }

    #[test]
    fn hostile_archives_are_refused_without_writing_outside() {
        use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};
        let cases: Vec<(Vec<RawEntry<'_>>, &str)> = vec![
            (vec![("/tmp/drover-absolute", Regular, "", b"x")], "absolute path"),
            (vec![("../escape", Regular, "", b"x")], "'..'"),
            (vec![("a/../../escape", Regular, "", b"x")], "'..'"),
            (vec![("out", Symlink, "/etc", b"")], "outside the snapshot"),
            (vec![("out", Symlink, "../..", b"")], "outside the snapshot"),
            (
                vec![("dir", Directory, "", b""), ("dir/up", Symlink, "../../x", b"")],
                "outside the snapshot",
            ),
            (vec![("hard", Link, "/etc/passwd", b"")], "hard links"),
            (vec![("tty", Char, "", b"")], "device files"),
            (vec![("disk", Block, "", b"")], "device files"),
            (vec![("pipe", Fifo, "", b"")], "FIFOs"),
        ];
        for (entries, expected) in cases {
            let archive = hostile(&entries);
            let parent = tempfile::tempdir().unwrap();
            let dest = parent.path().join("run");
            let error = unpack(archive.path(), &dest, DEFAULT_SIZE_LIMIT).unwrap_err().to_string();
            assert!(error.contains(expected), "{:?}: {error}", entries[entries.len() - 1].0);
            assert!(!parent.path().join("escape").exists());
        }
        assert!(!Path::new("/tmp/drover-absolute").exists());

        // A link that stays inside is fine, but nothing may be written through a link.
        let archive = hostile(&[
            ("inner", Directory, "", b""),
            ("alias", Symlink, "inner", b""),
            ("alias/file", Regular, "", b"ok"),
        ]);
        let dest = tempfile::tempdir().unwrap();
        let error = unpack(archive.path(), dest.path(), DEFAULT_SIZE_LIMIT);
        // Writing into a directory reached through an inside link stays inside: accepted.
        assert!(error.is_ok(), "{error:?}");
        assert_eq!(std::fs::read_to_string(dest.path().join("inner/file")).unwrap(), "ok");
    }

    #[test]
    fn oversize_archives_are_refused() {
        let big = vec![b'x'; 4096];
        let archive = hostile(&[("big.bin", tar::EntryType::Regular, "", &big)]);
        let dest = tempfile::tempdir().unwrap();
        let error = unpack(archive.path(), dest.path(), 1024).unwrap_err();
        assert!(matches!(error, SnapshotError::TooLarge { .. }), "{error}");
    }
}
