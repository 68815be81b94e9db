//! Safe, all-or-nothing tar extraction.
//!
//! Rules, for every archive this crate unpacks:
//!
//! - The destination must not exist. Entries go into a sibling `NAME.partial` directory (a
//!   stale one is removed first), renamed to the destination when everything succeeded and
//!   removed on any error.
//! - Entries with absolute paths or `..` components are refused ([`UnsafeReason`]), as are
//!   relative symlink targets that climb above the destination (absolute targets are kept:
//!   they are read relative to the image root, see below) and hard link targets that are
//!   absolute or use `..`.
//! - No symlink is ever followed: an entry whose parent is a symlink is refused, and a file
//!   is only ever created new (`O_EXCL`), after removing any non-directory in its place.
//!   Symlinks with absolute targets (common in `.deb` data, e.g. `/lib64/ld-linux-x86-64.so.2`)
//!   are therefore harmless while extracting, and mean the right thing inside the image.
//! - Device nodes, fifos and unknown entry types are not created; they are listed in
//!   [`ExtractReport::skipped`]. pax global headers are ignored.
//! - Permission bits are kept without setuid, setgid and sticky; files always get owner
//!   read/write and directories owner rwx, so the result can be read and removed without
//!   privileges. Owners and timestamps are not restored.
//! - Hard links become hard links to the file extracted earlier.
//! - The archive must end with its end-of-archive block and a compressed stream must be
//!   complete (its checksum is checked), so a truncated download is an error.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::compression::Compression;
use crate::error::{io_err, Error, Result, UnsafeReason};
use crate::path::{entry_components, symlink_escapes};

/// How to extract a tarball.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Leading path components to drop (like `tar --strip-components`); entries with no
    /// component left are skipped.
    pub strip_components: usize,
    /// The input's compression; `None` detects it from the first bytes.
    pub compression: Option<Compression>,
}

/// What an extraction created and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractReport {
    pub files: usize,
    /// Directory entries in the archive (parents created implicitly are not counted).
    pub dirs: usize,
    pub symlinks: usize,
    pub hardlinks: usize,
    pub skipped: Vec<Skipped>,
}

/// An archive entry that was deliberately not created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The entry's name as stored in the archive.
    pub entry: String,
    pub kind: SkippedKind,
}

/// The type of a [`Skipped`] entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkippedKind {
    CharDevice,
    BlockDevice,
    Fifo,
    /// Another tar type flag (e.g. a GNU volume header).
    Other(u8),
}

/// Extracts the tarball at `archive` into the new directory `dest`.
pub fn extract_tarball(
    archive: &Path,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport> {
    let file = File::open(archive).map_err(io_err("opening", archive))?;
    extract_tar(file, &archive.display().to_string(), dest, options)
}

/// Extracts a tar stream into the new directory `dest`; `label` names the input in errors.
pub fn extract_tar<R: Read>(
    input: R,
    label: &str,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport> {
    into_new_dir(dest, |root| unpack(input, label, root, options))
}

/// Runs `fill` on a fresh `dest.partial` directory and renames it to `dest` if `fill`
/// succeeds; removes it otherwise.
pub(crate) fn into_new_dir<T>(dest: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    if dest.symlink_metadata().is_ok() {
        return Err(Error::DestinationExists {
            path: dest.to_owned(),
        });
    }
    let Some(name) = dest.file_name() else {
        return Err(Error::Io {
            action: "extracting into",
            path: dest.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "path has no final name"),
        });
    };
    let mut partial_name = name.to_owned();
    partial_name.push(".partial");
    let partial = dest.with_file_name(partial_name);
    match partial.symlink_metadata() {
        Ok(meta) if meta.is_dir() => {
            fs::remove_dir_all(&partial).map_err(io_err("removing stale", &partial))?
        }
        Ok(_) => fs::remove_file(&partial).map_err(io_err("removing stale", &partial))?,
        Err(_) => {}
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err("creating directory", parent))?;
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&partial)
        .map_err(io_err("creating directory", &partial))?;
    let result = fill(&partial).and_then(|value| {
        fs::set_permissions(&partial, fs::Permissions::from_mode(0o755))
            .map_err(io_err("setting permissions of", &partial))?;
        fs::rename(&partial, dest).map_err(io_err("renaming into place", dest))?;
        Ok(value)
    });
    if result.is_err() {
        // Best effort: the error that got us here is the one worth reporting.
        let _ = fs::remove_dir_all(&partial);
    }
    result
}

/// Unpacks a possibly compressed tar stream into the existing, empty directory `root`.
pub(crate) fn unpack<R: Read>(
    input: R,
    label: &str,
    root: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport> {
    let read_err = |source| Error::Read {
        archive: label.to_owned(),
        entry: None,
        source,
    };
    let mut input = BufReader::new(input);
    let compression = match options.compression {
        Some(c) => c,
        None => Compression::from_magic(input.fill_buf().map_err(read_err)?),
    };
    let decoder = compression.decoder(input).map_err(read_err)?;
    let mut tail = EndMarker::new(decoder);
    let mut unpacker = Unpacker {
        root,
        label,
        strip: options.strip_components,
        report: ExtractReport::default(),
        dir_modes: BTreeMap::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut tail);
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            unpacker.entry(&mut entry)?;
        }
    }
    if !tail.ended_with_zero_block() {
        return Err(Error::Malformed {
            archive: label.to_owned(),
            entry: None,
            detail: "no end-of-archive block: the archive is truncated".to_owned(),
        });
    }
    // Reading to the end checks the compressed stream's length and checksum.
    io::copy(&mut tail, &mut io::sink()).map_err(read_err)?;
    unpacker.apply_dir_modes()?;
    Ok(unpacker.report)
}

struct Unpacker<'a> {
    root: &'a Path,
    label: &'a str,
    strip: usize,
    report: ExtractReport,
    /// Modes to give directories once everything inside them is written.
    dir_modes: BTreeMap<PathBuf, u32>,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            return Ok(());
        }
        let components =
            entry_components(&raw_name).map_err(|reason| self.refuse(&name, reason))?;
        if components.len() <= self.strip {
            return Ok(());
        }
        let rel = &components[self.strip..];
        let mode = entry
            .header()
            .mode()
            .map_err(|e| self.malformed(&name, format!("bad mode field: {e}")))?;
        match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let path = self.prepare(&name, rel, false)?;
                self.write_file(entry, &name, &path, mode)?;
                self.report.files += 1;
            }
            EntryType::Directory => {
                let path = self.prepare(&name, rel, true)?;
                if path.symlink_metadata().is_err() {
                    create_dir(&path)?;
                }
                self.dir_modes.insert(path, mode);
                self.report.dirs += 1;
            }
            EntryType::Symlink => {
                let target = self.link_target(entry, &name)?;
                if symlink_escapes(rel.len() - 1, &target) {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    return Err(self.refuse(&name, UnsafeReason::SymlinkEscapes { target }));
                }
                let path = self.prepare(&name, rel, false)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(io_err("creating symlink", &path))?;
                self.report.symlinks += 1;
            }
            EntryType::Link => {
                let target = self.link_target(entry, &name)?;
                let source = self.hardlink_source(&name, &target)?;
                let path = self.prepare(&name, rel, false)?;
                fs::hard_link(&source, &path).map_err(io_err("creating hard link", &path))?;
                self.report.hardlinks += 1;
            }
            other => {
                let kind = match other {
                    EntryType::Char => SkippedKind::CharDevice,
                    EntryType::Block => SkippedKind::BlockDevice,
                    EntryType::Fifo => SkippedKind::Fifo,
                    other => SkippedKind::Other(other.as_byte()),
                };
                self.report.skipped.push(Skipped { entry: name, kind });
            }
        }
        Ok(())
    }

    /// Checks and creates the parents of `rel` under the root, and clears its final path
    /// (removing a non-directory that an earlier entry put there). Returns the final path.
    fn prepare(&mut self, name: &str, rel: &[&[u8]], is_dir: bool) -> Result<PathBuf> {
        let mut path = self.walk_parents(name, rel, true)?;
        path.push(OsStr::from_bytes(rel[rel.len() - 1]));
        match path.symlink_metadata() {
            Ok(meta) if meta.is_dir() => {
                if !is_dir {
                    return Err(self.refuse(name, UnsafeReason::ReplacesDirectory));
                }
            }
            Ok(_) => fs::remove_file(&path).map_err(io_err("removing", &path))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("reading metadata of", &path)(e)),
        }
        Ok(path)
    }

    /// Walks the parents of `rel`, refusing symlinks and non-directories; missing ones are
    /// created (mode 0755 in the end) when `create` is set. Returns the parent directory.
    fn walk_parents(&mut self, name: &str, rel: &[&[u8]], create: bool) -> Result<PathBuf> {
        let mut path = self.root.to_path_buf();
        for (depth, component) in rel[..rel.len() - 1].iter().enumerate() {
            path.push(OsStr::from_bytes(component));
            let shown = || join_lossy(&rel[..=depth]);
            match path.symlink_metadata() {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    let parent = shown();
                    return Err(self.refuse(name, UnsafeReason::ThroughSymlink { parent }));
                }
                Ok(_) => {
                    let parent = shown();
                    return Err(self.refuse(name, UnsafeReason::ParentNotDirectory { parent }));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    create_dir(&path)?;
                    self.dir_modes.entry(path.clone()).or_insert(0o755);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let detail = format!("hard link target directory {:?} is missing", shown());
                    return Err(self.malformed(name, detail));
                }
                Err(e) => return Err(io_err("reading metadata of", &path)(e)),
            }
        }
        Ok(path)
    }

    fn write_file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
        mode: u32,
    ) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err("creating", path))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Read {
                        archive: self.label.to_owned(),
                        entry: Some(name.to_owned()),
                        source,
                    })
                }
            };
            file.write_all(&buf[..n]).map_err(io_err("writing", path))?;
        }
        // Set through the open file, so no path (and no symlink) is involved.
        file.set_permissions(fs::Permissions::from_mode((mode & 0o777) | 0o600))
            .map_err(io_err("setting permissions of", path))
    }

    fn link_target<R: Read>(&self, entry: &tar::Entry<'_, R>, name: &str) -> Result<Vec<u8>> {
        match entry.link_name_bytes() {
            Some(target) if !target.is_empty() => Ok(target.into_owned()),
            _ => Err(self.malformed(name, "link without a target".to_owned())),
        }
    }

    /// The already extracted regular file a hard link entry points at.
    fn hardlink_source(&mut self, name: &str, target: &[u8]) -> Result<PathBuf> {
        let shown = String::from_utf8_lossy(target).into_owned();
        let components = entry_components(target).map_err(|_| {
            let target = shown.clone();
            self.refuse(name, UnsafeReason::HardlinkEscapes { target })
        })?;
        if components.len() <= self.strip {
            let detail = format!("hard link target {shown:?} is outside the extracted tree");
            return Err(self.malformed(name, detail));
        }
        let rel = &components[self.strip..];
        let mut path = self.walk_parents(name, rel, false)?;
        path.push(OsStr::from_bytes(rel[rel.len() - 1]));
        match path.symlink_metadata() {
            Ok(meta) if meta.is_file() => Ok(path),
            _ => {
                let detail = format!("hard link target {shown:?} is not a file extracted earlier");
                Err(self.malformed(name, detail))
            }
        }
    }

    /// Gives directories their modes, deepest first, once nothing more is written in them.
    fn apply_dir_modes(&self) -> Result<()> {
        for (path, mode) in self.dir_modes.iter().rev() {
            let meta = path
                .symlink_metadata()
                .map_err(io_err("reading metadata of", path))?;
            if meta.is_dir() {
                fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o777) | 0o700))
                    .map_err(io_err("setting permissions of", path))?;
            }
        }
        Ok(())
    }

    fn refuse(&self, name: &str, reason: UnsafeReason) -> Error {
        Error::Unsafe {
            archive: self.label.to_owned(),
            entry: name.to_owned(),
            reason,
        }
    }

    fn malformed(&self, name: &str, detail: String) -> Error {
        Error::Malformed {
            archive: self.label.to_owned(),
            entry: Some(name.to_owned()),
            detail,
        }
    }
}

fn create_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io_err("creating directory", path))
}

fn join_lossy(components: &[&[u8]]) -> String {
    let joined = components.join(&b'/');
    String::from_utf8_lossy(&joined).into_owned()
}

/// Remembers the last 512 bytes read, to tell a tar stream that ended with its zero block
/// from one cut short at a header boundary (which the `tar` crate takes as a clean end).
struct EndMarker<R> {
    inner: R,
    last_block: [u8; 512],
    total: u64,
}

impl<R: Read> EndMarker<R> {
    fn new(inner: R) -> Self {
        EndMarker {
            inner,
            last_block: [0; 512],
            total: 0,
        }
    }

    // `u64::is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
    #[allow(clippy::manual_is_multiple_of)]
    fn ended_with_zero_block(&self) -> bool {
        self.total >= 512 && self.total % 512 == 0 && self.last_block.iter().all(|&b| b == 0)
    }
}

impl<R: Read> Read for EndMarker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let new = &buf[..n];
        if n >= 512 {
            self.last_block.copy_from_slice(&new[n - 512..]);
        } else {
            self.last_block.copy_within(n.., 0);
            self.last_block[512 - n..].copy_from_slice(new);
        }
        self.total += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_marker_tracks_the_last_block_across_reads() {
        let mut data = vec![1u8; 1000];
        data.extend([0u8; 24 + 512]);
        let mut reader = EndMarker::new(&data[..]);
        let mut buf = [0u8; 100];
        while reader.read(&mut buf).unwrap() > 0 {}
        assert!(reader.ended_with_zero_block());
        let mut reader = EndMarker::new(&data[..1023]);
        io::copy(&mut reader, &mut io::sink()).unwrap();
        assert!(!reader.ended_with_zero_block());
    }
}
