//! What differs between two snapshots: files added, removed and changed, by content digest,
//! and for each changed text file its unified diff. Archives are read as streams; only files
//! small enough to be worth a diff are kept in memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::snapshot::SnapshotError;

/// Files larger than this are compared by digest only.
const PATCH_LIMIT: u64 = 1 << 20;
/// Lines of context around each change, as `diff -u`.
const CONTEXT: usize = 3;
/// How long one file's diff may search for the smallest change before it settles for a
/// larger one (a diff of two unrelated 1 MiB files would otherwise take minutes).
const FILE_DIFF_TIME: Duration = Duration::from_millis(200);
/// The patches one comparison writes at most; files past it are listed without theirs.
const PATCH_BUDGET: usize = 8 << 20;

/// One entry of a snapshot, as far as a comparison needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// sha256 of the content (a link's target for a link), with the kind and the mode.
    digest: [u8; 32],
    size: u64,
    /// The bytes of a file small enough to diff.
    content: Option<Vec<u8>>,
}

/// A snapshot's entries by path, read from its archive.
#[derive(Debug, Default)]
pub struct Tree(BTreeMap<String, Entry>);

impl Tree {
    /// Reads a snapshot archive; directories are left out (a snapshot's tree is its files).
    pub fn read(archive: impl Read) -> Result<Tree, SnapshotError> {
        let mut tar = tar::Archive::new(archive);
        let mut tree = BTreeMap::new();
        let unreadable = |error: std::io::Error| SnapshotError::Io {
            path: "snapshot archive".to_string(),
            source: error,
        };
        for entry in tar.entries().map_err(unreadable)? {
            let mut entry = entry.map_err(unreadable)?;
            let path = entry.path().map_err(unreadable)?.to_string_lossy().into_owned();
            let path = path.trim_start_matches("./").to_string();
            let kind = entry.header().entry_type();
            let mut hasher = Sha256::new();
            let size = entry.size();
            let content = match kind {
                tar::EntryType::Symlink => {
                    let target = entry.link_name().map_err(unreadable)?.unwrap_or_default();
                    hasher.update(b"link\0");
                    hasher.update(target.to_string_lossy().as_bytes());
                    None
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let executable = entry.header().mode().unwrap_or(0) & 0o111 != 0;
                    hasher.update(if executable { b"exec\0" } else { b"file\0" });
                    if size <= PATCH_LIMIT {
                        let mut bytes = Vec::with_capacity(size as usize);
                        entry.read_to_end(&mut bytes).map_err(unreadable)?;
                        hasher.update(&bytes);
                        Some(bytes)
                    } else {
                        let mut buffer = vec![0u8; 1 << 16];
                        loop {
                            let read = entry.read(&mut buffer).map_err(unreadable)?;
                            if read == 0 {
                                break;
                            }
                            hasher.update(&buffer[..read]);
                        }
                        None
                    }
                }
                _ => continue,
            };
            tree.insert(path, Entry { digest: hasher.finalize().into(), size, content });
        }
        Ok(Tree(tree))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What differs between two trees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CodeDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<ChangedFile>,
}

impl CodeDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangedFile {
    pub path: String,
    /// Lines added and removed, for a text file.
    pub insertions: usize,
    pub deletions: usize,
    /// The unified diff of a text file; none for a binary or large one, a mode change, or
    /// once the comparison's patches reach 8 MiB.
    pub patch: Option<String>,
}

/// Compares `a` and `b`, paths in byte order.
pub fn compare(a: &Tree, b: &Tree) -> CodeDiff {
    let mut diff = CodeDiff::default();
    let mut budget = PATCH_BUDGET;
    for (path, old) in &a.0 {
        match b.0.get(path) {
            None => diff.removed.push(path.clone()),
            Some(new) if new.digest != old.digest => {
                let mut file = changed(path, old, new);
                match &file.patch {
                    Some(patch) if patch.len() <= budget => budget -= patch.len(),
                    Some(_) => {
                        budget = 0;
                        file.patch = None;
                    }
                    None => {}
                }
                diff.changed.push(file);
            }
            Some(_) => {}
        }
    }
    diff.added = b.0.keys().filter(|path| !a.0.contains_key(*path)).cloned().collect();
    diff
}

fn text(entry: &Entry) -> Option<&str> {
    let bytes = entry.content.as_deref()?;
    if bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

fn changed(path: &str, old: &Entry, new: &Entry) -> ChangedFile {
    let (Some(before), Some(after)) = (text(old), text(new)) else {
        return ChangedFile { path: path.to_string(), insertions: 0, deletions: 0, patch: None };
    };
    let lines = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Patience)
        .timeout(FILE_DIFF_TIME)
        .diff_lines(before, after);
    let (mut insertions, mut deletions) = (0, 0);
    for change in lines.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => insertions += 1,
            similar::ChangeTag::Delete => deletions += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let patch = (insertions + deletions > 0).then(|| {
        lines
            .unified_diff()
            .context_radius(CONTEXT)
            .header(&format!("a/{path}"), &format!("b/{path}"))
            .to_string()
    });
    ChangedFile { path: path.to_string(), insertions, deletions, patch }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot;

    fn tree(files: &[(&str, &str)]) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let packed = snapshot::pack(dir.path(), snapshot::DEFAULT_SIZE_LIMIT).unwrap();
        Tree::read(std::fs::File::open(packed.file.path()).unwrap()).unwrap()
    }

    #[test]
    fn one_edited_file_is_the_whole_difference_with_its_hunk() {
        let body: String = (1..=20).map(|line| format!("line {line}\n")).collect();
        let edited = body.replace("line 10\n", "line ten\n");
        let a = tree(&[("train.py", &body), ("data/x.csv", "1\n"), ("old.txt", "gone\n")]);
        let b = tree(&[("train.py", &edited), ("data/x.csv", "1\n"), ("new.txt", "here\n")]);
        let diff = compare(&a, &b);
        assert_eq!(diff.added, vec!["new.txt"]);
        assert_eq!(diff.removed, vec!["old.txt"]);
        assert_eq!(diff.changed.len(), 1);
        let file = &diff.changed[0];
        assert_eq!((file.path.as_str(), file.insertions, file.deletions), ("train.py", 1, 1));
        let patch = file.patch.as_deref().unwrap();
        assert!(patch.starts_with("--- a/train.py\n+++ b/train.py\n@@ -7,7 +7,7 @@\n"), "{patch}");
        assert!(patch.contains("-line 10\n+line ten\n"), "{patch}");
        assert!(compare(&a, &a).is_empty());
    }

    #[test]
    fn a_binary_file_is_compared_without_a_patch() {
        let a = tree(&[("model.bin", "\0\u{1}")]);
        let b = tree(&[("model.bin", "\0\u{2}")]);
        let diff = compare(&a, &b);
        assert_eq!(diff.changed[0].patch, None);
    }
}
