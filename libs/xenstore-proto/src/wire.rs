//! The message header and message types of Xen's `io/xs_wire.h`.
//!
//! Every message, in either direction, is a 16-byte header (`struct xsd_sockmsg`: four
//! `uint32_t` fields `type`, `req_id`, `tx_id`, `len`) followed by `len` bytes of payload.
//! The C header uses the host's byte order; every platform Xen runs xenstore on (x86 and
//! Arm, 32 and 64 bit) is little-endian, so this crate encodes and decodes little-endian
//! explicitly. That keeps the bytes identical whatever machine runs the tests.

use crate::error::DecodeError;

/// Size of the message header in bytes (`sizeof(struct xsd_sockmsg)`).
pub const HEADER_LEN: usize = 16;

/// Largest payload either side may send (`XENSTORE_PAYLOAD_MAX`). xenstored drops a
/// connection that exceeds it, which a domain cannot recover from.
pub const PAYLOAD_MAX: usize = 4096;

/// Largest complete message: header plus maximal payload.
pub const MESSAGE_MAX: usize = HEADER_LEN + PAYLOAD_MAX;

/// Longest absolute path xenstored accepts (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;

/// Longest relative path a client should send (`XENSTORE_REL_PATH_MAX`); relative paths
/// are resolved against `/local/domain/<domid>` and must still fit [`ABS_PATH_MAX`].
pub const REL_PATH_MAX: usize = 2048;

/// The transaction id of requests outside any transaction (`XBT_NULL`).
pub const TX_NONE: u32 = 0;

/// Byte offsets of the header fields, as laid out by `struct xsd_sockmsg`.
pub(crate) const TYPE_OFFSET: usize = 0;
pub(crate) const REQ_ID_OFFSET: usize = 4;
pub(crate) const TX_ID_OFFSET: usize = 8;
pub(crate) const LEN_OFFSET: usize = 12;

macro_rules! msg_types {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// The `type` field of a message (`enum xsd_sockmsg_type`).
        ///
        /// Values this crate does not know (including 20, the removed `XS_RESTRICT`, and
        /// `XS_INVALID` = 0xffff) decode to [`MsgType::Unknown`] so that a newer xenstored
        /// cannot make decoding fail. Build values from numbers with `MsgType::from(u32)`,
        /// which never yields `Unknown` for a known code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum MsgType {
            $($(#[$doc])* $name,)*
            /// A type code this crate does not know.
            Unknown(u32),
        }

        impl From<u32> for MsgType {
            fn from(value: u32) -> Self {
                match value {
                    $($value => MsgType::$name,)*
                    other => MsgType::Unknown(other),
                }
            }
        }

        impl From<MsgType> for u32 {
            fn from(value: MsgType) -> Self {
                match value {
                    $(MsgType::$name => $value,)*
                    MsgType::Unknown(other) => other,
                }
            }
        }

        impl MsgType {
            /// The name used in `xs_wire.h`, without the `XS_` prefix.
            pub fn name(self) -> &'static str {
                match self {
                    $(MsgType::$name => stringify!($name),)*
                    MsgType::Unknown(_) => "Unknown",
                }
            }
        }
    };
}

msg_types! {
    /// `XS_CONTROL`, formerly `XS_DEBUG`: implementation-specific daemon commands.
    Control = 0,
    /// `XS_DIRECTORY`: list the children of a node.
    Directory = 1,
    /// `XS_READ`: read a node's value.
    Read = 2,
    /// `XS_GET_PERMS`: read a node's permissions.
    GetPerms = 3,
    /// `XS_WATCH`: register a watch.
    Watch = 4,
    /// `XS_UNWATCH`: remove a watch.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`: open a transaction.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`: commit or discard a transaction.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`: tell xenstored about a new domain (toolstack only).
    Introduce = 8,
    /// `XS_RELEASE`: disconnect a domain (toolstack only).
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`: ask for `/local/domain/<domid>`.
    GetDomainPath = 10,
    /// `XS_WRITE`: write a node's value.
    Write = 11,
    /// `XS_MKDIR`: create a node (and missing parents).
    Mkdir = 12,
    /// `XS_RM`: remove a node and its children.
    Rm = 13,
    /// `XS_SET_PERMS`: replace a node's permissions.
    SetPerms = 14,
    /// `XS_WATCH_EVENT`: unsolicited notification of a watched change.
    WatchEvent = 15,
    /// `XS_ERROR`: the reply to a failed request.
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`: whether xenstored talks to a domain.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`: re-arm `@releaseDomain` for a domain (toolstack only).
    Resume = 18,
    /// `XS_SET_TARGET`: let a domain act for another (toolstack only).
    SetTarget = 19,
    /// `XS_RESET_WATCHES`: drop all watches and transactions of the caller.
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`: list children in pieces, for long lists.
    DirectoryPart = 22,
}

/// A decoded message header (`struct xsd_sockmsg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// What the message is.
    pub msg_type: MsgType,
    /// Chosen by the client and echoed in the reply; 0 in watch events.
    pub req_id: u32,
    /// The transaction the request belongs to, or [`TX_NONE`].
    pub tx_id: u32,
    /// Length of the payload that follows the header.
    pub len: u32,
}

impl Header {
    /// Encodes the header (little-endian, see the module documentation).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let fields = [
            (TYPE_OFFSET, u32::from(self.msg_type)),
            (REQ_ID_OFFSET, self.req_id),
            (TX_ID_OFFSET, self.tx_id),
            (LEN_OFFSET, self.len),
        ];
        for (offset, value) in fields {
            out[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// Decodes a header without judging it; see [`Header::payload_len`].
    pub fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Self {
        let field = |offset: usize| {
            u32::from_le_bytes([
                bytes[offset],
                bytes[offset + 1],
                bytes[offset + 2],
                bytes[offset + 3],
            ])
        };
        Header {
            msg_type: MsgType::from(field(TYPE_OFFSET)),
            req_id: field(REQ_ID_OFFSET),
            tx_id: field(TX_ID_OFFSET),
            len: field(LEN_OFFSET),
        }
    }

    /// The payload length, checked against [`PAYLOAD_MAX`].
    ///
    /// A larger value means the peer is broken or the stream lost its framing: nothing
    /// after this header can be trusted, and the connection has to be dropped or reset.
    pub fn payload_len(&self) -> Result<usize, DecodeError> {
        match usize::try_from(self.len) {
            Ok(len) if len <= PAYLOAD_MAX => Ok(len),
            _ => Err(DecodeError::PayloadTooLarge { len: self.len }),
        }
    }
}

impl core::fmt::Display for MsgType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MsgType::Unknown(code) => write!(f, "unknown message type {code}"),
            known => f.write_str(known.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_match_xs_wire_h() {
        let table = [
            (0, MsgType::Control),
            (1, MsgType::Directory),
            (2, MsgType::Read),
            (3, MsgType::GetPerms),
            (4, MsgType::Watch),
            (5, MsgType::Unwatch),
            (6, MsgType::TransactionStart),
            (7, MsgType::TransactionEnd),
            (8, MsgType::Introduce),
            (9, MsgType::Release),
            (10, MsgType::GetDomainPath),
            (11, MsgType::Write),
            (12, MsgType::Mkdir),
            (13, MsgType::Rm),
            (14, MsgType::SetPerms),
            (15, MsgType::WatchEvent),
            (16, MsgType::Error),
            (17, MsgType::IsDomainIntroduced),
            (18, MsgType::Resume),
            (19, MsgType::SetTarget),
            (20, MsgType::Unknown(20)),
            (21, MsgType::ResetWatches),
            (22, MsgType::DirectoryPart),
            (0xffff, MsgType::Unknown(0xffff)),
        ];
        for (code, ty) in table {
            assert_eq!(MsgType::from(code), ty, "code {code}");
            assert_eq!(u32::from(ty), code, "{ty:?}");
        }
    }

    #[test]
    fn header_layout_is_struct_xsd_sockmsg() {
        // Four consecutive uint32_t: type, req_id, tx_id, len.
        assert_eq!(
            (TYPE_OFFSET, REQ_ID_OFFSET, TX_ID_OFFSET, LEN_OFFSET),
            (0, 4, 8, 12)
        );
        let header = Header {
            msg_type: MsgType::Write,
            req_id: 0x0403_0201,
            tx_id: 0x0807_0605,
            len: 0x0000_0a09,
        };
        let bytes = header.to_bytes();
        assert_eq!(bytes, [11, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0]);
        assert_eq!(Header::from_bytes(&bytes), header);
    }

    #[test]
    fn payload_len_is_bounded() {
        let mut header = Header {
            msg_type: MsgType::Read,
            req_id: 0,
            tx_id: 0,
            len: 4096,
        };
        assert_eq!(header.payload_len(), Ok(4096));
        header.len = 4097;
        assert_eq!(
            header.payload_len(),
            Err(DecodeError::PayloadTooLarge { len: 4097 })
        );
    }
}
