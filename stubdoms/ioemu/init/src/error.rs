//! The one error type of the init: every variant says what failed in plain words, because
//! the message ends up on the stub domain's console, read by whoever debugs a guest.

use std::fmt;

/// What went wrong.
#[derive(Debug)]
pub enum Error {
    /// A xenstore request failed.
    Xenstore {
        /// The request, e.g. "read".
        op: &'static str,
        /// The path it was about.
        path: String,
        /// The error xenstored (or the transport) gave.
        detail: String,
    },
    /// A xenstore value is not what the protocol says it should be.
    BadValue {
        /// Where the value was read.
        path: String,
        /// The value, lossily decoded.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// QEMU's command line from the toolstack cannot be used.
    Args(String),
    /// A system call failed.
    Io {
        /// What was being done, e.g. "opening /dev/hvc1".
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// QEMU answered a QMP command with an error, or broke the protocol.
    Qmp(String),
}

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// Wraps a xenstore client error.
    pub fn xs<E: fmt::Display>(
        op: &'static str,
        path: &str,
        err: &xenstore_proto::Error<E>,
    ) -> Self {
        Error::Xenstore {
            op,
            path: path.to_owned(),
            detail: err.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xenstore { op, path, detail } => {
                write!(f, "xenstore {op} of {path} failed: {detail}")
            }
            Error::BadValue {
                path,
                value,
                expected,
            } => {
                write!(f, "xenstore {path} is {value:?}, expected {expected}")
            }
            Error::Args(msg) => write!(f, "QEMU command line: {msg}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Qmp(msg) => write!(f, "QMP: {msg}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
