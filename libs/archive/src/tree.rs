//! An in-memory file tree, sorted by path, from which the writers produce archives.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{io_err, Conflict, Error, PathProblem, Result};
use crate::path::normalize;
use crate::{cpio, gzip, tar_writer};

/// Mode of regular files without an exec bit, after normalisation.
pub const FILE_MODE: u32 = 0o644;
/// Mode of executables (any exec bit set on the host) and of directories.
pub const EXEC_MODE: u32 = 0o755;
/// Mode of directories, including the ones created implicitly.
pub const DIR_MODE: u32 = 0o755;
/// Mode of symlinks.
pub const SYMLINK_MODE: u32 = 0o777;

/// Permission bits a tree entry may carry (setuid, setgid, sticky, rwx).
const PERMISSION_BITS: u32 = 0o7777;

/// The normalised mode of a regular file given its host mode: `0755` when any exec bit is
/// set, `0644` otherwise; setuid, setgid and sticky are dropped.
pub fn normalize_file_mode(host_mode: u32) -> u32 {
    if host_mode & 0o111 != 0 {
        EXEC_MODE
    } else {
        FILE_MODE
    }
}

/// A file tree keyed by relative path. Iteration is in byte order of the path, so parents
/// always come before their children.
///
/// Paths are normalised on the way in: a leading `/` and repeated slashes are dropped;
/// `.` and `..` components are refused with [`Error::InvalidPath`]. Missing parents are
/// created as directories with mode [`DIR_MODE`]. Adding a non-directory where one already
/// exists replaces it; adding a directory over a directory only changes its mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

/// One entry of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Permission bits only (`0o7777` at most), no file type bits.
    pub mode: u32,
    pub kind: EntryKind,
}

/// What an [`Entry`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File(FileData),
    Dir,
    Symlink { target: String },
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
}

/// The contents of a regular file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileData {
    /// Contents held in memory.
    Bytes(Vec<u8>),
    /// A host file, read when an archive is written.
    Host(PathBuf),
}

/// Output formats of [`Tree::to_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// cpio "newc" (`070701`), as Linux initramfs images use.
    Cpio,
    /// cpio "newc", gzip-compressed.
    CpioGz,
    /// GNU tar.
    Tar,
    /// GNU tar, gzip-compressed.
    TarGz,
}

impl FileData {
    /// The file's contents, reading a host file if needed.
    pub fn read(&self) -> Result<Cow<'_, [u8]>> {
        match self {
            FileData::Bytes(bytes) => Ok(Cow::Borrowed(bytes)),
            FileData::Host(path) => fs::read(path)
                .map(Cow::Owned)
                .map_err(io_err("reading", path)),
        }
    }
}

impl Entry {
    fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Dir)
    }
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// The tree of a host directory (not including the directory itself); see
    /// [`Tree::add_host_dir`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Tree> {
        let mut tree = Tree::new();
        tree.add_host_dir("", dir)?;
        Ok(tree)
    }

    /// Adds a regular file with the given contents and mode (kept as given, setuid included).
    pub fn add_file(&mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> Result<()> {
        self.insert(path, EntryKind::File(FileData::Bytes(bytes.into())), mode)
    }

    /// Adds a regular file whose contents are read from `host_path` when the archive is
    /// written. The mode is kept as given; see [`normalize_file_mode`].
    pub fn add_host_file(
        &mut self,
        path: &str,
        host_path: impl Into<PathBuf>,
        mode: u32,
    ) -> Result<()> {
        self.insert(
            path,
            EntryKind::File(FileData::Host(host_path.into())),
            mode,
        )
    }

    /// Adds a directory, or changes the mode of an existing one.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<()> {
        self.insert(path, EntryKind::Dir, mode)
    }

    /// Adds a symlink (mode [`SYMLINK_MODE`]). The target is stored as given.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<()> {
        if target.is_empty() || target.contains('\0') {
            return Err(Error::InvalidPath {
                path: target.to_owned(),
                problem: if target.is_empty() {
                    PathProblem::Empty
                } else {
                    PathProblem::Nul
                },
            });
        }
        let target = target.to_owned();
        self.insert(path, EntryKind::Symlink { target }, SYMLINK_MODE)
    }

    /// Adds a character device node, e.g. `add_char_dev("dev/console", 5, 1, 0o600)`.
    pub fn add_char_dev(&mut self, path: &str, major: u32, minor: u32, mode: u32) -> Result<()> {
        self.insert(path, EntryKind::CharDevice { major, minor }, mode)
    }

    /// Adds a block device node.
    pub fn add_block_dev(&mut self, path: &str, major: u32, minor: u32, mode: u32) -> Result<()> {
        self.insert(path, EntryKind::BlockDevice { major, minor }, mode)
    }

    /// Adds the contents of a host directory under `prefix` (`""` for the root).
    ///
    /// Modes are normalised so the result does not depend on the host's umask: files get
    /// [`normalize_file_mode`], directories [`DIR_MODE`], symlinks [`SYMLINK_MODE`]; device
    /// nodes keep their permission bits. Timestamps and owners are ignored. Files are read
    /// lazily, when an archive is written. Hard links become separate files. Sockets and
    /// fifos are refused, as are names that are not UTF-8.
    pub fn add_host_dir(&mut self, prefix: &str, dir: impl AsRef<Path>) -> Result<()> {
        let prefix = if prefix.split('/').all(str::is_empty) {
            String::new()
        } else {
            let prefix = normalize(prefix)?;
            if self.get(&prefix).is_none() {
                self.add_dir(&prefix, DIR_MODE)?;
            }
            prefix
        };
        self.walk_host_dir(dir.as_ref(), &prefix)
    }

    fn walk_host_dir(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut children = Vec::new();
        for child in fs::read_dir(dir).map_err(io_err("reading directory", dir))? {
            let child = child.map_err(io_err("reading directory", dir))?;
            children.push(child.path());
        }
        // Sorted so that the first error reported does not depend on directory order.
        children.sort();
        for host in children {
            let Some(name) = host.file_name().and_then(|n| n.to_str()) else {
                return Err(not_utf8(&host));
            };
            let path = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let meta = fs::symlink_metadata(&host).map_err(io_err("reading metadata of", &host))?;
            let file_type = meta.file_type();
            if file_type.is_dir() {
                self.add_dir(&path, DIR_MODE)?;
                self.walk_host_dir(&host, &path)?;
            } else if file_type.is_symlink() {
                let target = fs::read_link(&host).map_err(io_err("reading symlink", &host))?;
                let Some(target) = target.to_str() else {
                    return Err(not_utf8(&host));
                };
                self.add_symlink(&path, target)?;
            } else if file_type.is_file() {
                self.add_host_file(&path, host, normalize_file_mode(meta.mode()))?;
            } else if file_type.is_char_device() || file_type.is_block_device() {
                let (major, minor) = split_dev(meta.rdev());
                let mode = meta.mode() & 0o777;
                if file_type.is_char_device() {
                    self.add_char_dev(&path, major, minor, mode)?;
                } else {
                    self.add_block_dev(&path, major, minor, mode)?;
                }
            } else {
                return Err(Error::UnsupportedHostFile { path: host });
            }
        }
        Ok(())
    }

    /// Removes an entry and, for a directory, everything below it. Returns whether the path
    /// was present.
    pub fn remove(&mut self, path: &str) -> Result<bool> {
        let path = normalize(path)?;
        let below = format!("{path}/");
        let removed = self.entries.remove(&path).is_some();
        self.entries.retain(|p, _| !p.starts_with(&below));
        Ok(removed)
    }

    /// The entry at `path`, if any (the path is normalised first).
    pub fn get(&self, path: &str) -> Option<&Entry> {
        let path = normalize(path).ok()?;
        self.entries.get(&path)
    }

    /// All entries in archive order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Number of entries (directories included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes a cpio "newc" archive; see the [`cpio`](crate::cpio) module. Returns `out`.
    pub fn write_cpio<W: Write>(&self, out: W, mtime: u64) -> Result<W> {
        cpio::write(self, mtime, out)
    }

    /// Writes a gzip-compressed cpio "newc" archive. Returns `out`.
    pub fn write_cpio_gz<W: Write>(&self, out: W, mtime: u64) -> Result<W> {
        let encoder = cpio::write(self, mtime, gzip::encoder(out))?;
        gzip::finish(encoder)
    }

    /// Writes a GNU tar archive. Returns `out`.
    ///
    /// Headers are GNU format, built field by field: mtime as given, uid and gid 0, empty
    /// user and group names, the entry's mode. Long names and symlink targets use GNU
    /// `././@LongLink` entries; directory names end in `/`.
    pub fn write_tar<W: Write>(&self, out: W, mtime: u64) -> Result<W> {
        tar_writer::write(self, mtime, out)
    }

    /// Writes a gzip-compressed GNU tar archive. Returns `out`.
    pub fn write_tar_gz<W: Write>(&self, out: W, mtime: u64) -> Result<W> {
        let encoder = tar_writer::write(self, mtime, gzip::encoder(out))?;
        gzip::finish(encoder)
    }

    /// The archive in `format` as bytes, every timestamp set to `mtime`.
    pub fn to_bytes(&self, format: Format, mtime: u64) -> Result<Vec<u8>> {
        let out = Vec::new();
        match format {
            Format::Cpio => self.write_cpio(out, mtime),
            Format::CpioGz => self.write_cpio_gz(out, mtime),
            Format::Tar => self.write_tar(out, mtime),
            Format::TarGz => self.write_tar_gz(out, mtime),
        }
    }

    fn insert(&mut self, path: &str, kind: EntryKind, mode: u32) -> Result<()> {
        let path = normalize(path)?;
        let entry = Entry {
            mode: mode & PERMISSION_BITS,
            kind,
        };
        // Check every parent before creating any, so a refused entry changes nothing.
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        for parent in &parents {
            if let Some(existing) = self.entries.get(*parent) {
                if !existing.is_dir() {
                    return Err(Error::Conflict {
                        path: path.clone(),
                        problem: Conflict::ParentNotDirectory {
                            parent: (*parent).to_owned(),
                        },
                    });
                }
            }
        }
        let conflict = match self.entries.get(&path) {
            Some(existing) if existing.is_dir() && !entry.is_dir() => {
                Some(Conflict::DirectoryExists)
            }
            Some(existing) if !existing.is_dir() && entry.is_dir() => {
                Some(Conflict::NonDirectoryExists)
            }
            _ => None,
        };
        if let Some(problem) = conflict {
            return Err(Error::Conflict { path, problem });
        }
        for parent in parents {
            self.entries
                .entry(parent.to_owned())
                .or_insert_with(|| Entry {
                    mode: DIR_MODE,
                    kind: EntryKind::Dir,
                });
        }
        self.entries.insert(path, entry);
        Ok(())
    }
}

fn not_utf8(host: &Path) -> Error {
    Error::InvalidPath {
        path: host.to_string_lossy().into_owned(),
        problem: PathProblem::NotUtf8,
    }
}

/// Splits a Linux `dev_t` into major and minor numbers (glibc's encoding).
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    // Both are masked to 32 bits above.
    (major as u32, minor as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(tree: &Tree) -> Vec<&str> {
        tree.iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn parents_are_created_and_sorted_first() {
        let mut tree = Tree::new();
        tree.add_file("/usr/bin/x", "x", 0o755).unwrap();
        tree.add_char_dev("dev/console", 5, 1, 0o600).unwrap();
        assert_eq!(
            paths(&tree),
            ["dev", "dev/console", "usr", "usr/bin", "usr/bin/x"]
        );
        assert_eq!(tree.get("usr").map(|e| e.mode), Some(DIR_MODE));
    }

    #[test]
    fn explicit_modes_are_kept_and_type_bits_dropped() {
        let mut tree = Tree::new();
        tree.add_file("su", "", 0o104755).unwrap();
        tree.add_dir("tmp", 0o1777).unwrap();
        tree.add_dir("tmp", 0o1777).unwrap();
        assert_eq!(tree.get("su").map(|e| e.mode), Some(0o4755));
        assert_eq!(tree.get("tmp").map(|e| e.mode), Some(0o1777));
    }

    #[test]
    fn conflicts_are_refused_without_side_effects() {
        let mut tree = Tree::new();
        tree.add_symlink("lib", "usr/lib").unwrap();
        let err = tree.add_file("lib/x/y", "", 0o644).unwrap_err();
        assert!(matches!(
            err,
            Error::Conflict { problem: Conflict::ParentNotDirectory { ref parent }, .. } if parent == "lib"
        ));
        assert_eq!(paths(&tree), ["lib"]);
        tree.add_dir("d", 0o755).unwrap();
        assert!(matches!(
            tree.add_file("d", "", 0o644),
            Err(Error::Conflict {
                problem: Conflict::DirectoryExists,
                ..
            })
        ));
        assert!(matches!(
            tree.add_dir("lib", 0o755),
            Err(Error::Conflict {
                problem: Conflict::NonDirectoryExists,
                ..
            })
        ));
        // Replacing a non-directory is allowed: the later one wins.
        tree.add_file("lib", "now a file", 0o644).unwrap();
        assert!(matches!(
            tree.get("lib").map(|e| &e.kind),
            Some(EntryKind::File(_))
        ));
    }

    #[test]
    fn remove_takes_the_subtree() {
        let mut tree = Tree::new();
        tree.add_file("a/b/c", "", 0o644).unwrap();
        tree.add_file("a-b", "", 0o644).unwrap();
        assert!(tree.remove("a/b").unwrap());
        assert_eq!(paths(&tree), ["a", "a-b"]);
        assert!(!tree.remove("a/b").unwrap());
    }

    #[test]
    fn bad_symlink_targets_are_refused() {
        let mut tree = Tree::new();
        assert!(tree.add_symlink("l", "").is_err());
        assert!(tree.add_symlink("l", "a\0b").is_err());
        assert!(tree.is_empty());
    }

    #[test]
    fn normalize_file_mode_table() {
        for (host, want) in [
            (0o100600, 0o644),
            (0o644, 0o644),
            (0o400, 0o644),
            (0o4755, 0o755),
            (0o700, 0o755),
            (0o744, 0o755),
            (0o1001, 0o755),
        ] {
            assert_eq!(normalize_file_mode(host), want, "host mode {host:o}");
        }
    }

    #[test]
    fn split_dev_table() {
        // glibc's makedev, written out independently of split_dev.
        fn makedev(major: u64, minor: u64) -> u64 {
            (minor & 0xff)
                | ((major & 0xfff) << 8)
                | ((minor & !0xff) << 12)
                | ((major & !0xfff) << 32)
        }
        assert_eq!(split_dev(0x0501), (5, 1));
        for (major, minor) in [(5, 1), (259, 0), (0x12345, 0x6789a), (u32::MAX, u32::MAX)] {
            let dev = makedev(u64::from(major), u64::from(minor));
            assert_eq!(split_dev(dev), (major, minor), "dev {dev:#x}");
        }
    }
}
