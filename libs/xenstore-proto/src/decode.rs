//! Message framing: splitting a byte stream into messages.
//!
//! Bytes arrive in pieces (a ring read returns whatever the producer has written so far),
//! so an incomplete message is a state, not an error: [`parse_message`] returns `Ok(None)`
//! and [`Decoder`] keeps the bytes until the rest arrives.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::DecodeError;
use crate::wire::{Header, MsgType, HEADER_LEN};

/// A complete message borrowed from a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// The header; `header.len == payload.len()`.
    pub header: Header,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl MessageRef<'_> {
    /// Copies the message out of the buffer.
    pub fn to_owned(&self) -> Message {
        Message {
            header: self.header,
            payload: self.payload.to_vec(),
        }
    }
}

/// A complete message that owns its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The header; `header.len == payload.len()`.
    pub header: Header,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Message {
    /// Borrows the message, for the parsers in [`crate::reply`].
    pub fn as_ref(&self) -> MessageRef<'_> {
        MessageRef {
            header: self.header,
            payload: &self.payload,
        }
    }

    /// The message type.
    pub fn msg_type(&self) -> MsgType {
        self.header.msg_type
    }
}

/// Splits the first message off `buf`.
///
/// Returns `Ok(Some((message, consumed)))` when `buf` starts with a complete message,
/// `Ok(None)` when more bytes are needed, and an error as soon as a header announces an
/// oversize payload (see [`DecodeError::PayloadTooLarge`]: the stream is then unusable).
pub fn parse_message(buf: &[u8]) -> Result<Option<(MessageRef<'_>, usize)>, DecodeError> {
    let Some((header_bytes, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = Header::from_bytes(header_bytes);
    let len = header.payload_len()?;
    match rest.get(..len) {
        Some(payload) => Ok(Some((MessageRef { header, payload }, HEADER_LEN + len))),
        None => Ok(None),
    }
}

/// An incremental decoder: push bytes as they arrive, pop complete messages.
///
/// After a fatal error ([`DecodeError::is_fatal`]) every further call returns the same
/// error until [`Decoder::reset`] (which only makes sense once the connection itself has
/// been reset).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    failed: Option<DecodeError>,
}

impl Decoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        Decoder {
            buf: Vec::new(),
            failed: None,
        }
    }

    /// Appends received bytes. Pop messages after each push: the buffer holds everything
    /// pushed and not yet returned.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Returns the next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        match parse_message(&self.buf) {
            Ok(Some((msg, consumed))) => {
                let msg = msg.to_owned();
                self.buf.drain(..consumed);
                Ok(Some(msg))
            }
            Ok(None) => Ok(None),
            Err(err) => {
                self.failed = Some(err);
                Err(err)
            }
        }
    }

    /// Bytes held that do not form a complete message yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Forgets buffered bytes and any fatal error, for use after a connection reset.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.failed = None;
    }
}

/// Longest decimal rendering of a `u64`.
pub(crate) const DECIMAL_MAX_LEN: usize = 20;

/// Parses a plain unsigned decimal: ASCII digits only, no sign, no spaces.
pub(crate) fn parse_decimal(digits: &[u8]) -> Result<u64, DecodeError> {
    if digits.is_empty() {
        return Err(DecodeError::InvalidNumber);
    }
    digits.iter().try_fold(0u64, |acc, &digit| {
        if !digit.is_ascii_digit() {
            return Err(DecodeError::InvalidNumber);
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(digit - b'0')))
            .ok_or(DecodeError::InvalidNumber)
    })
}

/// Walks the NUL-terminated fields of a payload.
pub(crate) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(payload: &'a [u8]) -> Self {
        Fields { rest: payload }
    }

    /// The next field as bytes, without its NUL.
    pub(crate) fn next_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let nul = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::MissingNul)?;
        let (field, rest) = self.rest.split_at(nul);
        self.rest = &rest[1..];
        Ok(field)
    }

    /// The next field as UTF-8 text.
    pub(crate) fn next_str(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.next_bytes()?;
        core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// The next field as an unsigned decimal.
    pub(crate) fn next_decimal(&mut self) -> Result<u64, DecodeError> {
        parse_decimal(self.next_bytes()?)
    }

    /// Whether all fields have been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Everything not consumed yet, NULs included.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.rest
    }

    /// Fails unless all fields have been consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::UnexpectedPayload)
        }
    }

    /// The remaining fields as owned strings.
    pub(crate) fn collect_strings(mut self) -> Result<Vec<String>, DecodeError> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.push(String::from(self.next_str()?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_parsing() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"0042", Some(42)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"-1", None),
            (b"+1", None),
            (b" 1", None),
            (b"1a", None),
            (b"0x10", None),
        ];
        for &(digits, expected) in table {
            assert_eq!(parse_decimal(digits).ok(), expected, "{digits:?}");
        }
    }

    #[test]
    fn fields_need_terminators() {
        let mut fields = Fields::new(b"a\0bc\0d");
        assert_eq!(fields.next_bytes(), Ok(&b"a"[..]));
        assert_eq!(fields.next_str(), Ok("bc"));
        assert_eq!(fields.next_bytes(), Err(DecodeError::MissingNul));
    }
}
