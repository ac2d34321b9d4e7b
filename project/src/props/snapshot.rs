//! Snapshot archives: any project packs and unpacks to the same files with the same digest,
//! and an archive from anywhere (arbitrary bytes, or tar entries with hostile paths and
//! links) is refused or unpacked strictly inside the destination, within the size limit.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use drover_testkit::{bounded, config};
use proptest::prelude::*;

use crate::snapshot::{digest_file, pack, unpack};

const LIMIT: u64 = 1 << 20;

/// A project: relative file paths and their contents.
fn tree() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    let path = proptest::collection::vec("[a-zA-Z0-9_][a-zA-Z0-9_. -]{0,10}", 1..4)
        .prop_map(|parts| parts.join("/"));
    proptest::collection::btree_map(path, proptest::collection::vec(any::<u8>(), 0..512), 1..10)
        .prop_map(|mut files| {
            // A path cannot be a file and a directory at once.
            let paths: Vec<String> = files.keys().cloned().collect();
            files.retain(|path, _| {
                !paths.iter().any(|other| other.starts_with(&format!("{path}/")))
            });
            files
        })
}

fn write_tree(root: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("inside the root")).expect("directories");
        std::fs::write(path, content).expect("a file");
    }
}

fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("a readable directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let relative =
                    path.strip_prefix(root).expect("inside").to_string_lossy().into_owned();
                files.insert(relative, std::fs::read(&path).expect("a readable file"));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

/// An entry path as an archive from elsewhere might name it.
fn hostile_path() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        4 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just("".to_string()),
        2 => Just("etc".to_string()),
        2 => Just("link".to_string()),
        2 => "[a-z]{1,4}",
    ];
    (proptest::bool::weighted(0.2), proptest::collection::vec(part, 1..4)).prop_map(
        |(absolute, parts)| format!("{}{}", if absolute { "/" } else { "" }, parts.join("/")),
    )
}

#[derive(Clone, Debug)]
enum Entry {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (hostile_path(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(path, data)| Entry::File(path, data)),
        hostile_path().prop_map(Entry::Dir),
        (hostile_path(), hostile_path()).prop_map(|(path, target)| Entry::Symlink(path, target)),
        (hostile_path(), hostile_path()).prop_map(|(path, target)| Entry::Hardlink(path, target)),
    ]
}

/// Writes entries with raw header names, as a hostile archive would, bypassing the checks a
/// well-behaved tar writer makes.
fn hostile_archive(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (path, kind, data, link): (&str, tar::EntryType, &[u8], Option<&str>) = match entry {
            Entry::File(path, data) => (path, tar::EntryType::Regular, data, None),
            Entry::Dir(path) => (path, tar::EntryType::Directory, &[], None),
            Entry::Symlink(path, target) => (path, tar::EntryType::Symlink, &[], Some(target)),
            Entry::Hardlink(path, target) => (path, tar::EntryType::Link, &[], Some(target)),
        };
        let name = &mut header.as_old_mut().name;
        let bytes = path.as_bytes();
        let length = bytes.len().min(name.len());
        name[..length].copy_from_slice(&bytes[..length]);
        if let Some(target) = link {
            let link_name = &mut header.as_old_mut().linkname;
            let bytes = target.as_bytes();
            let length = bytes.len().min(link_name.len());
            link_name[..length].copy_from_slice(&bytes[..length]);
        }
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).expect("an in-memory archive");
    }
    builder.into_inner().expect("an in-memory archive")
}

/// Nothing was written beside `dest` in the scratch directory, nor into the decoy `etc`.
fn assert_contained(scratch: &Path) -> Result<(), TestCaseError> {
    let outside: Vec<PathBuf> = std::fs::read_dir(scratch)
        .expect("the scratch directory")
        .map(|entry| entry.expect("an entry").file_name().into())
        .collect();
    let mut names: Vec<String> =
        outside.iter().map(|name| name.to_string_lossy().into_owned()).collect();
    names.sort();
    prop_assert_eq!(names, vec!["archive.tar".to_string(), "dest".to_string(), "etc".to_string()]);
    prop_assert_eq!(std::fs::read_dir(scratch.join("etc")).expect("etc").count(), 0);
    Ok(())
}

proptest! {
    // Each case writes, packs and unpacks a project.
    #![proptest_config(config(64))]

    #[test]
    fn projects_pack_and_unpack_to_the_same_files(files in tree()) {
        let project = tempfile::tempdir().expect("a temporary directory");
        write_tree(project.path(), &files);
        let packed = pack(project.path(), LIMIT).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(packed.files, files.len());
        let digest = digest_file(packed.file.path()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&digest, &packed.digest);
        let again = pack(project.path(), LIMIT).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(&again.digest, &packed.digest, "packing is deterministic");
        let dest = tempfile::tempdir().expect("a temporary directory");
        unpack(packed.file.path(), dest.path(), LIMIT).map_err(|error| TestCaseError::fail(error.to_string()))?;
        prop_assert_eq!(read_tree(dest.path()), files);
    }

}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn hostile_archives_stay_inside_the_destination(entries in proptest::collection::vec(entry(), 1..5)) {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(scratch.path().join("etc")).expect("a decoy directory");
        let archive = scratch.path().join("archive.tar");
        std::fs::write(&archive, hostile_archive(&entries)).expect("the archive");
        let dest = scratch.path().join("dest");
        // A symlink named `dest/link` pointing at the decoy must not be written through.
        bounded(|| unpack(&archive, &dest, LIMIT).map(drop).ok());
        assert_contained(scratch.path())?;
    }

    #[test]
    fn arbitrary_bytes_are_refused_or_unpacked_inside(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let scratch = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(scratch.path().join("etc")).expect("a decoy directory");
        let archive = scratch.path().join("archive.tar");
        std::fs::File::create(&archive).and_then(|mut file| file.write_all(&bytes)).expect("the archive");
        let dest = scratch.path().join("dest");
        bounded(|| unpack(&archive, &dest, LIMIT).map(drop).ok());
        assert_contained(scratch.path())?;
    }
}

#[test]
fn an_archive_over_the_limit_is_refused() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let entries =
        vec![Entry::File("big".into(), vec![7; 4096]), Entry::File("more".into(), vec![7; 4096])];
    let archive = scratch.path().join("archive.tar");
    std::fs::write(&archive, hostile_archive(&entries)).expect("the archive");
    assert!(unpack(&archive, &scratch.path().join("dest"), 6000).is_err());
}
