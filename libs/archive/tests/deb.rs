//! Real `.deb` packages built by `dpkg-deb` extract to the tree they were built from.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{describe_dir, run, tool};
use stubdoms_archive::{deb, Error};

/// Builds the package tree (`DEBIAN/` plus contents) under `root/pkg` and returns it.
fn package_dir(root: &Path) -> PathBuf {
    let pkg = root.join("pkg");
    let write = |rel: &str, data: &[u8], mode: u32| {
        let path = pkg.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    write(
        "DEBIAN/control",
        b"Package: stubdoms-test\nVersion: 1.2-3\nArchitecture: all\n\
          Maintainer: Nobody <nobody@invalid>\nDescription: test package\n long text\n",
        0o644,
    );
    write("usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755);
    write("usr/share/doc/stubdoms-test/README", b"read me\n", 0o644);
    let long = format!("usr/share/{}/{}", "long".repeat(20), "name".repeat(20));
    write(&long, b"long path\n", 0o644);
    fs::hard_link(pkg.join("usr/bin/hello"), pkg.join("usr/bin/hello-again")).unwrap();
    symlink("hello", pkg.join("usr/bin/hi")).unwrap();
    symlink(
        "/usr/bin/hello",
        pkg.join("usr/share/doc/stubdoms-test/absolute"),
    )
    .unwrap();
    fs::create_dir_all(pkg.join("usr/share/empty")).unwrap();
    // dpkg-deb insists on sane directory permissions, whatever the umask.
    for dir in walk_dirs(&pkg) {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    pkg
}

fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![dir.to_owned()];
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            dirs.extend(walk_dirs(&entry.path()));
        }
    }
    dirs
}

/// Builds `name.deb` from `pkg` with the given `dpkg-deb -Z` compression.
pub fn build_deb(pkg: &Path, compression: &str, out: &Path) {
    run(
        tool("dpkg-deb", "dpkg")
            .args(["--root-owner-group", "-Z", compression, "--build"])
            .arg(pkg)
            .arg(out),
        None,
    );
}

#[test]
fn debs_in_every_compression_extract_to_their_source_tree() {
    let dir = common::tempdir();
    let pkg = package_dir(dir.path());
    let mut expected = describe_dir(&pkg);
    expected.retain(|path, _| path != "DEBIAN" && !path.starts_with("DEBIAN/"));

    for compression in ["xz", "zstd", "gzip", "none"] {
        let deb_path = dir.path().join(format!("test-{compression}.deb"));
        build_deb(&pkg, compression, &deb_path);

        let dest = dir.path().join(format!("out-{compression}"));
        let report = deb::extract_data(&deb_path, &dest).unwrap();
        assert_eq!(describe_dir(&dest), expected, "-Z{compression}");
        assert_eq!(
            (report.files, report.symlinks, report.hardlinks),
            (3, 2, 1),
            "-Z{compression}: {report:?}"
        );
        assert!(report.skipped.is_empty());
        assert!(!common::partial_of(&dest).exists());

        let control = deb::read_control(&deb_path).unwrap();
        assert_eq!(control.package, "stubdoms-test");
        assert_eq!(control.version, "1.2-3");
        assert_eq!(control.architecture.as_deref(), Some("all"));
        assert_eq!(control.get("description"), Some("test package\nlong text"));
    }
}

#[test]
fn extracting_over_an_existing_destination_is_refused() {
    let dir = common::tempdir();
    let pkg = package_dir(dir.path());
    let deb_path = dir.path().join("test.deb");
    build_deb(&pkg, "xz", &deb_path);
    let dest = dir.path().join("out");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("keep"), "mine").unwrap();
    let err = deb::extract_data(&deb_path, &dest).unwrap_err();
    assert!(
        matches!(err, Error::DestinationExists { ref path } if *path == dest),
        "{err}"
    );
    assert_eq!(common::names_in(&dest), ["keep"]);
}

#[test]
fn a_stale_partial_directory_is_replaced() {
    let dir = common::tempdir();
    let pkg = package_dir(dir.path());
    let deb_path = dir.path().join("test.deb");
    build_deb(&pkg, "gzip", &deb_path);
    let dest = dir.path().join("out");
    let partial = common::partial_of(&dest);
    fs::create_dir(&partial).unwrap();
    fs::write(partial.join("leftover"), "from a crash").unwrap();
    deb::extract_data(&deb_path, &dest).unwrap();
    assert!(!dest.join("leftover").exists());
    assert!(dest.join("usr/bin/hello").is_file());
    assert!(!partial.exists());
}
