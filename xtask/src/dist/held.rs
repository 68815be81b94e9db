//! Which pinned Debian packages' files an image holds, found from the image's own bytes: an
//! image that is a cpio archive (a rootfs, plain or gzip/xz-compressed) is read, and each
//! regular file in it is looked up among the unpacked candidate packages, first by file
//! name and size, then by sha256. What the build copied in (libraries, ROMs) is found
//! whatever its path in the image; what it compiled (QEMU, the init) is in no package and
//! is listed as such.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::Digest;
use stubdoms_archive::Compression;

#[cfg(doc)]
use crate::cache::Cache;
use crate::lock::Blob;

/// What an archive image holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// The packages at least one of its files comes from, by label.
    pub packages: Vec<Blob>,
    /// Each of `packages`' copyright file, by sha256, where it has one: its own
    /// `/usr/share/doc/NAME/copyright`, or, where that folder is a link to another
    /// package's (Debian's libgcc-s1 -> gcc-12-base), the candidate's holding that one.
    pub copyrights: BTreeMap<String, PathBuf>,
    /// Its regular files that are in none of the candidates (built, not copied).
    pub built: Vec<String>,
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// What the image at `image` holds of the packages `candidates` gives (each with its
/// unpacked tree, [`Cache::unpacked_deb`]; asked for only when the image is an archive), or
/// `None` when it is no cpio archive (a kernel, a firmware image).
pub fn held(
    image: &Path,
    candidates: impl FnOnce() -> Result<Vec<(Blob, PathBuf)>>,
) -> Result<Option<Held>> {
    let bytes = fs_err::read(image)?;
    let Some(mut reader) = decompressing(&bytes[..])? else {
        return Ok(None);
    };
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .with_context(|| format!("decompressing {}", image.display()))?;
    if !plain.starts_with(b"070701") {
        return Ok(None);
    }
    let entries = stubdoms_archive::cpio::read(&plain)
        .with_context(|| format!("reading {} as a cpio archive", image.display()))?;
    // (file name, size) -> sha256 -> paths in the image.
    let mut wanted: BTreeMap<(String, u64), BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.mode & S_IFMT == S_IFREG) {
        let base = e.name.rsplit('/').next().unwrap_or(&e.name).to_string();
        wanted
            .entry((base, e.data.len() as u64))
            .or_default()
            .entry(sha256_hex(&e.data))
            .or_default()
            .push(e.name.clone());
    }
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut packages = Vec::new();
    let mut seen = BTreeSet::new();
    let candidates = candidates()?;
    for (blob, tree) in &candidates {
        if !seen.insert(blob.sha256.clone()) {
            continue;
        }
        let mut hit = false;
        walk(tree, &mut |path, size| {
            let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(by_sha) = wanted.get(&(base.to_string(), size)) else {
                return Ok(());
            };
            let sha = sha256_hex(&fs_err::read(path)?);
            if let Some(paths) = by_sha.get(&sha) {
                found.extend(paths.iter().cloned());
                hit = true;
            }
            Ok(())
        })?;
        if hit {
            packages.push(blob.clone());
        }
    }
    let mut copyrights = BTreeMap::new();
    for blob in &packages {
        if let Some(path) = copyright(blob, &candidates) {
            copyrights.insert(blob.sha256.clone(), path);
        }
    }
    let built = wanted
        .values()
        .flat_map(|by_sha| by_sha.values().flatten())
        .filter(|p| !found.contains(*p))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    packages.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(Some(Held {
        packages,
        copyrights,
        built,
    }))
}

/// `input` decompressed as its first bytes say (xz, gzip, or none), or `None` for another
/// compression: the images and debian tarballs `dist` reads.
pub fn decompressing<'a>(mut input: impl BufRead + 'a) -> Result<Option<Box<dyn Read + 'a>>> {
    Ok(Some(match Compression::from_magic(input.fill_buf()?) {
        Compression::None => Box::new(input),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(input)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        _ => return Ok(None),
    }))
}

/// The copyright file of `blob` (a `deb NAME ...`), following a doc folder that is a link
/// to a sibling folder into the candidate that holds it.
fn copyright(blob: &Blob, candidates: &[(Blob, PathBuf)]) -> Option<PathBuf> {
    let name = blob.label.split_whitespace().nth(1)?;
    let tree = &candidates.iter().find(|(b, _)| b.sha256 == blob.sha256)?.1;
    let doc = tree.join("usr/share/doc").join(name);
    let own = doc.join("copyright");
    if own.is_file() {
        return Some(own);
    }
    let target = fs_err::read_link(&doc).ok()?;
    let sibling = target.to_str().filter(|t| !t.contains('/'))?;
    candidates
        .iter()
        .map(|(_, t)| t.join("usr/share/doc").join(sibling).join("copyright"))
        .find(|p| p.is_file())
}

/// Calls `f(path, size)` for every regular file under `dir` (symlinks are not followed).
pub(super) fn walk(dir: &Path, f: &mut dyn FnMut(&Path, u64) -> Result<()>) -> Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), f)?;
        } else if kind.is_file() {
            f(&entry.path(), entry.metadata()?.len())?;
        }
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{Archive, ArchiveKey};
    use stubdoms_archive::{Format, Tree};

    /// A package whose unpacked tree (under `top`) holds `files`.
    fn package(top: &Path, name: &str, sha: &str, files: &[(&str, &[u8])]) -> (Blob, PathBuf) {
        let dir = top.join(sha);
        for (path, bytes) in files {
            let p = dir.join(path);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, bytes).unwrap();
        }
        let blob = Blob {
            label: format!("deb {name} 1 amd64"),
            archive: ArchiveKey::from(Archive::Debian),
            path: format!("pool/main/{name}.deb"),
            size: 0,
            sha256: sha.to_string(),
            licence: String::new(),
            snapshot: None,
        };
        (blob, dir)
    }

    #[test]
    fn a_rootfs_holds_the_packages_its_copied_files_come_from() {
        let tmp = std::env::temp_dir().join(format!("stubdoms-held-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&tmp);
        let top = tmp.join("unpacked");
        let libc = package(
            &top,
            "libc6",
            &"a".repeat(64),
            &[("usr/lib/x86_64-linux-gnu/libc.so.6", b"libc bytes")],
        );
        let roms = package(
            &top,
            "seabios",
            &"b".repeat(64),
            &[("usr/share/seabios/vgabios-stdvga.bin", b"rom")],
        );
        // Same name and size as the image's libc, other bytes: not what the image holds.
        let other = package(
            &top,
            "libc6-other",
            &"c".repeat(64),
            &[("lib/libc.so.6", b"LIBC BYTES")],
        );
        let unused = package(
            &top,
            "gcc-base",
            &"d".repeat(64),
            &[("usr/share/doc/gcc-base/copyright", b"GCC's")],
        );
        // libc6's doc folder is a link to gcc-base's: its copyright file is that one.
        fs_err::create_dir_all(libc.1.join("usr/share/doc")).unwrap();
        std::os::unix::fs::symlink("gcc-base", libc.1.join("usr/share/doc/libc6")).unwrap();

        let mut tree = Tree::new();
        // At another path than the package's (merged /usr), and a ROM renamed.
        tree.add_file(
            "lib/x86_64-linux-gnu/libc.so.6",
            b"libc bytes".to_vec(),
            0o644,
        )
        .unwrap();
        tree.add_file("usr/share/qemu/vgabios-stdvga.bin", b"rom".to_vec(), 0o644)
            .unwrap();
        tree.add_file("init", b"built here".to_vec(), 0o755)
            .unwrap();
        tree.add_symlink("lib64", "usr/lib64").unwrap();
        let cpio = tree.to_bytes(Format::Cpio, 0).unwrap();
        let image = tmp.join("rootfs");
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        std::io::Write::write_all(&mut xz, &cpio).unwrap();
        fs_err::write(&image, xz.finish().unwrap()).unwrap();

        let all = vec![unused, other, roms.clone(), libc.clone()];
        let found = held(&image, || Ok(all)).unwrap().unwrap();
        assert_eq!(found.packages, [libc.0, roms.0]);
        assert_eq!(found.built, ["init"]);
        assert_eq!(
            found.copyrights.get(&"a".repeat(64)),
            Some(
                &top.join("d".repeat(64))
                    .join("usr/share/doc/gcc-base/copyright")
            )
        );
        assert_eq!(found.copyrights.get(&"b".repeat(64)), None);

        let kernel = tmp.join("kernel");
        fs_err::write(&kernel, b"\x7fELF not an archive").unwrap();
        let asked = || -> Result<Vec<(Blob, PathBuf)>> { panic!("a kernel holds no packages") };
        assert_eq!(held(&kernel, asked).unwrap(), None);
        let _ = fs_err::remove_dir_all(&tmp);
    }
}
