//! A streaming reader for Unix `ar` archives, the container of `.deb` packages.
//!
//! The archive is `!<arch>\n` followed by members: a 60-byte header (name 16, mtime 12,
//! uid 6, gid 6, mode 8, size 10, then "`\n"), the data, and one padding byte when the size
//! is odd. GNU names end in `/`; BSD long names (`#1/LEN`) put the name before the data.

use std::io::{self, Read};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"!<arch>\n";
const HEADER_LEN: usize = 60;
/// Longest BSD-style name accepted; real ones are short.
const MAX_NAME_LEN: u64 = 4096;

/// Reads members one after the other from `R`.
pub(crate) struct ArReader<R> {
    inner: R,
    label: String,
    /// Unread bytes of the current member.
    remaining: u64,
    /// Whether a padding byte follows the current member.
    pad: bool,
}

/// The member being read; reading it yields its data and fails if the archive ends early.
pub(crate) struct Member<'a, R> {
    pub name: String,
    reader: &'a mut ArReader<R>,
}

impl<R: Read> ArReader<R> {
    /// Checks the magic; `label` names the archive in errors.
    pub fn new(mut inner: R, label: &str) -> Result<ArReader<R>> {
        let mut magic = [0u8; MAGIC.len()];
        let got = read_full(&mut inner, &mut magic).map_err(|source| Error::Read {
            archive: label.to_owned(),
            entry: None,
            source,
        })?;
        if got < magic.len() || &magic != MAGIC {
            return Err(Error::Malformed {
                archive: label.to_owned(),
                entry: None,
                detail: "not an ar archive (bad magic)".to_owned(),
            });
        }
        Ok(ArReader {
            inner,
            label: label.to_owned(),
            remaining: 0,
            pad: false,
        })
    }

    /// The next member, skipping what was left unread of the previous one; `None` at a clean
    /// end of the archive.
    pub fn next_member(&mut self) -> Result<Option<Member<'_, R>>> {
        self.skip_rest()?;
        let mut header = [0u8; HEADER_LEN];
        let got = read_full(&mut self.inner, &mut header).map_err(|e| self.read_err(e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_LEN {
            return Err(self.malformed(None, "archive ends inside a member header"));
        }
        if &header[58..60] != b"`\n" {
            return Err(self.malformed(None, "bad member header terminator"));
        }
        let size = parse_decimal(&header[48..58])
            .ok_or_else(|| self.malformed(None, "bad member size field"))?;
        let raw_name = trim_spaces(&header[..16]);
        self.remaining = size;
        self.pad = size % 2 == 1;
        let name = if let Some(len) = raw_name.strip_prefix(b"#1/") {
            let len = parse_decimal(len)
                .filter(|&len| len <= size && len <= MAX_NAME_LEN)
                .ok_or_else(|| self.malformed(None, "bad BSD long name length"))?;
            let mut name = vec![0u8; len as usize];
            let got = read_full(&mut self.inner, &mut name).map_err(|e| self.read_err(e))?;
            if got < name.len() {
                return Err(self.malformed(None, "archive ends inside a member name"));
            }
            self.remaining -= len;
            while name.last() == Some(&0) {
                name.pop();
            }
            name
        } else if raw_name == b"/" || raw_name == b"//" {
            raw_name.to_vec()
        } else {
            raw_name.strip_suffix(b"/").unwrap_or(raw_name).to_vec()
        };
        Ok(Some(Member {
            name: String::from_utf8_lossy(&name).into_owned(),
            reader: self,
        }))
    }

    fn skip_rest(&mut self) -> Result<()> {
        let want = self.remaining + u64::from(self.pad);
        let skipped = io::copy(&mut (&mut self.inner).take(want), &mut io::sink())
            .map_err(|e| self.read_err(e))?;
        if skipped < want {
            return Err(self.malformed(None, "archive ends inside a member"));
        }
        self.remaining = 0;
        self.pad = false;
        Ok(())
    }

    fn read_err(&self, source: io::Error) -> Error {
        Error::Read {
            archive: self.label.clone(),
            entry: None,
            source,
        }
    }

    fn malformed(&self, entry: Option<&str>, detail: &str) -> Error {
        Error::Malformed {
            archive: self.label.clone(),
            entry: entry.map(str::to_owned),
            detail: detail.to_owned(),
        }
    }
}

impl<R: Read> Member<'_, R> {
    /// The member's data size still unread.
    pub fn remaining(&self) -> u64 {
        self.reader.remaining
    }

    /// Reads the rest of the member and checks it was all there.
    pub fn drain(&mut self) -> Result<()> {
        io::copy(self, &mut io::sink()).map_err(|source| Error::Read {
            archive: self.reader.label.clone(),
            entry: Some(self.name.clone()),
            source,
        })?;
        Ok(())
    }
}

impl<R: Read> Read for Member<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let ar = &mut *self.reader;
        if ar.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let len = buf
            .len()
            .min(usize::try_from(ar.remaining).unwrap_or(usize::MAX));
        let n = ar.inner.read(&mut buf[..len])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ar archive ends inside a member",
            ));
        }
        ar.remaining -= n as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn trim_spaces(field: &[u8]) -> &[u8] {
    let end = field.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &field[..end]
}

fn parse_decimal(field: &[u8]) -> Option<u64> {
    let digits = trim_spaces(field);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            0,
            0,
            0,
            "100644",
            data.len()
        )
        .into_bytes();
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
        out
    }

    fn members(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut ar = ArReader::new(bytes, "test.a")?;
        let mut out = Vec::new();
        while let Some(mut m) = ar.next_member()? {
            let mut data = Vec::new();
            m.read_to_end(&mut data).map_err(|source| Error::Read {
                archive: "test.a".into(),
                entry: None,
                source,
            })?;
            out.push((m.name.clone(), data));
        }
        Ok(out)
    }

    #[test]
    fn reads_gnu_and_bsd_names_and_padding() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(member("debian-binary", b"2.0\n"));
        bytes.extend(member("odd/", b"abc"));
        bytes.extend(member("#1/20", b"a-rather-long-name\0\0xyz"));
        let got = members(&bytes).unwrap();
        assert_eq!(
            got,
            [
                ("debian-binary".to_owned(), b"2.0\n".to_vec()),
                ("odd".to_owned(), b"abc".to_vec()),
                ("a-rather-long-name".to_owned(), b"xyz".to_vec()),
            ]
        );
    }

    #[test]
    fn skips_unread_members() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(member("one", b"12345"));
        bytes.extend(member("two", b"678"));
        let mut ar = ArReader::new(&bytes[..], "test.a").unwrap();
        assert_eq!(ar.next_member().unwrap().unwrap().name, "one");
        let mut two = ar.next_member().unwrap().unwrap();
        assert_eq!(two.remaining(), 3);
        let mut data = String::new();
        two.read_to_string(&mut data).unwrap();
        assert_eq!(data, "678");
        assert!(ar.next_member().unwrap().is_none());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(member("debian-binary", b"2.0\n"));
        bytes.extend(member("data.tar", b"odd"));
        assert!(members(&bytes).is_ok());
        for len in 0..bytes.len() {
            // Cutting exactly between two members leaves a valid, shorter archive.
            if len == MAGIC.len() || len == MAGIC.len() + HEADER_LEN + 4 {
                assert!(members(&bytes[..len]).is_ok());
                continue;
            }
            assert!(members(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn bad_headers_are_errors() {
        let good = member("x", b"1");
        let cases: [(&[u8], usize); 3] = [(b"abc", 48), (b"??", 58), (b"-1", 48)];
        for (patch, at) in cases {
            let mut bytes = MAGIC.to_vec();
            let mut m = good.clone();
            m[at..at + patch.len()].copy_from_slice(patch);
            bytes.extend(m);
            assert!(
                members(&bytes).is_err(),
                "patch {:?}",
                String::from_utf8_lossy(patch)
            );
        }
        assert!(ArReader::new(&b"!<arch>"[..], "x").is_err());
        assert!(ArReader::new(&b"garbage!garbage"[..], "x").is_err());
    }
}
