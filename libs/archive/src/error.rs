//! The crate's error type: every variant says what went wrong and where.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, writing or extracting archives.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A path given to a [`Tree`](crate::Tree) is not a valid archive path.
    InvalidPath { path: String, problem: PathProblem },
    /// Adding an entry to a [`Tree`](crate::Tree) clashes with what is already there.
    Conflict { path: String, problem: Conflict },
    /// A host file system operation failed.
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A host file has a type archives here cannot hold (socket, fifo).
    UnsupportedHostFile { path: PathBuf },
    /// A value does not fit a header field of the output format.
    FieldOverflow {
        format: &'static str,
        path: String,
        field: &'static str,
        value: u64,
    },
    /// Writing an archive to its output failed.
    Write {
        format: &'static str,
        source: io::Error,
    },
    /// Reading or decompressing an archive failed (truncated or corrupt data).
    Read {
        archive: String,
        entry: Option<String>,
        source: io::Error,
    },
    /// An archive's structure is invalid.
    Malformed {
        archive: String,
        entry: Option<String>,
        detail: String,
    },
    /// An archive entry would be written outside the destination, or through a symlink.
    Unsafe {
        archive: String,
        entry: String,
        reason: UnsafeReason,
    },
    /// The extraction destination already exists; extraction never merges into it.
    DestinationExists { path: PathBuf },
}

/// Why a path was refused by [`Tree`](crate::Tree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// The path names the root or nothing at all.
    Empty,
    /// The path has a `.` component.
    CurDir,
    /// The path has a `..` component.
    ParentDir,
    /// The path contains a NUL byte.
    Nul,
    /// The path (from the host) is not valid UTF-8.
    NotUtf8,
}

/// How a new [`Tree`](crate::Tree) entry clashes with an existing one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conflict {
    /// A parent of the path exists and is not a directory.
    ParentNotDirectory { parent: String },
    /// A directory exists where a non-directory was added.
    DirectoryExists,
    /// A non-directory exists where a directory was added.
    NonDirectoryExists,
}

/// Why an archive entry was refused during extraction.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsafeReason {
    /// The entry's path is absolute.
    AbsolutePath,
    /// The entry's path has a `..` component.
    ParentDir,
    /// A relative symlink target climbs above the destination.
    SymlinkEscapes { target: String },
    /// A hard link target is absolute or has a `..` component.
    HardlinkEscapes { target: String },
    /// A parent of the entry is a symlink (extracted earlier); writing through it could leave
    /// the destination.
    ThroughSymlink { parent: String },
    /// A parent of the entry is not a directory.
    ParentNotDirectory { parent: String },
    /// The entry would replace a directory extracted earlier.
    ReplacesDirectory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidPath { path, problem } => {
                write!(f, "invalid archive path {path:?}: {problem}")
            }
            Error::Conflict { path, problem } => write!(f, "cannot add {path:?}: {problem}"),
            Error::Io {
                action,
                path,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
            Error::UnsupportedHostFile { path } => write!(
                f,
                "{}: sockets and fifos cannot be put in an archive",
                path.display()
            ),
            Error::FieldOverflow {
                format,
                path,
                field,
                value,
            } => write!(
                f,
                "{format} entry {path:?}: {field} {value} does not fit the format's header"
            ),
            Error::Write { format, source } => write!(f, "writing {format} archive: {source}"),
            Error::Read {
                archive,
                entry,
                source,
            } => {
                write!(f, "reading {archive}")?;
                if let Some(entry) = entry {
                    write!(f, ", entry {entry:?}")?;
                }
                write!(f, ": {source}")
            }
            Error::Malformed {
                archive,
                entry,
                detail,
            } => {
                write!(f, "{archive}")?;
                if let Some(entry) = entry {
                    write!(f, ", entry {entry:?}")?;
                }
                write!(f, ": {detail}")
            }
            Error::Unsafe {
                archive,
                entry,
                reason,
            } => write!(f, "{archive}: refusing entry {entry:?}: {reason}"),
            Error::DestinationExists { path } => write!(
                f,
                "{} already exists: extraction only creates new directories",
                path.display()
            ),
        }
    }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::Empty => "it names no file",
            PathProblem::CurDir => "it has a `.` component",
            PathProblem::ParentDir => "it has a `..` component",
            PathProblem::Nul => "it contains a NUL byte",
            PathProblem::NotUtf8 => "it is not valid UTF-8",
        })
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::ParentNotDirectory { parent } => {
                write!(f, "its parent {parent:?} is not a directory")
            }
            Conflict::DirectoryExists => f.write_str("a directory is already there"),
            Conflict::NonDirectoryExists => f.write_str("a non-directory is already there"),
        }
    }
}

impl fmt::Display for UnsafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsafeReason::AbsolutePath => f.write_str("its path is absolute"),
            UnsafeReason::ParentDir => f.write_str("its path has a `..` component"),
            UnsafeReason::SymlinkEscapes { target } => {
                write!(f, "its symlink target {target:?} points outside the destination")
            }
            UnsafeReason::HardlinkEscapes { target } => {
                write!(f, "its hard link target {target:?} is outside the destination")
            }
            UnsafeReason::ThroughSymlink { parent } => write!(
                f,
                "its parent {parent:?} is a symlink and writing through it could leave the destination"
            ),
            UnsafeReason::ParentNotDirectory { parent } => {
                write!(f, "its parent {parent:?} is not a directory")
            }
            UnsafeReason::ReplacesDirectory => {
                f.write_str("it would replace a directory extracted earlier")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Write { source, .. } | Error::Read { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

/// Builds a closure that wraps an `io::Error` from the host file system.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
