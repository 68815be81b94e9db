//! Typed parsing of replies and watch events.
//!
//! Each parser takes the reply to one request type. An `XS_ERROR` reply becomes
//! [`ReplyError::Xs`]; a reply of another type or with a malformed payload becomes
//! [`ReplyError::Malformed`]. Text fields must be NUL-terminated UTF-8; values read with
//! [`read`] are returned as bytes, exactly as stored.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::decode::{Fields, MessageRef};
use crate::error::{DecodeError, XsError};
use crate::perm::Perm;
use crate::wire::MsgType;

/// Why a reply does not carry the expected result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// xenstored answered with an error.
    Xs(XsError),
    /// The reply could not be understood.
    Malformed(DecodeError),
}

impl From<DecodeError> for ReplyError {
    fn from(err: DecodeError) -> Self {
        ReplyError::Malformed(err)
    }
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Xs(err) => err.fmt(f),
            ReplyError::Malformed(err) => write!(f, "malformed xenstore reply: {err}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ReplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplyError::Xs(err) => Some(err),
            ReplyError::Malformed(err) => Some(err),
        }
    }
}

/// A watch notification (`XS_WATCH_EVENT`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// The path that changed (relative if the watch was registered relative).
    pub path: String,
    /// The token the watch was registered with.
    pub token: String,
}

/// One piece of a long directory listing (`XS_DIRECTORY_PART`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryPart {
    /// The node's generation count; pieces with different counts come from different
    /// versions of the node and must not be combined.
    pub generation: u64,
    /// Child names in this piece.
    pub names: Vec<String>,
    /// Whether this piece ends the list.
    pub complete: bool,
    /// Bytes of the full list this piece covers (names plus their NULs); add it to the
    /// offset of the next request.
    pub consumed: u32,
}

/// Returns the payload of `msg` if it has type `expected`; turns `XS_ERROR` into
/// [`ReplyError::Xs`].
pub fn expect(msg: MessageRef<'_>, expected: MsgType) -> Result<&[u8], ReplyError> {
    match msg.header.msg_type {
        found if found == expected => Ok(msg.payload),
        MsgType::Error => Err(ReplyError::Xs(error(msg.payload)?)),
        found => Err(ReplyError::Malformed(DecodeError::UnexpectedType {
            expected,
            found,
        })),
    }
}

/// Parses the payload of an `XS_ERROR` reply: an errno name such as `ENOENT\0`.
pub fn error(payload: &[u8]) -> Result<XsError, DecodeError> {
    let mut fields = Fields::new(payload);
    let name = fields.next_str()?;
    fields.finish()?;
    Ok(XsError::from_name(name))
}

/// Parses the `OK\0` reply of `WRITE`, `MKDIR`, `RM`, `SET_PERMS`, `WATCH`, `UNWATCH`,
/// `TRANSACTION_END` and `RESET_WATCHES`.
pub fn ok(msg: MessageRef<'_>, expected: MsgType) -> Result<(), ReplyError> {
    match expect(msg, expected)? {
        b"OK\0" => Ok(()),
        _ => Err(DecodeError::UnexpectedPayload.into()),
    }
}

/// Parses a `READ` reply: the value, which may be empty and may contain any bytes.
pub fn read(msg: MessageRef<'_>) -> Result<Vec<u8>, ReplyError> {
    Ok(expect(msg, MsgType::Read)?.to_vec())
}

/// Parses a `DIRECTORY` reply: child names, each NUL-terminated.
pub fn directory(msg: MessageRef<'_>) -> Result<Vec<String>, ReplyError> {
    let names = Fields::new(expect(msg, MsgType::Directory)?).collect_strings()?;
    // A child always has a name; an empty one means a broken or hostile peer.
    if names.iter().any(String::is_empty) {
        return Err(DecodeError::UnexpectedPayload.into());
    }
    Ok(names)
}

/// Parses a `DIRECTORY_PART` reply: `<generation>\0` then child names, each
/// NUL-terminated, and one more NUL once the list is complete.
pub fn directory_part(msg: MessageRef<'_>) -> Result<DirectoryPart, ReplyError> {
    let mut fields = Fields::new(expect(msg, MsgType::DirectoryPart)?);
    let generation = fields.next_decimal()?;
    let mut names = Vec::new();
    let mut consumed = 0usize;
    let mut complete = false;
    while !fields.is_empty() {
        let name = fields.next_str()?;
        if name.is_empty() {
            // The empty string terminates the list and must be the last field.
            complete = true;
            break;
        }
        consumed += name.len() + 1;
        names.push(String::from(name));
    }
    fields.finish()?;
    Ok(DirectoryPart {
        generation,
        names,
        complete,
        // The payload is at most PAYLOAD_MAX bytes.
        consumed: u32::try_from(consumed).map_err(|_| DecodeError::UnexpectedPayload)?,
    })
}

/// Parses a `GET_PERMS` reply: one or more permission entries, the owner first.
pub fn get_perms(msg: MessageRef<'_>) -> Result<Vec<Perm>, ReplyError> {
    let mut fields = Fields::new(expect(msg, MsgType::GetPerms)?);
    let mut perms = Vec::new();
    while !fields.is_empty() {
        perms.push(Perm::parse(fields.next_bytes()?)?);
    }
    if perms.is_empty() {
        return Err(DecodeError::UnexpectedPayload.into());
    }
    Ok(perms)
}

/// Parses a `TRANSACTION_START` reply: the new transaction id in decimal.
pub fn transaction_start(msg: MessageRef<'_>) -> Result<u32, ReplyError> {
    let mut fields = Fields::new(expect(msg, MsgType::TransactionStart)?);
    let id = u32::try_from(fields.next_decimal()?).map_err(|_| DecodeError::InvalidNumber)?;
    fields.finish()?;
    // Id 0 means "no transaction" and cannot name one.
    if id == crate::wire::TX_NONE {
        return Err(DecodeError::InvalidNumber.into());
    }
    Ok(id)
}

/// Parses a `GET_DOMAIN_PATH` reply: a path.
pub fn get_domain_path(msg: MessageRef<'_>) -> Result<String, ReplyError> {
    let mut fields = Fields::new(expect(msg, MsgType::GetDomainPath)?);
    let path = fields.next_str()?;
    fields.finish()?;
    Ok(String::from(path))
}

/// Parses an `IS_DOMAIN_INTRODUCED` reply: `T\0` or `F\0`.
pub fn is_domain_introduced(msg: MessageRef<'_>) -> Result<bool, ReplyError> {
    match expect(msg, MsgType::IsDomainIntroduced)? {
        b"T\0" => Ok(true),
        b"F\0" => Ok(false),
        _ => Err(DecodeError::UnexpectedPayload.into()),
    }
}

/// Parses an `XS_WATCH_EVENT` message: `<path>\0<token>\0`.
pub fn watch_event(msg: MessageRef<'_>) -> Result<WatchEvent, DecodeError> {
    if msg.header.msg_type != MsgType::WatchEvent {
        return Err(DecodeError::UnexpectedType {
            expected: MsgType::WatchEvent,
            found: msg.header.msg_type,
        });
    }
    let mut fields = Fields::new(msg.payload);
    let path = String::from(fields.next_str()?);
    let token = String::from(fields.next_str()?);
    fields.finish()?;
    Ok(WatchEvent { path, token })
}
