//! Error types: encoding, decoding, and the errors xenstored reports.

use alloc::string::String;
use core::fmt;

use crate::wire::MsgType;

/// Why a request could not be encoded. Nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The path is empty; xenstored forbids the empty path.
    EmptyPath,
    /// The path contains a NUL byte, which would split it on the wire.
    NulInPath,
    /// A watch token contains a NUL byte.
    NulInToken,
    /// The path is longer than xenstored accepts ([`crate::ABS_PATH_MAX`] for absolute,
    /// [`crate::REL_PATH_MAX`] for relative paths).
    PathTooLong {
        /// Length of the rejected path.
        len: usize,
        /// The limit that applies to it.
        max: usize,
    },
    /// The payload would exceed [`crate::PAYLOAD_MAX`]; xenstored would drop the connection.
    PayloadTooLarge {
        /// Length the payload would have had.
        len: usize,
    },
    /// The caller's buffer cannot hold the message.
    BufferTooSmall {
        /// Bytes the whole message needs.
        needed: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::EmptyPath => f.write_str("empty xenstore path"),
            EncodeError::NulInPath => f.write_str("xenstore path contains a NUL byte"),
            EncodeError::NulInToken => f.write_str("watch token contains a NUL byte"),
            EncodeError::PathTooLong { len, max } => {
                write!(f, "xenstore path is {len} bytes, the limit is {max}")
            }
            EncodeError::PayloadTooLarge { len } => write!(
                f,
                "payload of {len} bytes exceeds the xenstore limit of {}",
                crate::PAYLOAD_MAX
            ),
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "buffer too small, the message needs {needed} bytes")
            }
        }
    }
}

/// Why bytes received from the other side could not be understood.
///
/// Only [`DecodeError::PayloadTooLarge`] loses the message framing (see
/// [`DecodeError::is_fatal`]); after any other error the next message decodes normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A header announced more than [`crate::PAYLOAD_MAX`] bytes of payload. The stream
    /// cannot be resynchronised: the connection is unusable and must be dropped or reset.
    PayloadTooLarge {
        /// The announced length.
        len: u32,
    },
    /// A string field is not terminated by a NUL byte.
    MissingNul,
    /// A text field is not UTF-8.
    InvalidUtf8,
    /// A number field is not a plain unsigned decimal in range.
    InvalidNumber,
    /// A permission field is not `<n|r|w|b><domid>`.
    InvalidPerm,
    /// The payload has the wrong number of fields or an unexpected constant
    /// (e.g. a reply that should be `OK`).
    UnexpectedPayload,
    /// The message has a different type than the request called for.
    UnexpectedType {
        /// The type the caller expected.
        expected: MsgType,
        /// The type that arrived.
        found: MsgType,
    },
    /// A request of a type this crate does not model (see [`crate::Request::parse`]).
    UnsupportedType(MsgType),
}

impl DecodeError {
    /// Whether the stream lost its framing, so the connection cannot be used any more.
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::PayloadTooLarge { .. })
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::PayloadTooLarge { len } => write!(
                f,
                "message announces {len} bytes of payload, more than the limit of {}; \
                 the connection is unusable",
                crate::PAYLOAD_MAX
            ),
            DecodeError::MissingNul => f.write_str("string field without terminating NUL"),
            DecodeError::InvalidUtf8 => f.write_str("text field is not UTF-8"),
            DecodeError::InvalidNumber => f.write_str("invalid decimal number"),
            DecodeError::InvalidPerm => f.write_str("invalid permission string"),
            DecodeError::UnexpectedPayload => f.write_str("unexpected payload"),
            DecodeError::UnexpectedType { expected, found } => {
                write!(f, "expected a {expected} message, got {found}")
            }
            DecodeError::UnsupportedType(ty) => write!(f, "unsupported request type {ty}"),
        }
    }
}

macro_rules! xs_errors {
    ($($(#[$doc:meta])* $name:ident = $wire:literal,)*) => {
        /// An error xenstored reported in an `XS_ERROR` reply.
        ///
        /// xenstored sends the errno *name* (`"ENOENT"`), not its number, because errno
        /// values differ between systems. The list is `xsd_errors[]` of `xs_wire.h` plus
        /// oxenstored's `EQUOTA`.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum XsError {
            $($(#[$doc])* $name,)*
            /// A name this crate does not know, kept verbatim.
            Unknown(String),
        }

        impl XsError {
            /// Maps an errno name as sent on the wire.
            pub fn from_name(name: &str) -> Self {
                match name {
                    $($wire => XsError::$name,)*
                    other => XsError::Unknown(String::from(other)),
                }
            }

            /// The errno name as sent on the wire.
            pub fn name(&self) -> &str {
                match self {
                    $(XsError::$name => $wire,)*
                    XsError::Unknown(name) => name,
                }
            }
        }
    };
}

xs_errors! {
    /// `EINVAL`: malformed request, bad path or argument.
    Invalid = "EINVAL",
    /// `EACCES`: the permissions deny the operation.
    Access = "EACCES",
    /// `EEXIST`: already exists (e.g. a duplicate watch).
    Exists = "EEXIST",
    /// `EISDIR`: the node is a directory.
    IsDirectory = "EISDIR",
    /// `ENOENT`: no such node (or transaction).
    NotFound = "ENOENT",
    /// `ENOMEM`: xenstored is out of memory.
    NoMemory = "ENOMEM",
    /// `ENOSPC`: xenstored is out of space.
    NoSpace = "ENOSPC",
    /// `EIO`: internal error in xenstored.
    Io = "EIO",
    /// `ENOTEMPTY`: the directory is not empty.
    NotEmpty = "ENOTEMPTY",
    /// `ENOSYS`: the operation is not implemented.
    NotImplemented = "ENOSYS",
    /// `EROFS`: xenstored is read-only.
    ReadOnly = "EROFS",
    /// `EBUSY`: xenstored is busy, try again later.
    Busy = "EBUSY",
    /// `EAGAIN`: a transaction conflicted with another change; retry it.
    Again = "EAGAIN",
    /// `EISCONN`: the domain is already introduced.
    IsConnected = "EISCONN",
    /// `E2BIG`: the result does not fit one message (use `DIRECTORY_PART`) or a quota
    /// on sizes was hit.
    TooBig = "E2BIG",
    /// `EPERM`: the operation is not permitted for this domain.
    NotPermitted = "EPERM",
    /// `EQUOTA`: a per-domain quota is exhausted (sent by oxenstored).
    Quota = "EQUOTA",
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "xenstored replied {}", self.name())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}
#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}
#[cfg(feature = "std")]
impl std::error::Error for XsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_round_trip() {
        let names = [
            "EINVAL",
            "EACCES",
            "EEXIST",
            "EISDIR",
            "ENOENT",
            "ENOMEM",
            "ENOSPC",
            "EIO",
            "ENOTEMPTY",
            "ENOSYS",
            "EROFS",
            "EBUSY",
            "EAGAIN",
            "EISCONN",
            "E2BIG",
            "EPERM",
            "EQUOTA",
        ];
        for name in names {
            let err = XsError::from_name(name);
            assert!(!matches!(err, XsError::Unknown(_)), "{name} is known");
            assert_eq!(err.name(), name);
        }
        assert_eq!(
            XsError::from_name("EWHATEVER"),
            XsError::Unknown(String::from("EWHATEVER"))
        );
        assert_eq!(XsError::from_name("ENOENT"), XsError::NotFound);
    }
}
