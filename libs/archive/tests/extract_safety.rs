//! Extraction refuses entries that would leave the destination, all or nothing, and handles
//! the usual tarball features.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{describe_dir, names_in, partial_of, run, tool};
use stubdoms_archive::{
    extract_tar, extract_tarball, Compression, Error, ExtractOptions, Skipped, SkippedKind,
    UnsafeReason,
};

/// One entry of a hand-made tar archive; names are written raw, unchecked.
enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str, u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Block(&'a str, u32, u32),
    Fifo(&'a str),
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        let (name, kind, mode, data, link): (&str, tar::EntryType, u32, &[u8], &str) = match *entry
        {
            E::File(name, data, mode) => (name, tar::EntryType::Regular, mode, data, ""),
            E::Dir(name, mode) => (name, tar::EntryType::Directory, mode, b"", ""),
            E::Symlink(name, target) => (name, tar::EntryType::Symlink, 0o777, b"", target),
            E::Hardlink(name, target) => (name, tar::EntryType::Link, 0o644, b"", target),
            E::Char(name, major, minor) | E::Block(name, major, minor) => {
                header.set_device_major(major).unwrap();
                header.set_device_minor(minor).unwrap();
                let kind = if matches!(entry, E::Char(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                (name, kind, 0o600, b"", "")
            }
            E::Fifo(name) => (name, tar::EntryType::Fifo, 0o644, b"", ""),
        };
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A scratch area: `victim/file` stands for anything outside the destination, `work/`
/// holds the destination, the archive sits beside them.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = common::tempdir();
        fs::create_dir(dir.path().join("victim")).unwrap();
        fs::write(dir.path().join("victim/file"), "precious").unwrap();
        fs::create_dir(dir.path().join("work")).unwrap();
        Scene { dir }
    }

    fn victim(&self) -> String {
        self.dir.path().join("victim").to_str().unwrap().to_owned()
    }

    fn dest(&self) -> std::path::PathBuf {
        self.dir.path().join("work/dest")
    }

    fn extract(&self, archive: &[u8]) -> stubdoms_archive::Result<stubdoms_archive::ExtractReport> {
        let path = self.dir.path().join("test.tar");
        fs::write(&path, archive).unwrap();
        extract_tarball(&path, &self.dest(), &ExtractOptions::default())
    }

    /// Nothing outside the destination changed and nothing half-done is left.
    fn assert_untouched(&self) {
        let victim = self.dir.path().join("victim");
        assert_eq!(names_in(&victim), ["file"]);
        assert_eq!(fs::read_to_string(victim.join("file")).unwrap(), "precious");
        assert!(fs::symlink_metadata(victim.join("file")).unwrap().is_file());
        assert_eq!(
            names_in(&self.dir.path().join("work")),
            Vec::<String>::new()
        );
        assert_eq!(names_in(self.dir.path()), ["test.tar", "victim", "work"]);
        assert!(!partial_of(&self.dest()).exists());
    }
}

#[test]
fn unsafe_entries_are_refused_and_leave_nothing_behind() {
    let scene = Scene::new();
    let victim = scene.victim();
    let abs_file = format!("{victim}/abs");
    let abs_target = format!("{victim}/file");
    type Case<'a> = (Vec<E<'a>>, &'a str, UnsafeReason);
    let cases: Vec<Case> = vec![
        (
            vec![E::File(&abs_file, b"x", 0o644)],
            &abs_file,
            UnsafeReason::AbsolutePath,
        ),
        (
            vec![E::File("../escape", b"x", 0o644)],
            "../escape",
            UnsafeReason::ParentDir,
        ),
        (
            vec![E::File("a/../../escape", b"x", 0o644)],
            "a/../../escape",
            UnsafeReason::ParentDir,
        ),
        (
            vec![E::Symlink("l", "../../victim")],
            "l",
            UnsafeReason::SymlinkEscapes {
                target: "../../victim".into(),
            },
        ),
        (
            vec![E::Symlink("sub/l", "../../file")],
            "sub/l",
            UnsafeReason::SymlinkEscapes {
                target: "../../file".into(),
            },
        ),
        (
            // An absolute symlink is kept (it means the image root), but nothing may be
            // written through it.
            vec![
                E::Symlink("l", &victim),
                E::File("l/evil", b"gotcha", 0o644),
            ],
            "l/evil",
            UnsafeReason::ThroughSymlink { parent: "l".into() },
        ),
        (
            vec![
                E::Dir("d", 0o755),
                E::Symlink("d/up", "."),
                E::File("d/up/x", b"x", 0o644),
            ],
            "d/up/x",
            UnsafeReason::ThroughSymlink {
                parent: "d/up".into(),
            },
        ),
        (
            vec![E::Hardlink("h", "../victim/file")],
            "h",
            UnsafeReason::HardlinkEscapes {
                target: "../victim/file".into(),
            },
        ),
        (
            vec![E::Hardlink("h", &abs_target)],
            "h",
            UnsafeReason::HardlinkEscapes {
                target: abs_target.clone(),
            },
        ),
        (
            vec![E::File("f", b"x", 0o644), E::File("f/x", b"x", 0o644)],
            "f/x",
            UnsafeReason::ParentNotDirectory { parent: "f".into() },
        ),
        (
            vec![E::Dir("d", 0o755), E::File("d", b"x", 0o644)],
            "d",
            UnsafeReason::ReplacesDirectory,
        ),
        (
            // Good entries first: they must be removed with the rest.
            vec![
                E::File("ok", b"fine", 0o644),
                E::Dir("okdir", 0o555),
                E::File("okdir/inner", b"fine", 0o644),
                E::File("../../victim/file", b"overwritten", 0o644),
            ],
            "../../victim/file",
            UnsafeReason::ParentDir,
        ),
    ];
    for (entries, bad_entry, reason) in cases {
        let err = scene.extract(&tar_of(&entries)).unwrap_err();
        match &err {
            Error::Unsafe {
                entry, reason: r, ..
            } => {
                assert_eq!((entry.as_str(), r), (bad_entry, &reason), "{err}");
            }
            other => panic!("expected an unsafe-entry error for {bad_entry}, got {other}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("test.tar") && message.contains(bad_entry),
            "{message}"
        );
        scene.assert_untouched();
    }
}

#[test]
fn a_compressed_malicious_tarball_is_refused_too() {
    let scene = Scene::new();
    let tar = tar_of(&[E::File("../escape", b"x", 0o644)]);
    let gz = stubdoms_archive::gzip::compress(&tar).unwrap();
    let err = scene.extract(&gz).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unsafe {
                reason: UnsafeReason::ParentDir,
                ..
            }
        ),
        "{err}"
    );
    scene.assert_untouched();
}

#[test]
fn a_later_entry_replaces_a_symlink_instead_of_writing_through_it() {
    let scene = Scene::new();
    let target = format!("{}/file", scene.victim());
    let archive = tar_of(&[
        E::Symlink("l", &target),
        E::File("l", b"replaced", 0o644),
        E::Symlink("m", "l"),
        E::Hardlink("m", "l"),
    ]);
    let report = scene.extract(&archive).unwrap();
    let dest = scene.dest();
    assert_eq!(fs::read_to_string(dest.join("l")).unwrap(), "replaced");
    assert!(fs::symlink_metadata(dest.join("l")).unwrap().is_file());
    assert_eq!(
        fs::metadata(dest.join("m")).unwrap().ino(),
        fs::metadata(dest.join("l")).unwrap().ino()
    );
    assert_eq!((report.files, report.symlinks, report.hardlinks), (1, 2, 1));
    assert_eq!(fs::read_to_string(target).unwrap(), "precious");
}

#[test]
fn devices_and_fifos_are_skipped_and_reported() {
    let scene = Scene::new();
    let archive = tar_of(&[
        E::Dir("dev", 0o755),
        E::Char("dev/console", 5, 1),
        E::Block("dev/xvda", 202, 0),
        E::Fifo("run/initctl"),
        E::File("etc/hostname", b"stub\n", 0o644),
    ]);
    let report = scene.extract(&archive).unwrap();
    assert_eq!(
        report.skipped,
        [
            Skipped {
                entry: "dev/console".into(),
                kind: SkippedKind::CharDevice
            },
            Skipped {
                entry: "dev/xvda".into(),
                kind: SkippedKind::BlockDevice
            },
            Skipped {
                entry: "run/initctl".into(),
                kind: SkippedKind::Fifo
            },
        ]
    );
    assert_eq!(names_in(&scene.dest()), ["dev", "etc"]);
    assert_eq!(names_in(&scene.dest().join("dev")), Vec::<String>::new());
}

#[test]
fn modes_keep_exec_bits_drop_setuid_and_stay_writable_by_the_owner() {
    let scene = Scene::new();
    let archive = tar_of(&[
        E::Dir("ro", 0o555),
        E::File("ro/tool", b"#!", 0o4755),
        E::File("ro/data", b"d", 0o444),
        E::File("private", b"p", 0o600),
    ]);
    scene.extract(&archive).unwrap();
    let mode = |rel: &str| fs::symlink_metadata(scene.dest().join(rel)).unwrap().mode() & 0o7777;
    assert_eq!(
        [
            mode("ro"),
            mode("ro/tool"),
            mode("ro/data"),
            mode("private")
        ],
        [0o755, 0o755, 0o644, 0o600]
    );
}

#[test]
fn a_hard_link_to_a_missing_file_is_an_error() {
    let scene = Scene::new();
    let err = scene
        .extract(&tar_of(&[E::Hardlink("h", "nowhere/file")]))
        .unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    scene.assert_untouched();
}

#[test]
fn gnu_tarballs_in_every_compression_extract_with_strip_components() {
    let dir = common::tempdir();
    let src = dir.path().join("src");
    let top = src.join("pkg-1.0");
    fs::create_dir_all(top.join("src/sub")).unwrap();
    fs::write(top.join("configure"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(top.join("configure"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(top.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
    fs::write(top.join("src/sub/data"), vec![0u8; 20000]).unwrap();
    std::os::unix::fs::symlink("../configure", top.join("src/configure")).unwrap();
    let long_name = "n".repeat(150);
    fs::write(top.join(&long_name), "long").unwrap();
    let expected = describe_dir(&top);

    let flags = [
        ("-z", "t.tar.gz", Compression::Gzip),
        ("-J", "t.tar.xz", Compression::Xz),
        ("--zstd", "t.tar.zst", Compression::Zstd),
        ("-j", "t.tar.bz2", Compression::Bzip2),
        ("--no-auto-compress", "t.tar", Compression::None),
    ];
    for (flag, name, compression) in flags {
        let archive = dir.path().join(name);
        run(
            tool("tar", "tar")
                .args(["--format=pax", "-c", flag, "-f"])
                .arg(&archive)
                .arg("-C")
                .arg(&src)
                .arg("pkg-1.0"),
            None,
        );
        // Detected from the contents, named by extension, or stated: all the same.
        let hashed_name = dir
            .path()
            .join(format!("blob-{}", compression_name(compression)));
        fs::copy(&archive, &hashed_name).unwrap();
        let runs = [
            (archive.as_path(), None),
            (hashed_name.as_path(), None),
            (archive.as_path(), Some(compression)),
        ];
        for (index, (input, stated)) in runs.into_iter().enumerate() {
            let dest = dir.path().join(format!("out-{name}-{index}"));
            let options = ExtractOptions {
                strip_components: 1,
                compression: stated,
            };
            extract_tarball(input, &dest, &options).unwrap();
            assert_eq!(describe_dir(&dest), expected, "{name} run {index}");
        }
        assert_eq!(Compression::from_file_name(name), Some(compression));
    }
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gz",
        Compression::Xz => "xz",
        Compression::Zstd => "zst",
        Compression::Bzip2 => "bz2",
    }
}

#[test]
fn extract_tar_reads_from_any_reader() {
    let dir = common::tempdir();
    let archive = tar_of(&[E::File("./a/b", b"content", 0o644)]);
    let dest = dir.path().join("dest");
    let report = extract_tar(&archive[..], "in-memory", &dest, &ExtractOptions::default()).unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(fs::read_to_string(dest.join("a/b")).unwrap(), "content");
    assert!(Path::new(&dest).join("a").is_dir());
}
