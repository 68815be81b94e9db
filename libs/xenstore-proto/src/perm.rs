//! Node permissions (`<perm-as-string>` in the protocol: `n0`, `r5`, `w3`, `b7`).
//!
//! A node carries a list of permissions. The first names the owner, who may always read
//! and write, and its access letter is what every domain not listed afterwards gets.
//! Later entries grant specific domains their own access. Dom0 bypasses all checks.

use core::fmt;

use crate::decode::parse_decimal;
use crate::error::DecodeError;

/// A Xen domain id.
pub type DomId = u16;

/// What a permission entry allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// The letter used on the wire.
    pub fn letter(self) -> u8 {
        match self {
            Access::None => b'n',
            Access::Read => b'r',
            Access::Write => b'w',
            Access::Both => b'b',
        }
    }

    /// Whether this access lets a domain read.
    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }

    /// Whether this access lets a domain write.
    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }
}

/// One permission entry: a domain and its access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain this entry is about (the owner, for the first entry of a list).
    pub domid: DomId,
    /// The access it grants.
    pub access: Access,
}

/// Longest encoding: a letter and five digits.
pub(crate) const PERM_MAX_LEN: usize = 6;

impl Perm {
    /// Builds an entry.
    pub const fn new(domid: DomId, access: Access) -> Self {
        Perm { domid, access }
    }

    /// Parses the wire form, e.g. `"r5"`. The domain id must be a plain decimal that fits
    /// 16 bits.
    pub fn parse(text: &[u8]) -> Result<Self, DecodeError> {
        let (&letter, digits) = text.split_first().ok_or(DecodeError::InvalidPerm)?;
        let access = match letter {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return Err(DecodeError::InvalidPerm),
        };
        let domid = parse_decimal(digits)
            .ok()
            .and_then(|value| DomId::try_from(value).ok())
            .ok_or(DecodeError::InvalidPerm)?;
        Ok(Perm { domid, access })
    }

    /// Writes the wire form (without NUL) into `buf` and returns it.
    pub(crate) fn encode(self, buf: &mut [u8; PERM_MAX_LEN]) -> &[u8] {
        buf[0] = self.access.letter();
        let mut digits = [0u8; crate::decode::DECIMAL_MAX_LEN];
        let digits = crate::encode::format_decimal(u64::from(self.domid), &mut digits);
        let len = 1 + digits.len();
        buf[1..len].copy_from_slice(digits);
        &buf[..len]
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", char::from(self.access.letter()), self.domid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parse_and_encode() {
        let table: &[(&[u8], Option<Perm>)] = &[
            (b"n0", Some(Perm::new(0, Access::None))),
            (b"r5", Some(Perm::new(5, Access::Read))),
            (b"w3", Some(Perm::new(3, Access::Write))),
            (b"b7", Some(Perm::new(7, Access::Both))),
            (b"b65535", Some(Perm::new(65535, Access::Both))),
            (b"r007", Some(Perm::new(7, Access::Read))),
            (b"b65536", None),
            (b"x1", None),
            (b"r", None),
            (b"", None),
            (b"r-1", None),
            (b"r+1", None),
            (b"R1", None),
            (b"r1 ", None),
        ];
        for &(text, expected) in table {
            assert_eq!(
                Perm::parse(text).ok(),
                expected,
                "{:?}",
                core::str::from_utf8(text)
            );
        }
    }

    #[test]
    fn encode_matches_display() {
        for perm in [
            Perm::new(0, Access::None),
            Perm::new(5, Access::Read),
            Perm::new(65535, Access::Both),
        ] {
            let mut buf = [0u8; PERM_MAX_LEN];
            assert_eq!(perm.encode(&mut buf), perm.to_string().as_bytes());
        }
    }
}
