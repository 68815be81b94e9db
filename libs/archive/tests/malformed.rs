//! Truncated and garbage inputs give errors, never panics, and leave nothing behind.

mod common;

use std::fs;
use std::path::Path;

use common::{partial_of, run, sample_tree, tool, EPOCH};
use stubdoms_archive::{cpio, deb, extract_tarball, ExtractOptions, Format};

/// Deterministic pseudo-random bytes (xorshift64).
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A small package built by dpkg-deb with the given compression.
fn small_deb(dir: &Path, compression: &str) -> Vec<u8> {
    let pkg = dir.join(format!("pkg-{compression}"));
    fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    fs::create_dir_all(pkg.join("usr/bin")).unwrap();
    fs::write(
        pkg.join("DEBIAN/control"),
        "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: n <n@invalid>\nDescription: t\n",
    )
    .unwrap();
    fs::write(pkg.join("usr/bin/t"), "#!/bin/sh\n".repeat(20)).unwrap();
    let out = dir.join(format!("t-{compression}.deb"));
    run(
        tool("dpkg-deb", "dpkg")
            .args(["--root-owner-group", "-Z", compression, "--build"])
            .arg(&pkg)
            .arg(&out),
        None,
    );
    fs::read(out).unwrap()
}

/// Extracts `bytes` (written to a file) with `extract`; asserts it fails and leaves no
/// destination or partial directory.
fn assert_refused(
    dir: &Path,
    bytes: &[u8],
    what: &str,
    extract: impl Fn(&Path, &Path) -> stubdoms_archive::Result<stubdoms_archive::ExtractReport>,
) {
    let input = dir.join("input");
    let dest = dir.join("dest");
    fs::write(&input, bytes).unwrap();
    let result = extract(&input, &dest);
    assert!(result.is_err(), "{what}: accepted");
    assert!(!dest.exists(), "{what}: destination left behind");
    assert!(
        !partial_of(&dest).exists(),
        "{what}: partial directory left behind"
    );
}

#[test]
fn truncations_of_a_deb_are_errors() {
    let dir = common::tempdir();
    for compression in ["xz", "zstd", "gzip", "none"] {
        let full = small_deb(dir.path(), compression);
        let work = dir.path().join(format!("work-{compression}"));
        fs::create_dir(&work).unwrap();
        // Every length for one compression; for the others (the uncompressed one is over
        // 10 KiB) a stride, plus every cut in the headers and in the last bytes.
        let stride = if compression == "xz" { 1 } else { 13 };
        let lengths = (0..full.len())
            .step_by(stride)
            .chain(0..200)
            .chain(full.len() - 20..full.len());
        for len in lengths {
            let what = format!("-Z{compression} .deb cut to {len} of {} bytes", full.len());
            assert_refused(&work, &full[..len], &what, deb::extract_data);
        }
        // The whole package still extracts, so the failures above are about truncation.
        fs::write(work.join("input"), &full).unwrap();
        deb::extract_data(&work.join("input"), &work.join("dest")).unwrap();
    }
}

#[test]
fn every_truncation_of_a_cpio_is_an_error() {
    let full = sample_tree().to_bytes(Format::Cpio, EPOCH).unwrap();
    assert_eq!(cpio::read(&full).unwrap().len(), sample_tree().len());
    for len in 0..full.len() {
        assert!(cpio::read(&full[..len]).is_err(), "cpio cut to {len}");
    }
}

#[test]
fn truncated_tarballs_are_errors() {
    let dir = common::tempdir();
    let tree = sample_tree();
    for format in [Format::TarGz, Format::Tar] {
        let full = tree.to_bytes(format, EPOCH).unwrap();
        // A plain tar may lose its second, optional zero block; stop before the first.
        let cut_limit = match format {
            Format::Tar => full.len() - 1024,
            _ => full.len(),
        };
        // Cuts at block boundaries are the ones a tar reader cannot see by itself.
        let lengths = (0..cut_limit)
            .step_by(61)
            .chain((0..cut_limit).step_by(512))
            .chain(cut_limit - 16..cut_limit);
        for len in lengths {
            let what = format!("{format:?} cut to {len}");
            assert_refused(dir.path(), &full[..len], &what, |input, dest| {
                extract_tarball(input, dest, &ExtractOptions::default())
            });
        }
    }
}

#[test]
fn garbage_is_an_error_everywhere() {
    let dir = common::tempdir();
    let prefixes: [&[u8]; 7] = [
        b"",
        b"!<arch>\n",
        b"!<arch>\ndebian-binary   ",
        &[0x1f, 0x8b, 8, 0],
        &[0xfd, b'7', b'z', b'X', b'Z', 0],
        &[0x28, 0xb5, 0x2f, 0xfd],
        b"070701",
    ];
    for (index, prefix) in prefixes.iter().enumerate() {
        for (len, seed) in [(0, 1), (1, 2), (59, 3), (512, 4), (4096, 5)] {
            let mut bytes = prefix.to_vec();
            bytes.extend(garbage(len, seed + index as u64));
            let what = format!("prefix {index}, {len} random bytes");
            assert_refused(dir.path(), &bytes, &what, deb::extract_data);
            assert_refused(dir.path(), &bytes, &what, |input, dest| {
                extract_tarball(input, dest, &ExtractOptions::default())
            });
            assert!(
                deb::read_control(&dir.path().join("input")).is_err(),
                "{what}"
            );
            assert!(cpio::read(&bytes).is_err(), "{what}");
        }
    }
}

#[test]
fn errors_name_the_archive() {
    let dir = common::tempdir();
    let input = dir.path().join("broken.deb");
    fs::write(&input, b"not a package").unwrap();
    let message = deb::extract_data(&input, &dir.path().join("out"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("broken.deb") && message.contains("not an ar archive"),
        "{message}"
    );
}
