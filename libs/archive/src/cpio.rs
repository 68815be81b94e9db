//! cpio "newc" (`070701`) writer, and a strict reader for checks and tests.
//!
//! Each entry is a 110-byte ASCII header (the magic and 13 fields of 8 upper-case hex
//! digits), the NUL-terminated name padded to 4 bytes, then the data padded to 4 bytes. The
//! archive ends with an entry named `TRAILER!!!`. Written entries have uid and gid 0, every
//! mtime equal to the one given, inode numbers 1, 2, ... in path order, nlink 2 for
//! directories and 1 otherwise (so Linux's initramfs unpacker never looks for hard links),
//! device numbers of the containing file system 0, and no padding after the trailer.

use std::io::Write;

use crate::error::{Error, Result};
use crate::tree::{EntryKind, Tree};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

/// One entry read back from a cpio "newc" archive, fields as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpioEntry {
    pub name: String,
    pub ino: u32,
    /// File type and permission bits, as in `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// File contents, or the target of a symlink.
    pub data: Vec<u8>,
}

struct Header<'a> {
    name: &'a str,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    rdev: (u32, u32),
    data: &'a [u8],
}

pub(crate) fn write<W: Write>(tree: &Tree, mtime: u64, mut out: W) -> Result<W> {
    for (index, (path, entry)) in tree.iter().enumerate() {
        let overflow = |field, value| Error::FieldOverflow {
            format: "cpio",
            path: path.to_owned(),
            field,
            value,
        };
        let mtime = u32::try_from(mtime).map_err(|_| overflow("mtime", mtime))?;
        let ino = u32::try_from(index + 1).map_err(|_| overflow("inode number", index as u64))?;
        let contents;
        let (file_type, nlink, rdev, data): (u32, u32, (u32, u32), &[u8]) = match &entry.kind {
            EntryKind::File(file) => {
                contents = file.read()?;
                (S_IFREG, 1, (0, 0), &contents)
            }
            EntryKind::Dir => (S_IFDIR, 2, (0, 0), &[]),
            EntryKind::Symlink { target } => (S_IFLNK, 1, (0, 0), target.as_bytes()),
            EntryKind::CharDevice { major, minor } => (S_IFCHR, 1, (*major, *minor), &[]),
            EntryKind::BlockDevice { major, minor } => (S_IFBLK, 1, (*major, *minor), &[]),
        };
        let header = Header {
            name: path,
            ino,
            mode: file_type | entry.mode,
            nlink,
            mtime,
            rdev,
            data,
        };
        write_entry(&mut out, &header).map_err(|e| match e {
            EntryError::Overflow(field, value) => overflow(field, value),
            EntryError::Io(source) => Error::Write {
                format: "cpio",
                source,
            },
        })?;
    }
    let trailer = Header {
        name: TRAILER,
        ino: 0,
        mode: 0,
        nlink: 1,
        mtime: 0,
        rdev: (0, 0),
        data: &[],
    };
    let write_err = |source| Error::Write {
        format: "cpio",
        source,
    };
    match write_entry(&mut out, &trailer) {
        Ok(()) => {}
        Err(EntryError::Io(source)) => return Err(write_err(source)),
        Err(EntryError::Overflow(field, value)) => {
            return Err(Error::FieldOverflow {
                format: "cpio",
                path: TRAILER.to_owned(),
                field,
                value,
            })
        }
    }
    out.flush().map_err(write_err)?;
    Ok(out)
}

enum EntryError {
    Overflow(&'static str, u64),
    Io(std::io::Error),
}

fn write_entry<W: Write>(out: &mut W, h: &Header<'_>) -> Result<(), EntryError> {
    let size = u32::try_from(h.data.len())
        .map_err(|_| EntryError::Overflow("file size", h.data.len() as u64))?;
    let name_size = u32::try_from(h.name.len() + 1)
        .map_err(|_| EntryError::Overflow("name size", h.name.len() as u64))?;
    let fields = [
        h.ino, h.mode, 0, // uid
        0, // gid
        h.nlink, h.mtime, size, 0, // major number of the device holding the file
        0, // minor number of the device holding the file
        h.rdev.0, h.rdev.1, name_size, 0, // checksum, unused by "newc"
    ];
    let mut header = Vec::with_capacity(HEADER_LEN + h.name.len() + 4);
    header.extend_from_slice(MAGIC);
    for field in fields {
        header.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    header.extend_from_slice(h.name.as_bytes());
    header.push(0);
    header.resize(align4(header.len()), 0);
    let data_pad = [0u8; 3];
    let write = |out: &mut W| -> std::io::Result<()> {
        out.write_all(&header)?;
        out.write_all(h.data)?;
        out.write_all(&data_pad[..align4(h.data.len()) - h.data.len()])
    };
    write(out).map_err(EntryError::Io)
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Reads every entry of a cpio "newc" archive up to its trailer (not included).
///
/// Strict: a bad magic, a non-hex field, a name without its NUL, or data cut short is an
/// [`Error::Malformed`]; so is a missing trailer. Bytes after the trailer are ignored.
pub fn read(archive: &[u8]) -> Result<Vec<CpioEntry>> {
    let malformed = |entry: Option<&str>, detail: String| Error::Malformed {
        archive: "cpio archive".to_owned(),
        entry: entry.map(str::to_owned),
        detail,
    };
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        let header = archive
            .get(pos..pos + HEADER_LEN)
            .ok_or_else(|| malformed(None, format!("truncated header at offset {pos}")))?;
        if &header[..6] != MAGIC {
            return Err(malformed(None, format!("bad magic at offset {pos}")));
        }
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let hex = &header[6 + 8 * i..14 + 8 * i];
            *field = std::str::from_utf8(hex)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .ok_or_else(|| malformed(None, format!("bad header field {i} at offset {pos}")))?;
        }
        let [ino, mode, uid, gid, nlink, mtime, size, dev_major, dev_minor, rdev_major, rdev_minor, name_size, _check] =
            fields;
        let name_start = pos + HEADER_LEN;
        let name_end = name_start
            .checked_add(name_size as usize)
            .filter(|&end| name_size > 0 && end <= archive.len())
            .ok_or_else(|| malformed(None, format!("truncated name at offset {pos}")))?;
        let name_bytes = &archive[name_start..name_end];
        let name = match name_bytes.split_last() {
            Some((0, name)) if !name.contains(&0) => std::str::from_utf8(name)
                .map_err(|_| malformed(None, format!("name at offset {pos} is not UTF-8")))?,
            _ => {
                return Err(malformed(
                    None,
                    format!("name at offset {pos} is not NUL-terminated"),
                ))
            }
        };
        let data_start = align4(name_end);
        let data_end = data_start
            .checked_add(size as usize)
            .filter(|&end| data_start <= archive.len() && end <= archive.len())
            .ok_or_else(|| malformed(Some(name), "data cut short".to_owned()))?;
        if name == TRAILER {
            return Ok(entries);
        }
        let next = align4(data_end);
        if next > archive.len() {
            return Err(malformed(Some(name), "padding cut short".to_owned()));
        }
        entries.push(CpioEntry {
            name: name.to_owned(),
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            dev_major,
            dev_minor,
            rdev_major,
            rdev_minor,
            data: archive[data_start..data_end].to_vec(),
        });
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_one_file() {
        let mut tree = Tree::new();
        tree.add_file("init", "#!/bin/sh\n", 0o755).unwrap();
        let bytes = tree.write_cpio(Vec::new(), 0x1234).unwrap();
        let header = std::str::from_utf8(&bytes[..HEADER_LEN]).unwrap();
        let expected_fields = [1, S_IFREG | 0o755, 0, 0, 1, 0x1234, 10, 0, 0, 0, 0, 5, 0];
        let expected: String = std::iter::once("070701".to_owned())
            .chain(expected_fields.iter().map(|f| format!("{f:08X}")))
            .collect();
        assert_eq!(header, expected);
        // 110 + "init\0" = 115, padded to 116; 10 bytes of data padded to 12.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[126..128], b"\0\0");
        let trailer = &bytes[128..];
        assert_eq!(trailer.len(), align4(HEADER_LEN + TRAILER.len() + 1));
        assert_eq!(&trailer[HEADER_LEN..HEADER_LEN + 10], TRAILER.as_bytes());
    }

    #[test]
    fn read_round_trips_every_kind() {
        let mut tree = Tree::new();
        tree.add_char_dev("dev/console", 5, 1, 0o600).unwrap();
        tree.add_block_dev("dev/xvda", 202, 0, 0o660).unwrap();
        tree.add_symlink("bin/sh", "busybox").unwrap();
        tree.add_file("bin/busybox", vec![7u8; 1001], 0o4755)
            .unwrap();
        let bytes = tree.write_cpio(Vec::new(), 42).unwrap();
        let entries = read(&bytes).unwrap();
        type Summary<'a> = (&'a str, u32, u32, u32, (u32, u32), usize);
        let summary: Vec<Summary> = entries
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.ino,
                    e.mode,
                    e.nlink,
                    (e.rdev_major, e.rdev_minor),
                    e.data.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("bin", 1, S_IFDIR | 0o755, 2, (0, 0), 0),
                ("bin/busybox", 2, S_IFREG | 0o4755, 1, (0, 0), 1001),
                ("bin/sh", 3, S_IFLNK | 0o777, 1, (0, 0), 7),
                ("dev", 4, S_IFDIR | 0o755, 2, (0, 0), 0),
                ("dev/console", 5, S_IFCHR | 0o600, 1, (5, 1), 0),
                ("dev/xvda", 6, S_IFBLK | 0o660, 1, (202, 0), 0),
            ]
        );
        assert!(entries
            .iter()
            .all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 42));
        assert_eq!(entries[2].data, b"busybox");
    }

    #[test]
    fn mtime_beyond_32_bits_is_an_error() {
        let mut tree = Tree::new();
        tree.add_dir("d", 0o755).unwrap();
        let err = tree.write_cpio(Vec::new(), 1 << 32).unwrap_err();
        assert!(matches!(err, Error::FieldOverflow { field: "mtime", .. }));
    }
}
