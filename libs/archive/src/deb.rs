//! Debian binary packages: extracting `data.tar.*` and reading `control`.
//!
//! A `.deb` is an `ar` archive whose first member is `debian-binary` ("2.0\n"), followed by
//! `control.tar[.gz|.xz|.zst]` and `data.tar[.gz|.xz|.zst|.bz2]`. The whole container is
//! read and checked, so a truncated package is an error even after its data was extracted.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::ar::{ArReader, Member};
use crate::compression::Compression;
use crate::error::{io_err, Error, Result};
use crate::extract::{into_new_dir, unpack, ExtractOptions, ExtractReport};
use crate::path::entry_components;

/// Largest `control` file accepted; real ones are a few kilobytes.
const MAX_CONTROL_LEN: u64 = 1 << 20;

/// The fields of a package's `control` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    pub package: String,
    pub version: String,
    pub architecture: Option<String>,
    /// Every field in file order; continuation lines are joined with `\n`.
    pub fields: Vec<(String, String)>,
}

impl Control {
    /// A field's value by name (case-insensitive, as field names are in Debian).
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(field))
            .map(|(_, value)| value.as_str())
    }

    /// Parses a `control` file (one paragraph); `Package` and `Version` are required.
    pub fn parse(text: &str) -> Result<Control, String> {
        let mut fields: Vec<(String, String)> = Vec::new();
        let mut ended = false;
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            if line.trim().is_empty() {
                ended = !fields.is_empty();
                continue;
            }
            if ended {
                return Err(format!("line {number}: more than one paragraph"));
            }
            if line.starts_with([' ', '\t']) {
                let Some((_, value)) = fields.last_mut() else {
                    return Err(format!("line {number}: continuation line before any field"));
                };
                value.push('\n');
                value.push_str(line.trim());
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("line {number}: expected `Field: value`"));
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("line {number}: bad field name {name:?}"));
            }
            fields.push((name.to_owned(), value.trim().to_owned()));
        }
        let find = |field: &str| {
            fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(field))
                .map(|(_, value)| value.clone())
        };
        let package = find("Package").ok_or("no Package field")?;
        let version = find("Version").ok_or("no Version field")?;
        let architecture = find("Architecture");
        Ok(Control {
            package,
            version,
            architecture,
            fields,
        })
    }
}

/// Extracts the package's `data.tar.*` into the new directory `dest` (see
/// [`extract`](crate::extract) for the safety rules).
pub fn extract_data(deb: &Path, dest: &Path) -> Result<ExtractReport> {
    let label = deb.display().to_string();
    into_new_dir(dest, |root| {
        let mut ar = open(deb, &label)?;
        let mut report = None;
        while let Some(mut member) = ar.next_member()? {
            if !member.name.starts_with("data.tar") {
                continue;
            }
            if report.is_some() {
                return Err(malformed(&label, Some(&member.name), "second data member"));
            }
            let options = ExtractOptions {
                strip_components: 0,
                compression: Some(member_compression(&label, &member.name)?),
            };
            let member_label = format!("{label} ({})", member.name);
            report = Some(unpack(&mut member, &member_label, root, &options)?);
            // Trailing bytes after the compressed stream must still be present.
            member.drain()?;
        }
        report.ok_or_else(|| malformed(&label, None, "no data.tar member"))
    })
}

/// Reads the `control` file from the package's `control.tar.*`.
pub fn read_control(deb: &Path) -> Result<Control> {
    let label = deb.display().to_string();
    let mut ar = open(deb, &label)?;
    while let Some(mut member) = ar.next_member()? {
        if !member.name.starts_with("control.tar") {
            continue;
        }
        let compression = member_compression(&label, &member.name)?;
        let member_label = format!("{label} ({})", member.name);
        let text = control_text(&mut member, compression, &member_label)?;
        return Control::parse(&text).map_err(|detail| Error::Malformed {
            archive: member_label,
            entry: Some("control".to_owned()),
            detail,
        });
    }
    Err(malformed(&label, None, "no control.tar member"))
}

/// Opens the package and checks its `debian-binary` member.
fn open(deb: &Path, label: &str) -> Result<ArReader<BufReader<File>>> {
    let file = File::open(deb).map_err(io_err("opening", deb))?;
    let mut ar = ArReader::new(BufReader::new(file), label)?;
    let Some(mut first) = ar.next_member()? else {
        return Err(malformed(label, None, "empty ar archive"));
    };
    if first.name != "debian-binary" || first.remaining() > 64 {
        return Err(malformed(
            label,
            Some(&first.name),
            "first member is not debian-binary",
        ));
    }
    let mut version = Vec::new();
    first
        .read_to_end(&mut version)
        .map_err(|source| Error::Read {
            archive: label.to_owned(),
            entry: Some("debian-binary".to_owned()),
            source,
        })?;
    if !version.starts_with(b"2.") {
        return Err(malformed(
            label,
            Some("debian-binary"),
            "unsupported package format version",
        ));
    }
    Ok(ar)
}

fn control_text<R: Read>(
    member: &mut Member<'_, R>,
    compression: Compression,
    label: &str,
) -> Result<String> {
    let read_err = |entry: Option<&str>, source| Error::Read {
        archive: label.to_owned(),
        entry: entry.map(str::to_owned),
        source,
    };
    let decoder = compression.decoder(member).map_err(|e| read_err(None, e))?;
    let mut archive = tar::Archive::new(decoder);
    for entry in archive.entries().map_err(|e| read_err(None, e))? {
        let entry = entry.map_err(|e| read_err(None, e))?;
        let raw_name = entry.path_bytes().into_owned();
        let is_control = matches!(entry_components(&raw_name).as_deref(), Ok([b"control"]));
        if !is_control || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut text = Vec::new();
        entry
            .take(MAX_CONTROL_LEN + 1)
            .read_to_end(&mut text)
            .map_err(|e| read_err(Some("control"), e))?;
        if text.len() as u64 > MAX_CONTROL_LEN {
            return Err(malformed(
                label,
                Some("control"),
                "control file is too large",
            ));
        }
        return String::from_utf8(text)
            .map_err(|_| malformed(label, Some("control"), "control file is not UTF-8"));
    }
    Err(malformed(label, None, "no control file"))
}

fn member_compression(label: &str, name: &str) -> Result<Compression> {
    let suffix = name
        .strip_prefix("data.tar")
        .or_else(|| name.strip_prefix("control.tar"))
        .unwrap_or(name);
    let compression = if suffix.is_empty() {
        Some(Compression::None)
    } else {
        Compression::from_file_name(suffix).filter(|c| *c != Compression::None)
    };
    compression.ok_or_else(|| malformed(label, Some(name), "unsupported compression"))
}

fn malformed(label: &str, entry: Option<&str>, detail: &str) -> Error {
    Error::Malformed {
        archive: label.to_owned(),
        entry: entry.map(str::to_owned),
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_control_fields() {
        let text = "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\n\
                    Description: greets\n more text\n .\n";
        let control = Control::parse(text).unwrap();
        assert_eq!(control.package, "hello");
        assert_eq!(control.version, "1.0-1");
        assert_eq!(control.architecture.as_deref(), Some("amd64"));
        assert_eq!(control.get("description"), Some("greets\nmore text\n."));
    }

    #[test]
    fn parse_control_errors() {
        let cases = [
            ("Version: 1\n", "no Package field"),
            ("Package: a\n", "no Version field"),
            (" cont\nPackage: a\n", "continuation line before any field"),
            ("Package a\n", "expected `Field: value`"),
            (
                "Package: a\nVersion: 1\n\nPackage: b\n",
                "more than one paragraph",
            ),
            ("Pack age: a\n", "bad field name"),
        ];
        for (text, want) in cases {
            let err = Control::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn member_compressions() {
        let cases = [
            ("data.tar", Some(Compression::None)),
            ("data.tar.xz", Some(Compression::Xz)),
            ("data.tar.zst", Some(Compression::Zstd)),
            ("control.tar.gz", Some(Compression::Gzip)),
            ("data.tar.bz2", Some(Compression::Bzip2)),
            ("data.tar.lzma", None),
            ("data.tar.tar", None),
        ];
        for (name, want) in cases {
            assert_eq!(member_compression("x.deb", name).ok(), want, "{name}");
        }
    }
}
