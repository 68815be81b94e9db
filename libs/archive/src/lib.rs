//! Deterministic archive writers and safe archive extraction for the build driver.
//!
//! Writing: build a [`Tree`] (in memory, sorted by path, modes normalised) and write it as
//! cpio "newc", GNU tar, or either gzip-compressed. The same tree and `mtime` (the caller's
//! `SOURCE_DATE_EPOCH`) always give the same bytes: entries in path order, owner 0:0 with no
//! names, every timestamp equal to `mtime`, inode numbers assigned in order, gzip without a
//! name or timestamp.
//!
//! Reading: [`deb::extract_data`], [`deb::read_control`] and [`extract_tarball`] unpack
//! `.deb` packages and `.tar.{gz,xz,zst,bz2}` tarballs into a new directory, all or nothing,
//! refusing entries that would land outside it (see [`extract`] for the rules).
//!
//! Host side only: the crate uses Unix file system APIs.

mod ar;
mod compression;
pub mod cpio;
pub mod deb;
mod error;
pub mod extract;
pub mod gzip;
mod path;
mod tar_writer;
mod tree;

pub use compression::Compression;
pub use error::{Conflict, Error, PathProblem, Result, UnsafeReason};
pub use extract::{
    extract_tar, extract_tarball, ExtractOptions, ExtractReport, Skipped, SkippedKind,
};
pub use tree::{
    normalize_file_mode, Entry, EntryKind, FileData, Format, Tree, DIR_MODE, EXEC_MODE, FILE_MODE,
    SYMLINK_MODE,
};
