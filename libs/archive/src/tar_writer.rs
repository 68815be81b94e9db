//! GNU tar writer.
//!
//! Headers are GNU format (`ustar  \0` magic), built field by field so nothing from the host
//! leaks in: mtime as given, uid and gid 0, empty user and group names, the entry's mode,
//! no access or change times. Names longer than 100 bytes and long symlink targets use GNU
//! `././@LongLink` entries (written by the `tar` crate with mtime 0 and owner 0). Directory
//! names end in `/`. The archive ends with two zero blocks and is not padded to a record.

use std::io::{self, Write};

use tar::{Builder, EntryType, Header};

use crate::error::{Error, Result};
use crate::tree::{EntryKind, Tree};

pub(crate) fn write<W: Write>(tree: &Tree, mtime: u64, out: W) -> Result<W> {
    let write_err = |source| Error::Write {
        format: "tar",
        source,
    };
    let mut builder = Builder::new(out);
    for (path, entry) in tree.iter() {
        let mut header = Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(entry.mode);
        header.set_size(0);
        let appended = match &entry.kind {
            EntryKind::File(file) => {
                let contents = file.read()?;
                header.set_entry_type(EntryType::Regular);
                header.set_size(contents.len() as u64);
                builder.append_data(&mut header, path, &contents[..])
            }
            EntryKind::Dir => {
                header.set_entry_type(EntryType::Directory);
                builder.append_data(&mut header, format!("{path}/"), io::empty())
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(EntryType::Symlink);
                builder.append_link(&mut header, path, target)
            }
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                header.set_entry_type(if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                // GNU headers hold 7 octal digits; larger numbers are refused here.
                let overflow = |field, value: u32| Error::FieldOverflow {
                    format: "tar",
                    path: path.to_owned(),
                    field,
                    value: value.into(),
                };
                header
                    .set_device_major(*major)
                    .map_err(|_| overflow("device major", *major))?;
                header
                    .set_device_minor(*minor)
                    .map_err(|_| overflow("device minor", *minor))?;
                builder.append_data(&mut header, path, io::empty())
            }
        };
        appended.map_err(write_err)?;
    }
    let mut out = builder.into_inner().map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_nothing_from_the_host() {
        let mut tree = Tree::new();
        tree.add_file("etc/motd", "hi\n", 0o644).unwrap();
        tree.add_char_dev("dev/console", 5, 1, 0o600).unwrap();
        tree.add_symlink("bin/sh", "busybox").unwrap();
        let long = format!("{}/file", "d".repeat(120));
        tree.add_file(&long, "x", 0o755).unwrap();
        let bytes = tree.write_tar(Vec::new(), 1_700_000_000).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.mtime().unwrap(), 1_700_000_000);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            assert_eq!(h.groupname_bytes(), Some(&b""[..]));
            assert!(h.as_gnu().is_some());
            seen.push((
                String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                h.entry_type(),
                h.mode().unwrap(),
            ));
        }
        let expected = [
            ("bin/", EntryType::Directory, 0o755),
            ("bin/sh", EntryType::Symlink, 0o777),
            (
                &format!("{}/", "d".repeat(120)),
                EntryType::Directory,
                0o755,
            ),
            (&long, EntryType::Regular, 0o755),
            ("dev/", EntryType::Directory, 0o755),
            ("dev/console", EntryType::Char, 0o600),
            ("etc/", EntryType::Directory, 0o755),
            ("etc/motd", EntryType::Regular, 0o644),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(p, t, m)| (p.to_string(), *t, *m))
            .collect();
        assert_eq!(seen, expected);
    }
}
