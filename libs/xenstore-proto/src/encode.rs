//! Requests: typed values that encode to complete messages, and parse back from them.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use crate::decode::{Fields, MessageRef, DECIMAL_MAX_LEN};
use crate::error::{DecodeError, EncodeError};
use crate::perm::{DomId, Perm, PERM_MAX_LEN};
use crate::wire::{Header, MsgType, ABS_PATH_MAX, HEADER_LEN, PAYLOAD_MAX, REL_PATH_MAX};

/// A request a client sends to xenstored.
///
/// Payload layouts follow `docs/misc/xenstore.txt` (`|` stands for a NUL byte):
///
/// | request            | payload                     |
/// |--------------------|-----------------------------|
/// | `READ`, `DIRECTORY`, `GET_PERMS`, `MKDIR`, `RM` | `<path>\|` |
/// | `DIRECTORY_PART`   | `<path>\|<offset>\|`        |
/// | `WRITE`            | `<path>\|<value>` (no NUL after the value) |
/// | `SET_PERMS`        | `<path>\|<perm>\|<perm>\|...` |
/// | `WATCH`, `UNWATCH` | `<path>\|<token>\|`         |
/// | `TRANSACTION_START`, `RESET_WATCHES` | `\|`      |
/// | `TRANSACTION_END`  | `T\|` (commit) or `F\|` (discard) |
/// | `GET_DOMAIN_PATH`, `IS_DOMAIN_INTRODUCED` | `<domid>\|` |
///
/// Paths starting with `/` are absolute; others are relative to the sender's
/// `/local/domain/<domid>` (domains only, not sockets). Watch paths may also name the
/// special events `@introduceDomain` and `@releaseDomain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// List the children of `path`.
    Directory {
        /// The node to list.
        path: &'a str,
    },
    /// List the children of `path` from byte `offset` of the full list on.
    DirectoryPart {
        /// The node to list.
        path: &'a str,
        /// Byte offset into the NUL-separated list of children.
        offset: u32,
    },
    /// Read the value of `path`.
    Read {
        /// The node to read.
        path: &'a str,
    },
    /// Read the permissions of `path`.
    GetPerms {
        /// The node to inspect.
        path: &'a str,
    },
    /// Watch `path` and everything below it; events carry `token`.
    Watch {
        /// The subtree (or `@` special event) to watch.
        path: &'a str,
        /// Opaque text echoed in each event.
        token: &'a str,
    },
    /// Remove the watch registered with the same `path` and `token`.
    Unwatch {
        /// The watched path.
        path: &'a str,
        /// The token given to [`Request::Watch`].
        token: &'a str,
    },
    /// Open a transaction; the reply carries its id.
    TransactionStart,
    /// Close the transaction named in the header's `tx_id`.
    TransactionEnd {
        /// Commit (`T`) or discard (`F`).
        commit: bool,
    },
    /// Ask for the home path of `domid`.
    GetDomainPath {
        /// The domain.
        domid: DomId,
    },
    /// Write `value` to `path`, creating missing parents.
    Write {
        /// The node to write.
        path: &'a str,
        /// The new value; any bytes (conventionally printable ASCII, no trailing NUL).
        value: &'a [u8],
    },
    /// Create `path` and missing parents; existing values are kept.
    Mkdir {
        /// The node to create.
        path: &'a str,
    },
    /// Remove `path` and everything below it.
    Rm {
        /// The node to remove.
        path: &'a str,
    },
    /// Replace the permissions of `path`; the first entry names the owner.
    SetPerms {
        /// The node to change.
        path: &'a str,
        /// The new permission list (at least one entry).
        perms: Cow<'a, [Perm]>,
    },
    /// Ask whether xenstored talks to `domid`.
    IsDomainIntroduced {
        /// The domain.
        domid: DomId,
    },
    /// Drop all watches and transactions of this connection.
    ResetWatches,
}

impl Request<'_> {
    /// The message type this request is sent as.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::Directory { .. } => MsgType::Directory,
            Request::DirectoryPart { .. } => MsgType::DirectoryPart,
            Request::Read { .. } => MsgType::Read,
            Request::GetPerms { .. } => MsgType::GetPerms,
            Request::Watch { .. } => MsgType::Watch,
            Request::Unwatch { .. } => MsgType::Unwatch,
            Request::TransactionStart => MsgType::TransactionStart,
            Request::TransactionEnd { .. } => MsgType::TransactionEnd,
            Request::GetDomainPath { .. } => MsgType::GetDomainPath,
            Request::Write { .. } => MsgType::Write,
            Request::Mkdir { .. } => MsgType::Mkdir,
            Request::Rm { .. } => MsgType::Rm,
            Request::SetPerms { .. } => MsgType::SetPerms,
            Request::IsDomainIntroduced { .. } => MsgType::IsDomainIntroduced,
            Request::ResetWatches => MsgType::ResetWatches,
        }
    }

    /// Checks the arguments and returns the payload length.
    pub fn payload_len(&self) -> Result<usize, EncodeError> {
        match self {
            Request::Directory { path }
            | Request::DirectoryPart { path, .. }
            | Request::Read { path }
            | Request::GetPerms { path }
            | Request::Write { path, .. }
            | Request::Mkdir { path }
            | Request::Rm { path }
            | Request::SetPerms { path, .. } => check_path(path)?,
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                check_path(path)?;
                if token.as_bytes().contains(&0) {
                    return Err(EncodeError::NulInToken);
                }
            }
            Request::TransactionStart
            | Request::TransactionEnd { .. }
            | Request::GetDomainPath { .. }
            | Request::IsDomainIntroduced { .. }
            | Request::ResetWatches => {}
        }
        let mut len = 0usize;
        self.for_each_part(&mut |part| len = len.saturating_add(part.len()));
        if len > PAYLOAD_MAX {
            return Err(EncodeError::PayloadTooLarge { len });
        }
        Ok(len)
    }

    /// Appends the complete message (header and payload) to `out` and returns its length.
    /// On error `out` is unchanged.
    pub fn encode(&self, req_id: u32, tx_id: u32, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let len = self.payload_len()?;
        out.reserve(HEADER_LEN + len);
        out.extend_from_slice(&self.header(req_id, tx_id, len).to_bytes());
        self.for_each_part(&mut |part| out.extend_from_slice(part));
        Ok(HEADER_LEN + len)
    }

    /// Writes the complete message to the start of `buf` and returns its length.
    pub fn encode_into(
        &self,
        req_id: u32,
        tx_id: u32,
        buf: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let len = self.payload_len()?;
        let needed = HEADER_LEN + len;
        let Some(buf) = buf.get_mut(..needed) else {
            return Err(EncodeError::BufferTooSmall { needed });
        };
        let (header, mut payload) = buf.split_at_mut(HEADER_LEN);
        header.copy_from_slice(&self.header(req_id, tx_id, len).to_bytes());
        self.for_each_part(&mut |part| {
            let (head, tail) = core::mem::take(&mut payload).split_at_mut(part.len());
            head.copy_from_slice(part);
            payload = tail;
        });
        Ok(needed)
    }

    /// The complete message in a new vector.
    pub fn to_vec(&self, req_id: u32, tx_id: u32) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(req_id, tx_id, &mut out)?;
        Ok(out)
    }

    fn header(&self, req_id: u32, tx_id: u32, len: usize) -> Header {
        Header {
            msg_type: self.msg_type(),
            req_id,
            tx_id,
            // Callers have checked len <= PAYLOAD_MAX.
            len: u32::try_from(len).unwrap_or(u32::MAX),
        }
    }

    /// Calls `f` with each piece of the payload, in order.
    fn for_each_part(&self, f: &mut dyn FnMut(&[u8])) {
        let mut digits = [0u8; DECIMAL_MAX_LEN];
        match self {
            Request::Directory { path }
            | Request::Read { path }
            | Request::GetPerms { path }
            | Request::Mkdir { path }
            | Request::Rm { path } => {
                f(path.as_bytes());
                f(b"\0");
            }
            Request::DirectoryPart { path, offset } => {
                f(path.as_bytes());
                f(b"\0");
                f(format_decimal(u64::from(*offset), &mut digits));
                f(b"\0");
            }
            Request::Watch { path, token } | Request::Unwatch { path, token } => {
                f(path.as_bytes());
                f(b"\0");
                f(token.as_bytes());
                f(b"\0");
            }
            Request::TransactionStart | Request::ResetWatches => f(b"\0"),
            Request::TransactionEnd { commit } => f(if *commit { b"T\0" } else { b"F\0" }),
            Request::GetDomainPath { domid } | Request::IsDomainIntroduced { domid } => {
                f(format_decimal(u64::from(*domid), &mut digits));
                f(b"\0");
            }
            Request::Write { path, value } => {
                f(path.as_bytes());
                f(b"\0");
                f(value);
            }
            Request::SetPerms { path, perms } => {
                f(path.as_bytes());
                f(b"\0");
                for perm in perms.iter() {
                    let mut buf = [0u8; PERM_MAX_LEN];
                    f(perm.encode(&mut buf));
                    f(b"\0");
                }
            }
        }
    }
}

impl<'a> Request<'a> {
    /// Parses a request, as a server (or test double) receives it.
    ///
    /// Types a guest has no business sending (`CONTROL`, `INTRODUCE`, `RELEASE`, `RESUME`,
    /// `SET_TARGET`) and reply-only types give [`DecodeError::UnsupportedType`].
    pub fn parse(msg: MessageRef<'a>) -> Result<Self, DecodeError> {
        let mut fields = Fields::new(msg.payload);
        let request = match msg.header.msg_type {
            MsgType::Directory => Request::Directory {
                path: fields.next_str()?,
            },
            MsgType::DirectoryPart => Request::DirectoryPart {
                path: fields.next_str()?,
                offset: u32::try_from(fields.next_decimal()?)
                    .map_err(|_| DecodeError::InvalidNumber)?,
            },
            MsgType::Read => Request::Read {
                path: fields.next_str()?,
            },
            MsgType::GetPerms => Request::GetPerms {
                path: fields.next_str()?,
            },
            MsgType::Watch => Request::Watch {
                path: fields.next_str()?,
                token: fields.next_str()?,
            },
            MsgType::Unwatch => Request::Unwatch {
                path: fields.next_str()?,
                token: fields.next_str()?,
            },
            MsgType::TransactionStart => {
                expect_empty_field(&mut fields)?;
                Request::TransactionStart
            }
            MsgType::ResetWatches => {
                expect_empty_field(&mut fields)?;
                Request::ResetWatches
            }
            MsgType::TransactionEnd => Request::TransactionEnd {
                commit: match fields.next_bytes()? {
                    b"T" => true,
                    b"F" => false,
                    _ => return Err(DecodeError::UnexpectedPayload),
                },
            },
            MsgType::GetDomainPath => Request::GetDomainPath {
                domid: next_domid(&mut fields)?,
            },
            MsgType::IsDomainIntroduced => Request::IsDomainIntroduced {
                domid: next_domid(&mut fields)?,
            },
            MsgType::Write => {
                let path = fields.next_str()?;
                // The value runs to the end of the payload and may contain NULs.
                let value = core::mem::replace(&mut fields, Fields::new(&[])).rest();
                Request::Write { path, value }
            }
            MsgType::Mkdir => Request::Mkdir {
                path: fields.next_str()?,
            },
            MsgType::Rm => Request::Rm {
                path: fields.next_str()?,
            },
            MsgType::SetPerms => {
                let path = fields.next_str()?;
                let mut perms = Vec::new();
                while !fields.is_empty() {
                    perms.push(Perm::parse(fields.next_bytes()?)?);
                }
                if perms.is_empty() {
                    return Err(DecodeError::UnexpectedPayload);
                }
                Request::SetPerms {
                    path,
                    perms: Cow::Owned(perms),
                }
            }
            other => return Err(DecodeError::UnsupportedType(other)),
        };
        fields.finish()?;
        Ok(request)
    }
}

/// Appends a complete message with an arbitrary payload, e.g. a reply built by a server.
pub fn encode_raw(
    msg_type: MsgType,
    req_id: u32,
    tx_id: u32,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    if payload.len() > PAYLOAD_MAX {
        return Err(EncodeError::PayloadTooLarge { len: payload.len() });
    }
    let header = Header {
        msg_type,
        req_id,
        tx_id,
        len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
    };
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    Ok(HEADER_LEN + payload.len())
}

/// Checks what xenstored would otherwise reject by killing or erroring the connection.
/// Character set and slash rules are left to xenstored, which answers `EINVAL`.
fn check_path(path: &str) -> Result<(), EncodeError> {
    if path.is_empty() {
        return Err(EncodeError::EmptyPath);
    }
    if path.as_bytes().contains(&0) {
        return Err(EncodeError::NulInPath);
    }
    let max = if path.starts_with('/') {
        ABS_PATH_MAX
    } else {
        REL_PATH_MAX
    };
    if path.len() > max {
        return Err(EncodeError::PathTooLong {
            len: path.len(),
            max,
        });
    }
    Ok(())
}

fn expect_empty_field(fields: &mut Fields<'_>) -> Result<(), DecodeError> {
    if fields.next_bytes()?.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::UnexpectedPayload)
    }
}

fn next_domid(fields: &mut Fields<'_>) -> Result<DomId, DecodeError> {
    DomId::try_from(fields.next_decimal()?).map_err(|_| DecodeError::InvalidNumber)
}

/// Formats `value` in decimal into `buf` and returns the digits.
pub(crate) fn format_decimal(mut value: u64, buf: &mut [u8; DECIMAL_MAX_LEN]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        // `value % 10` is below 10, so the cast cannot truncate.
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn decimal_formatting() {
        for value in [0, 7, 10, 65535, u64::MAX] {
            let mut buf = [0u8; DECIMAL_MAX_LEN];
            let text = format_decimal(value, &mut buf);
            assert_eq!(text, alloc::format!("{value}").as_bytes());
        }
    }

    #[test]
    fn path_checks() {
        let long_abs = alloc::format!("/{}", "a".repeat(ABS_PATH_MAX));
        let long_rel = "a".repeat(REL_PATH_MAX + 1);
        let ok_abs = alloc::format!("/{}", "a".repeat(ABS_PATH_MAX - 1));
        let table: &[(&str, Result<(), EncodeError>)] = &[
            ("/local/domain/0", Ok(())),
            ("device/vbd", Ok(())),
            (&ok_abs, Ok(())),
            ("", Err(EncodeError::EmptyPath)),
            ("/a\0b", Err(EncodeError::NulInPath)),
            (
                &long_abs,
                Err(EncodeError::PathTooLong {
                    len: ABS_PATH_MAX + 1,
                    max: ABS_PATH_MAX,
                }),
            ),
            (
                &long_rel,
                Err(EncodeError::PathTooLong {
                    len: REL_PATH_MAX + 1,
                    max: REL_PATH_MAX,
                }),
            ),
        ];
        for (path, expected) in table {
            assert_eq!(check_path(path), *expected, "{path:?}");
        }
    }

    #[test]
    fn encode_into_matches_encode() {
        let value = String::from("x").repeat(100);
        let request = Request::Write {
            path: "/a/b",
            value: value.as_bytes(),
        };
        let vec = request.to_vec(9, 3).unwrap();
        let mut buf = [0xaau8; 200];
        let len = request.encode_into(9, 3, &mut buf).unwrap();
        assert_eq!(&buf[..len], &vec[..]);
        assert_eq!(buf[len], 0xaa, "nothing written past the message");
        let mut small = [0u8; 50];
        assert_eq!(
            request.encode_into(9, 3, &mut small),
            Err(EncodeError::BufferTooSmall { needed: vec.len() })
        );
    }
}
