//! Same inputs, same bytes: independent of construction order, host modes and timestamps.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{sample_tree, EPOCH};
use stubdoms_archive::{EntryKind, Format, Tree};

const FORMATS: [Format; 4] = [Format::Cpio, Format::CpioGz, Format::Tar, Format::TarGz];

#[test]
fn same_tree_written_twice_gives_identical_bytes() {
    for format in FORMATS {
        let first = sample_tree().to_bytes(format, EPOCH).unwrap();
        let second = sample_tree().to_bytes(format, EPOCH).unwrap();
        assert_eq!(first, second, "{format:?}");
        // The timestamp is really used: another one changes the output.
        let later = sample_tree().to_bytes(format, EPOCH + 1).unwrap();
        assert_ne!(first, later, "{format:?}");
    }
}

#[test]
fn insertion_order_does_not_matter() {
    let mut forward = Tree::new();
    let mut backward = Tree::new();
    let files = [("a/x", "1"), ("a/y", "2"), ("b/z", "3"), ("c", "4")];
    for (path, data) in files {
        forward.add_file(path, data, 0o644).unwrap();
    }
    for (path, data) in files.iter().rev() {
        backward.add_file(path, *data, 0o644).unwrap();
    }
    for format in FORMATS {
        assert_eq!(
            forward.to_bytes(format, EPOCH).unwrap(),
            backward.to_bytes(format, EPOCH).unwrap(),
            "{format:?}"
        );
    }
}

/// How one host copy of the same content is laid out.
struct Layout {
    /// Order in which the files are created.
    order: [usize; 4],
    file_modes: [u32; 4],
    dir_mode: u32,
    mtime: SystemTime,
}

const FILES: [(&str, &str); 4] = [
    ("bin/tool", "#!/bin/sh\n"),
    ("etc/conf", "key=value\n"),
    ("etc/private", "secret\n"),
    ("usr/share/doc/README", "read me\n"),
];

fn make_host_dir(root: &Path, layout: &Layout) {
    for &index in &layout.order {
        let (rel, data) = FILES[index];
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = File::create(&path).unwrap();
        std::io::Write::write_all(&mut &file, data.as_bytes()).unwrap();
        file.set_modified(layout.mtime).unwrap();
        file.set_permissions(fs::Permissions::from_mode(layout.file_modes[index]))
            .unwrap();
    }
    symlink("tool", root.join("bin/alias")).unwrap();
    for dir in ["bin", "etc", "usr", "usr/share", "usr/share/doc"] {
        let path = root.join(dir);
        File::open(&path)
            .unwrap()
            .set_modified(layout.mtime)
            .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(layout.dir_mode)).unwrap();
    }
}

#[test]
fn host_dirs_differing_in_order_modes_and_mtimes_give_identical_bytes() {
    let layouts = [
        Layout {
            order: [0, 1, 2, 3],
            file_modes: [0o755, 0o644, 0o600, 0o644],
            dir_mode: 0o755,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        },
        Layout {
            order: [3, 2, 1, 0],
            // Exec bit for the owner only, setuid, group-writable: all normalise the same.
            file_modes: [0o4700, 0o664, 0o640, 0o400],
            dir_mode: 0o700,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000),
        },
        Layout {
            order: [1, 3, 0, 2],
            file_modes: [0o744, 0o666, 0o644, 0o600],
            dir_mode: 0o2775,
            mtime: SystemTime::now(),
        },
    ];
    let dirs: Vec<_> = layouts
        .iter()
        .map(|layout| {
            let dir = common::tempdir();
            make_host_dir(dir.path(), layout);
            dir
        })
        .collect();
    let trees: Vec<Tree> = dirs
        .iter()
        .map(|d| Tree::from_dir(d.path()).unwrap())
        .collect();

    let modes: Vec<(&str, u32)> = trees[0].iter().map(|(p, e)| (p, e.mode)).collect();
    assert_eq!(
        modes,
        [
            ("bin", 0o755),
            ("bin/alias", 0o777),
            ("bin/tool", 0o755),
            ("etc", 0o755),
            ("etc/conf", 0o644),
            ("etc/private", 0o644),
            ("usr", 0o755),
            ("usr/share", 0o755),
            ("usr/share/doc", 0o755),
            ("usr/share/doc/README", 0o644),
        ]
    );
    assert!(matches!(
        &trees[0].get("bin/alias").unwrap().kind,
        EntryKind::Symlink { target } if target == "tool"
    ));

    for format in FORMATS {
        let outputs: Vec<Vec<u8>> = trees
            .iter()
            .map(|t| t.to_bytes(format, EPOCH).unwrap())
            .collect();
        assert_eq!(outputs[0], outputs[1], "{format:?}");
        assert_eq!(outputs[0], outputs[2], "{format:?}");
        // No host path leaks into the archive.
        for (dir, output) in dirs.iter().zip(&outputs) {
            let host = dir.path().to_str().unwrap().as_bytes();
            assert!(
                !output.windows(host.len()).any(|w| w == host),
                "{format:?} output names the host directory"
            );
        }
    }
}

#[test]
fn add_host_dir_puts_contents_under_a_prefix() {
    let dir = common::tempdir();
    fs::write(dir.path().join("hello.ko"), "module").unwrap();
    let mut tree = Tree::new();
    tree.add_dir("lib", 0o755).unwrap();
    tree.add_host_dir("/lib/modules/6.1.0", dir.path()).unwrap();
    let paths: Vec<&str> = tree.iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "lib",
            "lib/modules",
            "lib/modules/6.1.0",
            "lib/modules/6.1.0/hello.ko"
        ]
    );
}

#[test]
fn from_dir_refuses_fifos() {
    let dir = common::tempdir();
    let fifo = dir.path().join("pipe");
    let status = common::tool("mkfifo", "coreutils")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let err = Tree::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, stubdoms_archive::Error::UnsupportedHostFile { path } if *path == fifo),
        "{err}"
    );
}
