//! GNU cpio, tar and gzip read the outputs back as written.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{describe_dir, describe_tree, run, sample_tree, sample_tree_without_devices, tool};
use common::{Node, EPOCH};
use stubdoms_archive::{EntryKind, Format, Tree};

/// `ls -l` style permission string for an entry.
fn mode_string(type_char: char, mode: u32) -> String {
    let mut s = String::from(type_char);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => special_char,
            (false, true) => special_char.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn type_char(kind: &EntryKind) -> char {
    match kind {
        EntryKind::File(_) => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink { .. } => 'l',
        EntryKind::CharDevice { .. } => 'c',
        EntryKind::BlockDevice { .. } => 'b',
    }
}

fn write(tree: &Tree, format: Format, path: &Path) {
    fs::write(path, tree.to_bytes(format, EPOCH).unwrap()).unwrap();
}

/// Every regular file extracted carries the archive's timestamp.
fn assert_file_mtimes(root: &Path, nodes: &std::collections::BTreeMap<String, Node>) {
    for (path, node) in nodes {
        if let Node::File { .. } = node {
            let meta = fs::symlink_metadata(root.join(path)).unwrap();
            assert_eq!(meta.mtime(), EPOCH as i64, "mtime of {path}");
        }
    }
}

#[test]
fn cpio_lists_every_entry_with_owner_0_and_device_numbers() {
    let dir = common::tempdir();
    let tree = sample_tree();
    let archive = dir.path().join("initrd.cpio");
    write(&tree, Format::Cpio, &archive);

    let output = run(
        tool("cpio", "cpio").args(["-t", "-v", "-n", "--quiet"]),
        Some(&archive),
    );
    let listing = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), tree.len(), "{listing}");
    for ((path, entry), line) in tree.iter().zip(&lines) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let expected_mode = mode_string(type_char(&entry.kind), entry.mode);
        assert_eq!(fields[0], expected_mode, "{line}");
        assert_eq!((fields[2], fields[3]), ("0", "0"), "owner in {line}");
        let name_and_target = match &entry.kind {
            EntryKind::Symlink { target } => format!("{path} -> {target}"),
            _ => path.to_owned(),
        };
        assert!(line.ends_with(&format!(" {name_and_target}")), "{line}");
        match &entry.kind {
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                assert_eq!(fields[4], format!("{major},"), "{line}");
                assert_eq!(fields[5], minor.to_string(), "{line}");
            }
            _ => {}
        }
    }
    let console = lines
        .iter()
        .find(|l| l.ends_with(" dev/console"))
        .expect("dev/console listed");
    assert!(console.starts_with("crw-------"), "{console}");
}

#[test]
fn cpio_extracts_to_the_same_tree() {
    let dir = common::tempdir();
    let tree = sample_tree_without_devices();
    let archive = dir.path().join("initrd.cpio");
    write(&tree, Format::Cpio, &archive);
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    run(
        tool("cpio", "cpio")
            .args(["-i", "-d", "-m", "--quiet", "--no-absolute-filenames"])
            .current_dir(&out),
        Some(&archive),
    );
    let expected = describe_tree(&tree);
    assert_eq!(describe_dir(&out), expected);
    assert_file_mtimes(&out, &expected);
}

#[test]
fn tar_lists_every_entry_with_owner_0_and_the_given_mtime() {
    let dir = common::tempdir();
    let tree = sample_tree();
    let archive = dir.path().join("rootfs.tar");
    write(&tree, Format::Tar, &archive);
    let output = run(
        tool("tar", "tar")
            .args(["--numeric-owner", "--full-time", "-tvf"])
            .arg(&archive),
        None,
    );
    let listing = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), tree.len(), "{listing}");
    for ((path, entry), line) in tree.iter().zip(&lines) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields[0],
            mode_string(type_char(&entry.kind), entry.mode),
            "{line}"
        );
        assert_eq!(fields[1], "0/0", "{line}");
        assert_eq!((fields[3], fields[4]), ("2023-11-14", "22:13:20"), "{line}");
        let shown = match &entry.kind {
            EntryKind::Dir => format!("{path}/"),
            EntryKind::Symlink { target } => format!("{path} -> {target}"),
            _ => path.to_owned(),
        };
        assert!(line.ends_with(&format!(" {shown}")), "{line}");
        match &entry.kind {
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                assert_eq!(fields[2], format!("{major},{minor}"), "{line}");
            }
            EntryKind::File(data) => {
                assert_eq!(fields[2], data.read().unwrap().len().to_string(), "{line}");
            }
            _ => {}
        }
    }
}

#[test]
fn tar_extracts_to_the_same_tree() {
    let dir = common::tempdir();
    let tree = sample_tree_without_devices();
    let archive = dir.path().join("rootfs.tar");
    write(&tree, Format::Tar, &archive);
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    run(
        tool("tar", "tar")
            .args(["-x", "-p", "-f"])
            .arg(&archive)
            .arg("-C")
            .arg(&out),
        None,
    );
    let expected = describe_tree(&tree);
    assert_eq!(describe_dir(&out), expected);
    assert_file_mtimes(&out, &expected);
}

#[test]
fn gzip_outputs_decompress_to_the_plain_archives_and_carry_no_name_or_mtime() {
    let dir = common::tempdir();
    let tree = sample_tree();
    let cases = [
        (Format::CpioGz, Format::Cpio, "out.cpio.gz", "out.cpio"),
        (Format::TarGz, Format::Tar, "out.tar.gz", "out.tar"),
    ];
    for (gz_format, plain_format, file_name, plain_name) in cases {
        let path = dir.path().join(file_name);
        write(&tree, gz_format, &path);
        let plain = tree.to_bytes(plain_format, EPOCH).unwrap();

        let output = run(tool("gzip", "gzip").arg("-dc").arg(&path), None);
        assert_eq!(output.stdout, plain, "{file_name}");
        run(tool("gzip", "gzip").arg("-t").arg(&path), None);

        // With --name, gzip -l shows the stored name and mtime; with none stored it falls
        // back to the file's own name and mtime, which we set to something recognisable.
        let file_time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_273_104_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(file_time)
            .unwrap();
        let output = run(
            tool("gzip", "gzip").args(["-l", "-v", "-N"]).arg(&path),
            None,
        );
        let listing = String::from_utf8(output.stdout).unwrap();
        let line = listing.lines().nth(1).expect("gzip -l line");
        assert!(
            line.contains("May  6 00:00"),
            "stored mtime is not 0: {line}"
        );
        let shown_name = path.with_file_name(plain_name);
        assert!(
            line.ends_with(&format!(" {}", shown_name.display())),
            "a name is stored: {line}"
        );
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[6], plain.len().to_string(), "{line}");

        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes[3], 0, "gzip flags (no name, comment, extra)");
        assert_eq!(bytes[4..8], [0, 0, 0, 0], "gzip mtime");
        assert_eq!(bytes[9], stubdoms_archive::gzip::OS_UNKNOWN, "gzip OS byte");
    }
}
