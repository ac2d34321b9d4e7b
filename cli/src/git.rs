//! A project's source control facts as run tags: the commit, the remote, the branch, whether
//! the work tree is dirty, and a dirty tree's diff against the commit (kept with the
//! snapshot). Three `git` processes read them in the background, started before anything
//! else, so a submission does not wait for them in turn.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use drover_proto::domain::Tag;
use drover_proto::tags;

/// The git facts of a project directory, being read or read.
pub struct GitFacts {
    /// `git status --porcelain=v2 --branch -- .`: the commit, the branch and what changed.
    status: Option<Child>,
    /// `git remote get-url origin`.
    remote: Option<Child>,
    /// `git diff HEAD --binary --relative -- .`: what the tree changes of the commit.
    diff: Option<Child>,
    tags: Option<Vec<Tag>>,
    /// A dirty tree's commit and its diff against it, once read.
    source_diff: Option<(String, Vec<u8>)>,
}

impl GitFacts {
    /// Starts reading the facts of `dir`; outside a git work tree there are none, and no
    /// `git` is started to find that out.
    pub fn start(dir: &Path) -> GitFacts {
        if !in_work_tree(dir) {
            return GitFacts {
                status: None,
                remote: None,
                diff: None,
                tags: Some(Vec::new()),
                source_diff: None,
            };
        }
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        };
        GitFacts {
            status: git(&["status", "--porcelain=v2", "--branch", "--", "."]),
            remote: git(&["remote", "get-url", "origin"]),
            // Whatever the user's configuration: plain, a/ and b/ prefixes, no renames (each
            // section names one path), paths unquoted but for control characters.
            diff: git(&[
                "-c",
                "core.quotePath=false",
                "diff",
                "HEAD",
                "--binary",
                "--relative",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--no-renames",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                "--",
                ".",
            ]),
            tags: None,
            source_diff: None,
        }
    }

    /// Whether a dirty tree's diff is to be kept beside the snapshot (known once `tags` ran).
    pub fn has_source_diff(&self) -> bool {
        self.source_diff.is_some()
    }

    /// A dirty tree's commit and its changes against it, as [`GitFacts::tags`] found them.
    pub fn source_diff(&self) -> Option<(String, Vec<u8>)> {
        self.source_diff.clone()
    }

    /// The facts as tags, waiting for `git` the first time. A dirty tree's diff keeps only
    /// what `in_snapshot` holds (and deletions): files the snapshot leaves out stay out.
    pub fn tags(&mut self, in_snapshot: &dyn Fn(&str) -> bool) -> Vec<Tag> {
        if self.tags.is_none() {
            let status = output(self.status.take());
            let remote = output(self.remote.take());
            let diff = output_bytes(self.diff.take(), MAX_DIFF);
            let mut tags =
                status.as_deref().map_or_else(Vec::new, |status| source_tags(status, remote));
            let dirty = tags.iter().any(|tag| tag.key == tags::GIT_DIRTY && tag.value == "true");
            let commit =
                tags.iter().find(|tag| tag.key == tags::GIT_COMMIT).map(|tag| tag.value.clone());
            if let (true, Some(commit), Some(status)) = (dirty, commit, status) {
                match diff {
                    Some(diff) => {
                        let (patch, summary) = source_diff(&status, &diff, in_snapshot);
                        tags.push(Tag::new(tags::GIT_DIFF, summary));
                        self.source_diff = Some((commit, patch));
                    }
                    None => tags.push(Tag::new(
                        tags::GIT_DIFF,
                        format!("not kept: over {MAX_DIFF} bytes (the snapshot holds the files)"),
                    )),
                }
            }
            self.tags = Some(tags);
        }
        self.tags.clone().unwrap_or_default()
    }
}

/// The largest diff read from `git` (the scheduler keeps up to this much).
const MAX_DIFF: usize = 2 << 20;

/// Whether `dir` may be inside a git work tree: a `.git` in it or above it, or `GIT_DIR` set.
fn in_work_tree(dir: &Path) -> bool {
    if std::env::var_os("GIT_DIR").is_some() {
        return true;
    }
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.ancestors().any(|ancestor| ancestor.join(".git").exists())
}

/// What a `git` process printed, if it succeeded.
fn output(child: Option<Child>) -> Option<String> {
    let output = child?.wait_with_output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// What a `git` process printed, byte for byte, if it succeeded within `limit` bytes.
fn output_bytes(child: Option<Child>, limit: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut child = child?;
    let mut bytes = Vec::new();
    let stdout = child.stdout.take()?;
    let read = stdout.take(limit as u64 + 1).read_to_end(&mut bytes);
    if read.is_err() || bytes.len() > limit {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    child.wait().ok()?.success().then_some(bytes)
}

/// The path one section of `git diff --no-renames` is about, from its first line.
fn section_path(header: &str) -> Option<String> {
    let both = header.strip_prefix("diff --git ")?;
    if let Some(quoted) = both.strip_prefix('"') {
        // A path with control characters: "a/..." "b/...", C-style escapes.
        let mut path = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next()? {
                    't' => path.push('\t'),
                    'n' => path.push('\n'),
                    other => path.push(other),
                },
                other => path.push(other),
            }
        }
        return path.strip_prefix("a/").map(str::to_string);
    }
    // "a/P b/P": the same path twice.
    let length = both.len().checked_sub(5)? / 2;
    both.get(2..2 + length).map(str::to_string)
}

/// A dirty tree's changes: the untracked files listed first (as lines `git apply` skips),
/// then the tracked files' diff; and its summary, `+A -D in N files`.
fn source_diff(status: &str, diff: &[u8], in_snapshot: &dyn Fn(&str) -> bool) -> (Vec<u8>, String) {
    let untracked: Vec<&str> = status
        .lines()
        .filter_map(|line| line.strip_prefix("? "))
        .filter(|path| in_snapshot(path.trim_end_matches('/')))
        .collect();
    let mut patch = Vec::new();
    if !untracked.is_empty() {
        patch.extend_from_slice(b"# untracked files, in the snapshot but not in the commit:\n");
        for path in &untracked {
            patch.extend_from_slice(format!("#   {path}\n").as_bytes());
        }
    }
    // Sections start at lines "diff --git "; each is kept whole or left out.
    let mut starts: Vec<usize> = diff
        .windows(12)
        .enumerate()
        .filter(|(at, window)| {
            *window == b"\ndiff --git " || (*at == 0 && window.starts_with(b"diff --git "))
        })
        .map(|(at, _)| if at == 0 && diff.starts_with(b"diff --git ") { 0 } else { at + 1 })
        .collect();
    starts.dedup();
    let (mut files, mut added, mut removed) = (0, 0, 0);
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(diff.len());
        let section = &diff[start..end];
        let text = String::from_utf8_lossy(section);
        let header = text.lines().next().unwrap_or_default();
        let deleted = text.lines().take(4).any(|line| line.starts_with("deleted file mode"));
        let keep = section_path(header).is_some_and(|path| deleted || in_snapshot(&path));
        if !keep {
            continue;
        }
        files += 1;
        for line in text.lines() {
            if line.starts_with('+') && !line.starts_with("+++") {
                added += 1;
            } else if line.starts_with('-') && !line.starts_with("---") {
                removed += 1;
            }
        }
        patch.extend_from_slice(section);
    }
    if !patch.is_empty() && !patch.ends_with(b"\n") {
        patch.push(b'\n');
    }
    let mut summary =
        format!("+{added} -{removed} in {files} file{}", if files == 1 { "" } else { "s" });
    if !untracked.is_empty() {
        summary.push_str(&format!(", {} untracked", untracked.len()));
    }
    (patch, summary)
}

/// Tags from `git status --porcelain=v2 --branch` and the remote's URL. A repository
/// without a commit yet has no facts to record.
fn source_tags(status: &str, remote: Option<String>) -> Vec<Tag> {
    let header = |name: &str| {
        status.lines().find_map(|line| line.strip_prefix(&format!("# branch.{name} ")))
    };
    let Some(commit) = header("oid").filter(|oid| *oid != "(initial)") else { return Vec::new() };
    let mut source = vec![Tag::new(tags::GIT_COMMIT, commit)];
    if let Some(url) = remote.filter(|url| !url.is_empty()) {
        source.push(Tag::new(tags::GIT_REPO_URL, url));
    }
    if let Some(branch) = header("head").filter(|head| *head != "(detached)") {
        source.push(Tag::new(tags::GIT_BRANCH, branch));
    }
    let dirty = status.lines().any(|line| !line.starts_with('#') && !line.is_empty());
    source.push(Tag::new(tags::GIT_DIRTY, if dirty { "true" } else { "false" }));
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(tags: &[Tag], key: &str) -> Option<String> {
        tags.iter().find(|tag| tag.key == key).map(|tag| tag.value.clone())
    }

    #[test]
    fn reads_commit_branch_remote_and_dirtiness() {
        let clean = "# branch.oid 0123abcd\n# branch.head main\n# branch.upstream origin/main\n# branch.ab +0 -0";
        let tags = source_tags(clean, Some("https://example.invalid/x.git".into()));
        assert_eq!(value(&tags, tags::GIT_COMMIT).as_deref(), Some("0123abcd"));
        assert_eq!(value(&tags, tags::GIT_BRANCH).as_deref(), Some("main"));
        assert_eq!(
            value(&tags, tags::GIT_REPO_URL).as_deref(),
            Some("https://example.invalid/x.git")
        );
        assert_eq!(value(&tags, tags::GIT_DIRTY).as_deref(), Some("false"));

        let dirty = "# branch.oid 0123abcd\n# branch.head (detached)\n? new.py";
        let tags = source_tags(dirty, None);
        assert_eq!(value(&tags, tags::GIT_BRANCH), None);
        assert_eq!(value(&tags, tags::GIT_REPO_URL), None);
        assert_eq!(value(&tags, tags::GIT_DIRTY).as_deref(), Some("true"));

        assert!(source_tags("# branch.oid (initial)\n# branch.head main", None).is_empty());
    }
}
