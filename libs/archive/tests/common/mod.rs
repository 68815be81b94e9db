//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use stubdoms_archive::{EntryKind, Tree};

/// The SOURCE_DATE_EPOCH used by the tests (2023-11-14 22:13:20 UTC).
pub const EPOCH: u64 = 1_700_000_000;

/// What a test compares: one node of a file tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    File { mode: u32, data: Vec<u8> },
    Dir { mode: u32 },
    Symlink { target: String },
    Char { mode: u32, major: u32, minor: u32 },
    Block { mode: u32, major: u32, minor: u32 },
}

/// A tree's entries as [`Node`]s.
pub fn describe_tree(tree: &Tree) -> BTreeMap<String, Node> {
    tree.iter()
        .map(|(path, entry)| {
            let mode = entry.mode;
            let node = match &entry.kind {
                EntryKind::File(data) => Node::File {
                    mode,
                    data: data.read().expect("readable file").into_owned(),
                },
                EntryKind::Dir => Node::Dir { mode },
                EntryKind::Symlink { target } => Node::Symlink {
                    target: target.clone(),
                },
                EntryKind::CharDevice { major, minor } => Node::Char {
                    mode,
                    major: *major,
                    minor: *minor,
                },
                EntryKind::BlockDevice { major, minor } => Node::Block {
                    mode,
                    major: *major,
                    minor: *minor,
                },
            };
            (path.to_owned(), node)
        })
        .collect()
}

/// A host directory's contents (not the directory itself) as [`Node`]s.
pub fn describe_dir(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Node>) {
    for child in fs::read_dir(dir).expect("readable directory") {
        let child = child.expect("directory entry");
        let name = child.file_name().into_string().expect("UTF-8 name");
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = fs::symlink_metadata(child.path()).expect("metadata");
        let mode = meta.mode() & 0o7777;
        let ft = meta.file_type();
        let (major, minor) = split_dev(meta.rdev());
        let node = if ft.is_dir() {
            walk(&child.path(), &rel, out);
            Node::Dir { mode }
        } else if ft.is_symlink() {
            let target = fs::read_link(child.path()).expect("symlink");
            Node::Symlink {
                target: target.into_os_string().into_string().expect("UTF-8"),
            }
        } else if ft.is_file() {
            Node::File {
                mode,
                data: fs::read(child.path()).expect("readable file"),
            }
        } else if ft.is_char_device() {
            Node::Char { mode, major, minor }
        } else if ft.is_block_device() {
            Node::Block { mode, major, minor }
        } else {
            panic!("unexpected file type at {rel}");
        };
        out.insert(rel, node);
    }
}

fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    (major as u32, minor as u32)
}

/// A command for an external tool, failing the test with a clear message if it is missing.
pub fn tool(program: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed; these tests check the output with it: \
         run `apt-get install {package}`"
    );
    let mut command = Command::new(program);
    command.env("TZ", "UTC").env("LC_ALL", "C");
    command
}

/// Runs a command with `stdin` as its input and returns its output, failing on a non-zero
/// exit with the command's stderr.
pub fn run(command: &mut Command, stdin: Option<&Path>) -> Output {
    if let Some(path) = stdin {
        command.stdin(fs::File::open(path).expect("stdin file"));
    } else {
        command.stdin(Stdio::null());
    }
    let output = command.output().expect("tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A tree exercising every kind the writers support except device nodes.
pub fn sample_tree_without_devices() -> Tree {
    let mut tree = Tree::new();
    tree.add_file("init", "#!/bin/sh\nexec /bin/sh\n", 0o755)
        .unwrap();
    tree.add_file("etc/motd", "stub domain\n", 0o644).unwrap();
    tree.add_file("etc/secret", "s", 0o600).unwrap();
    tree.add_file("etc/empty", "", 0o644).unwrap();
    tree.add_dir("root", 0o700).unwrap();
    tree.add_file(
        "usr/lib/blob.bin",
        (0..=255u8).cycle().take(5000).collect::<Vec<u8>>(),
        0o644,
    )
    .unwrap();
    tree.add_symlink("bin/sh", "busybox").unwrap();
    tree.add_file("bin/busybox", b"\x7fELF fake".to_vec(), 0o755)
        .unwrap();
    tree.add_symlink("lib64", "/usr/lib").unwrap();
    let long_dir = "a-directory-with-a-rather-long-name/".repeat(3);
    tree.add_file(&format!("{long_dir}file-with-a-long-name"), "deep\n", 0o644)
        .unwrap();
    tree.add_symlink(
        &format!("{long_dir}link"),
        &format!("../../../{}", "x".repeat(120)),
    )
    .unwrap();
    tree
}

/// [`sample_tree_without_devices`] plus `/dev/console` and a block device.
pub fn sample_tree() -> Tree {
    let mut tree = sample_tree_without_devices();
    tree.add_char_dev("dev/console", 5, 1, 0o600).unwrap();
    tree.add_block_dev("dev/xvda", 202, 0, 0o660).unwrap();
    tree
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Lists `dir`'s entries by name, to show nothing was left behind.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
        .collect();
    names.sort();
    names
}

/// The `NAME.partial` sibling of `dest`.
pub fn partial_of(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().expect("name").to_owned();
    name.push(".partial");
    dest.with_file_name(name)
}
