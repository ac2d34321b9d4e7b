//! A project's source control facts as run tags: the commit, the remote, the branch and
//! whether the work tree is dirty. Two `git` processes read them in the background, started
//! before anything else, so a submission does not wait for them in turn.

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
    tags: Option<Vec<Tag>>,
}

impl GitFacts {
    /// Starts reading the facts of `dir`; outside a git work tree there are none, and no
    /// `git` is started to find that out.
    pub fn start(dir: &Path) -> GitFacts {
        if !in_work_tree(dir) {
            return GitFacts { status: None, remote: None, tags: Some(Vec::new()) };
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
            tags: None,
        }
    }

    /// The facts as tags, waiting for `git` the first time.
    pub fn tags(&mut self) -> Vec<Tag> {
        if self.tags.is_none() {
            let status = output(self.status.take());
            let remote = output(self.remote.take());
            self.tags = Some(status.map_or_else(Vec::new, |status| source_tags(&status, remote)));
        }
        self.tags.clone().unwrap_or_default()
    }
}

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
