//! Writes RPM v4 binary packages from a [`Tree`], deterministically (no crate writes them
//! byte-for-byte reproducibly without pulling a signing stack into the driver). Layout:
//! the 96-byte lead; the signature header (sizes, the header's SHA1 and SHA256, the MD5 of
//! header and payload); the main header (tags sorted, an immutable region first, as rpm
//! writes it); the payload, a gzip'd cpio "newc" archive of `./`-prefixed paths in header
//! order. File digests are SHA256 (`FILEDIGESTALGO` 8), the payload has a SHA256 digest,
//! every time is `mtime`, every owner root.

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};
use stubdoms_archive::{EntryKind, Tree};

/// A dependency: name, comparison flags (`SENSE_*`) and version (empty for none).
pub type Dep = (String, u32, String);

pub const SENSE_LESS: u32 = 0x02;
pub const SENSE_GREATER: u32 = 0x04;
pub const SENSE_EQUAL: u32 = 0x08;
const SENSE_RPMLIB: u32 = 0x0100_0000;

/// The fields of a binary package that `dist` sets.
pub struct Spec {
    pub name: String,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub summary: String,
    pub description: String,
    pub licence: String,
    pub url: Option<String>,
    pub packager: String,
    pub recommends: Vec<Dep>,
    pub conflicts: Vec<Dep>,
    /// Folders the package owns (its own, such as its doc folder), relative to `/`.
    pub owned_dirs: Vec<String>,
    pub changelog: String,
}

const TYPE_INT16: u32 = 3;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_BIN: u32 = 7;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

enum Value {
    Int16(Vec<u16>),
    Int32(Vec<u32>),
    Str(String),
    Bin(Vec<u8>),
    Strs(Vec<String>),
    I18n(String),
}

/// A header under construction: tags with values, written sorted.
struct Header {
    region: u32,
    tags: Vec<(u32, Value)>,
}

impl Header {
    fn new(region: u32) -> Header {
        Header {
            region,
            tags: Vec::new(),
        }
    }

    fn add(&mut self, tag: u32, v: Value) {
        self.tags.push((tag, v));
    }

    /// The header structure: magic, index, data store with the region trailer last.
    fn bytes(mut self) -> Vec<u8> {
        self.tags.sort_by_key(|(t, _)| *t);
        let count = self.tags.len() as u32 + 1;
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, v) in &self.tags {
            let (ty, n, align) = match v {
                Value::Int16(x) => (TYPE_INT16, x.len(), 2),
                Value::Int32(x) => (TYPE_INT32, x.len(), 4),
                Value::Str(_) => (TYPE_STRING, 1, 1),
                Value::Bin(x) => (TYPE_BIN, x.len(), 1),
                Value::Strs(x) => (TYPE_STRING_ARRAY, x.len(), 1),
                Value::I18n(_) => (TYPE_I18NSTRING, 1, 1),
            };
            while !data.len().is_multiple_of(align) {
                data.push(0);
            }
            index.push((*tag, ty, data.len() as u32, n as u32));
            match v {
                Value::Int16(x) => x.iter().for_each(|i| data.extend(i.to_be_bytes())),
                Value::Int32(x) => x.iter().for_each(|i| data.extend(i.to_be_bytes())),
                Value::Str(s) | Value::I18n(s) => {
                    data.extend(s.as_bytes());
                    data.push(0);
                }
                Value::Bin(b) => data.extend(b),
                Value::Strs(x) => x.iter().for_each(|s| {
                    data.extend(s.as_bytes());
                    data.push(0);
                }),
            }
        }
        // The region trailer: an index entry pointing back over the whole index.
        let trailer_at = data.len() as u32;
        data.extend(self.region.to_be_bytes());
        data.extend(TYPE_BIN.to_be_bytes());
        data.extend((-(count as i32 * 16)).to_be_bytes());
        data.extend(16u32.to_be_bytes());
        let mut out = vec![0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
        out.extend(count.to_be_bytes());
        out.extend((data.len() as u32).to_be_bytes());
        for (tag, ty, off, n) in
            std::iter::once((self.region, TYPE_BIN, trailer_at, 16)).chain(index)
        {
            for v in [tag, ty, off, n] {
                out.extend(v.to_be_bytes());
            }
        }
        out.extend(data);
        out
    }
}

/// One payload entry, in header order.
struct File {
    path: String,
    mode: u32,
    data: Vec<u8>,
}

/// The whole `.rpm` of `data` with `spec`.
pub fn write(spec: &Spec, data: &Tree, mtime: u64) -> Result<Vec<u8>> {
    let Ok(mtime32) = u32::try_from(mtime) else {
        bail!("SOURCE_DATE_EPOCH {mtime} does not fit an rpm's 32-bit times");
    };
    if spec.name.contains(char::is_whitespace) || spec.version.contains('-') {
        bail!(
            "rpm name `{}` and version `{}` must be one word, the version without `-`",
            spec.name,
            spec.version
        );
    }
    let mut files = Vec::new();
    for (path, entry) in data.iter() {
        match &entry.kind {
            EntryKind::File(f) => files.push(File {
                path: path.to_string(),
                mode: 0o100000 | entry.mode,
                data: f.read()?.into_owned(),
            }),
            EntryKind::Dir if spec.owned_dirs.iter().any(|d| d == path) => files.push(File {
                path: path.to_string(),
                mode: 0o040000 | entry.mode,
                data: Vec::new(),
            }),
            EntryKind::Symlink { target } => files.push(File {
                path: path.to_string(),
                mode: 0o120777,
                data: target.as_bytes().to_vec(),
            }),
            EntryKind::Dir => {}
            _ => bail!("{path}: rpm packages of the project hold files, links and folders only"),
        }
    }
    let payload_raw = cpio(&files, mtime32);
    let payload = stubdoms_archive::gzip::compress(&payload_raw)?;
    let header = main_header(spec, &files, mtime32, &payload).bytes();
    let mut sig = Header::new(62);
    sig.add(
        269,
        Value::Str(format!("{:x}", sha1::Sha1::digest(&header))),
    );
    sig.add(273, Value::Str(format!("{:x}", Sha256::digest(&header))));
    let Ok(total) = u32::try_from(header.len() + payload.len()) else {
        bail!("{}: the package is larger than 4 GiB", spec.name);
    };
    sig.add(1000, Value::Int32(vec![total]));
    let mut both = header.clone();
    both.extend(&payload);
    sig.add(1004, Value::Bin(md5::Md5::digest(&both).to_vec()));
    sig.add(1007, Value::Int32(vec![payload_raw.len() as u32]));
    let mut out = lead(spec);
    out.extend(sig.bytes());
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    out.extend(header);
    out.extend(payload);
    Ok(out)
}

fn lead(spec: &Spec) -> Vec<u8> {
    let mut out = vec![0xed, 0xab, 0xee, 0xdb, 3, 0];
    out.extend(0u16.to_be_bytes()); // binary
    out.extend(1u16.to_be_bytes()); // archnum (rpm reads the header's ARCH)
    let mut name = format!("{}-{}-{}", spec.name, spec.version, spec.release).into_bytes();
    name.resize(66, 0);
    name[65] = 0;
    out.extend(name);
    out.extend(1u16.to_be_bytes()); // Linux
    out.extend(5u16.to_be_bytes()); // signature: a header
    out.extend([0u8; 16]);
    out
}

fn main_header(spec: &Spec, files: &[File], mtime: u32, payload: &[u8]) -> Header {
    let mut h = Header::new(63);
    let s = |v: &str| Value::Str(v.to_string());
    h.add(100, Value::Strs(vec!["C".into()]));
    h.add(1000, s(&spec.name));
    h.add(1001, s(&spec.version));
    h.add(1002, s(&spec.release));
    h.add(1004, Value::I18n(spec.summary.clone()));
    h.add(
        1005,
        Value::I18n(super::refill(&spec.description).join("\n")),
    );
    h.add(1006, Value::Int32(vec![mtime]));
    h.add(1007, s("reproducible"));
    let size: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    h.add(1009, Value::Int32(vec![size as u32]));
    h.add(1014, s(&spec.licence));
    h.add(1015, s(&spec.packager));
    // Group: optional for Fedora, still asked for by rpmlint (which takes `Unspecified` for
    // none).
    h.add(1016, Value::I18n("System Environment/Base".into()));
    if let Some(u) = &spec.url {
        h.add(1020, s(u));
    }
    h.add(1021, s("linux"));
    h.add(1022, s(&spec.arch));
    let n = files.len();
    h.add(
        1028,
        Value::Int32(files.iter().map(|f| f.data.len() as u32).collect()),
    );
    h.add(
        1030,
        Value::Int16(files.iter().map(|f| f.mode as u16).collect()),
    );
    h.add(1033, Value::Int16(vec![0; n]));
    h.add(1034, Value::Int32(vec![mtime; n]));
    h.add(
        1035,
        Value::Strs(
            files
                .iter()
                .map(|f| {
                    if f.mode & 0o170000 == 0o100000 {
                        format!("{:x}", Sha256::digest(&f.data))
                    } else {
                        String::new()
                    }
                })
                .collect(),
        ),
    );
    // A symlink's target; its size (above) is the target's length, and the payload holds it.
    h.add(
        1036,
        Value::Strs(
            files
                .iter()
                .map(|f| {
                    if f.mode & 0o170000 == 0o120000 {
                        String::from_utf8_lossy(&f.data).into_owned()
                    } else {
                        String::new()
                    }
                })
                .collect(),
        ),
    );
    // %doc for the doc folder's files, nothing for the images.
    h.add(
        1037,
        Value::Int32(
            files
                .iter()
                .map(|f| u32::from(f.path.starts_with("usr/share/doc/")) * 2)
                .collect(),
        ),
    );
    h.add(1039, Value::Strs(vec!["root".into(); n]));
    h.add(1040, Value::Strs(vec!["root".into(); n]));
    h.add(
        1044,
        s(&format!(
            "{}-{}-{}.src.rpm",
            spec.name, spec.version, spec.release
        )),
    );
    h.add(1045, Value::Int32(vec![u32::MAX; n]));
    let provides = [
        (
            spec.name.clone(),
            SENSE_EQUAL,
            format!("{}-{}", spec.version, spec.release),
        ),
        (
            format!("{}({})", spec.name, spec.arch),
            SENSE_EQUAL,
            format!("{}-{}", spec.version, spec.release),
        ),
    ];
    add_deps(&mut h, (1047, 1112, 1113), &provides);
    let rpmlib = |name: &str, v: &str| {
        (
            format!("rpmlib({name})"),
            SENSE_RPMLIB | SENSE_LESS | SENSE_EQUAL,
            v.to_string(),
        )
    };
    let requires = [
        rpmlib("CompressedFileNames", "3.0.4-1"),
        rpmlib("FileDigests", "4.6.0-1"),
        rpmlib("PayloadFilesHavePrefix", "4.0-1"),
    ];
    add_deps(&mut h, (1049, 1048, 1050), &requires);
    if !spec.conflicts.is_empty() {
        add_deps(&mut h, (1054, 1053, 1055), &spec.conflicts);
    }
    h.add(1064, s("4.20.1"));
    h.add(1080, Value::Int32(vec![mtime]));
    h.add(
        1081,
        Value::Strs(vec![format!(
            "{} - {}-{}",
            spec.packager, spec.version, spec.release
        )]),
    );
    h.add(1082, Value::Strs(vec![spec.changelog.clone()]));
    h.add(1095, Value::Int32(vec![1; n]));
    h.add(1096, Value::Int32((1..=n as u32).collect()));
    h.add(1097, Value::Strs(vec![String::new(); n]));
    let mut dirs: Vec<String> = Vec::new();
    let mut indexes = Vec::new();
    let mut bases = Vec::new();
    for f in files {
        let (dir, base) = match f.path.rsplit_once('/') {
            Some((d, b)) => (format!("/{d}/"), b.to_string()),
            None => ("/".to_string(), f.path.clone()),
        };
        let i = match dirs.iter().position(|d| *d == dir) {
            Some(i) => i,
            None => {
                dirs.push(dir);
                dirs.len() - 1
            }
        };
        indexes.push(i as u32);
        bases.push(base);
    }
    h.add(1116, Value::Int32(indexes));
    h.add(1117, Value::Strs(bases));
    h.add(1118, Value::Strs(dirs));
    h.add(1124, s("cpio"));
    h.add(1125, s("gzip"));
    h.add(1126, s("9"));
    h.add(5011, Value::Int32(vec![8]));
    if !spec.recommends.is_empty() {
        add_deps(&mut h, (5046, 5048, 5047), &spec.recommends);
    }
    h.add(
        5092,
        Value::Strs(vec![format!("{:x}", Sha256::digest(payload))]),
    );
    h.add(5093, Value::Int32(vec![8]));
    h
}

/// Adds a dependency list as its three tags (names, flags, versions).
fn add_deps(h: &mut Header, (names, flags, versions): (u32, u32, u32), deps: &[Dep]) {
    h.add(
        names,
        Value::Strs(deps.iter().map(|d| d.0.clone()).collect()),
    );
    h.add(flags, Value::Int32(deps.iter().map(|d| d.1).collect()));
    h.add(
        versions,
        Value::Strs(deps.iter().map(|d| d.2.clone()).collect()),
    );
}

/// The payload: cpio "newc" of `files` (names `./path`, inode = index + 1), then the trailer.
fn cpio(files: &[File], mtime: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |name: &str, ino: u32, mode: u32, nlink: u32, data: &[u8]| {
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            mtime,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend(b"070701");
        for f in fields {
            out.extend(format!("{f:08x}").as_bytes());
        }
        out.extend(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    for (i, f) in files.iter().enumerate() {
        let nlink = if f.mode & 0o170000 == 0o040000 { 2 } else { 1 };
        entry(
            &format!("./{}", f.path),
            i as u32 + 1,
            f.mode,
            nlink,
            &f.data,
        );
    }
    entry("TRAILER!!!", 0, 0, 1, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            name: "xen-pvgrub".into(),
            version: "0.1.0".into(),
            release: "1".into(),
            arch: "x86_64".into(),
            summary: "PV-GRUB images".into(),
            description: "Images.".into(),
            licence: "GPL-3.0-or-later".into(),
            url: None,
            packager: "Someone <someone@example.org>".into(),
            recommends: vec![(
                "xen-runtime".into(),
                SENSE_GREATER | SENSE_EQUAL,
                "4.17".into(),
            )],
            conflicts: Vec::new(),
            owned_dirs: vec!["usr/share/doc/xen-pvgrub".into()],
            changelog: "- Built.".into(),
        }
    }

    fn tree() -> Tree {
        let mut t = Tree::new();
        t.add_file("usr/libexec/xen/boot/a.gz", vec![1u8; 3000], 0o644)
            .unwrap();
        t.add_file("usr/share/doc/xen-pvgrub/README", "r\n", 0o644)
            .unwrap();
        t
    }

    /// Same input, same bytes; the lead and both headers start where rpm expects them.
    #[test]
    fn packages_are_byte_for_byte_reproducible() {
        let a = write(&spec(), &tree(), 1_700_000_000).unwrap();
        assert_eq!(a, write(&spec(), &tree(), 1_700_000_000).unwrap());
        assert_ne!(a, write(&spec(), &tree(), 1_700_000_001).unwrap());
        assert_eq!(&a[..4], &[0xed, 0xab, 0xee, 0xdb]);
        assert_eq!(&a[96..100], &[0x8e, 0xad, 0xe8, 0x01]);
        assert!(a[10..].starts_with(b"xen-pvgrub-0.1.0-1\0"));
        let sig_entries = u32::from_be_bytes([a[104], a[105], a[106], a[107]]) as usize;
        let sig_data = u32::from_be_bytes([a[108], a[109], a[110], a[111]]) as usize;
        let mut main = 96 + 16 + sig_entries * 16 + sig_data;
        main += (8 - main % 8) % 8;
        assert_eq!(&a[main..main + 4], &[0x8e, 0xad, 0xe8, 0x01]);
    }

    /// The payload lists the owned folder and the files, `./`-prefixed, in header order.
    #[test]
    fn payload_holds_prefixed_paths_in_order() {
        let files = [
            File {
                path: "usr/share/doc/p".into(),
                mode: 0o040755,
                data: Vec::new(),
            },
            File {
                path: "usr/share/doc/p/x".into(),
                mode: 0o100644,
                data: b"xy".to_vec(),
            },
        ];
        let bytes = cpio(&files, 5);
        let entries = stubdoms_archive::cpio::read(&bytes).unwrap();
        let names: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["./usr/share/doc/p", "./usr/share/doc/p/x"]);
    }
}
