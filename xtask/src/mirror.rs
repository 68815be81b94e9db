//! Where Debian's archives are. The repository names no mirror: the URIs come from the
//! environment (`STUBDOMS_DEBIAN_MIRROR`, `STUBDOMS_DEBIAN_SECURITY_MIRROR`) or from the
//! machine's apt configuration, so pins stay valid on any mirror or snapshot archive.
//!
//! Debian drops superseded versions from its mirrors, so each pin also records when it was
//! made (`snapshot`); a file the mirror no longer has is then fetched from a snapshot archive
//! (`STUBDOMS_DEBIAN_SNAPSHOT`, else a snapshot-style URL in the apt configuration) at
//! `<base>/archive/<archive>/<snapshot>/<path>`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

use crate::lock::Archive;

/// The Debian release every pin comes from.
pub const RELEASE: &str = "bookworm";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    pub debian: String,
    pub security: String,
}

impl Mirrors {
    pub fn uri(&self, archive: Archive) -> &str {
        match archive {
            Archive::Debian => &self.debian,
            Archive::DebianSecurity => &self.security,
        }
    }

    pub fn url(&self, archive: Archive, path: &str) -> String {
        format!("{}/{}", self.uri(archive).trim_end_matches('/'), path)
    }

    /// Which archive a URI belongs to (for reading apt's `--print-uris` output).
    pub fn archive_of<'a>(&self, url: &'a str) -> Option<(Archive, &'a str)> {
        for archive in [Archive::DebianSecurity, Archive::Debian] {
            let base = self.uri(archive).trim_end_matches('/');
            if let Some(rest) = url.strip_prefix(base).and_then(|r| r.strip_prefix('/')) {
                return Some((archive, rest));
            }
        }
        None
    }

    /// Reads the mirrors from the environment, else from `/etc/apt`.
    pub fn discover() -> Result<Mirrors> {
        let from_apt = from_apt_config(Path::new("/etc/apt"));
        let debian = std::env::var("STUBDOMS_DEBIAN_MIRROR")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| from_apt.as_ref().and_then(|m| m.0.clone()));
        let security = std::env::var("STUBDOMS_DEBIAN_SECURITY_MIRROR")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| from_apt.as_ref().and_then(|m| m.1.clone()));
        match (debian, security) {
            (Some(debian), Some(security)) => Ok(Mirrors { debian, security }),
            (debian, _) => bail!(
                "no Debian {} mirror found in /etc/apt/sources.list*: set {}=<URI of a Debian{} mirror or snapshot archive>",
                RELEASE,
                if debian.is_none() { "STUBDOMS_DEBIAN_MIRROR" } else { "STUBDOMS_DEBIAN_SECURITY_MIRROR" },
                if debian.is_none() { "" } else { " security" },
            ),
        }
    }
}

/// The environment variable naming a snapshot archive's base URL (the part before `/archive/`).
pub const SNAPSHOT_ENV: &str = "STUBDOMS_DEBIAN_SNAPSHOT";

/// The base URL of a Debian snapshot archive: `STUBDOMS_DEBIAN_SNAPSHOT`, else the first
/// snapshot-style URL (`<base>/archive/debian/<timestamp>`) in the apt configuration, in a
/// source's URI or in a comment.
pub fn snapshot_base() -> Option<String> {
    std::env::var(SNAPSHOT_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| snapshot_base_from_apt(Path::new("/etc/apt")))
        .map(|s| s.trim_end_matches('/').to_string())
}

/// Where a snapshot archive keeps `path` of `archive` as it was at `snapshot`.
pub fn snapshot_url(base: &str, archive: Archive, snapshot: &str, path: &str) -> String {
    format!(
        "{}/archive/{}/{snapshot}/{path}",
        base.trim_end_matches('/'),
        archive.as_str()
    )
}

fn snapshot_base_from_apt(etc: &Path) -> Option<String> {
    apt_files(etc).iter().find_map(|file| {
        let text = fs_err::read_to_string(file).ok()?;
        snapshot_base_in(&text)
    })
}

/// The base of the first word of `text` that looks like `<base>/archive/<debian|debian-security>/<timestamp>[/...]`.
fn snapshot_base_in(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == '#' || c == '[' || c == ']')
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .find_map(|w| {
            let (base, rest) = w.split_once("/archive/")?;
            let (archive, rest) = rest.split_once('/')?;
            let stamp = rest.split('/').next()?;
            (["debian", "debian-security"].contains(&archive) && is_snapshot_timestamp(stamp))
                .then(|| base.to_string())
        })
}

/// A snapshot archive timestamp: `YYYYMMDDTHHMMSSZ` (UTC).
pub fn is_snapshot_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && num(0..4).is_some()
        && num(4..6).is_some_and(|m| (1..=12).contains(&m))
        && num(6..8).is_some_and(|d| (1..=31).contains(&d))
        && num(9..11).is_some_and(|h| h < 24)
        && num(11..13).is_some_and(|m| m < 60)
        && num(13..15).is_some_and(|s| s < 61)
}

/// `time` as a snapshot archive timestamp (`YYYYMMDDTHHMMSSZ`, UTC).
pub fn snapshot_timestamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `sources.list`, then `sources.list.d/*` in name order.
fn apt_files(etc: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![etc.join("sources.list")];
    if let Ok(dir) = fs_err::read_dir(etc.join("sources.list.d")) {
        let mut more: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    files
}

/// (debian, security) URIs from one-line `.list` files and deb822 `.sources` files.
fn from_apt_config(etc: &Path) -> Option<(Option<String>, Option<String>)> {
    let mut found = (None, None);
    for file in apt_files(etc) {
        let Ok(text) = fs_err::read_to_string(&file) else {
            continue;
        };
        let entries = if file.extension().is_some_and(|e| e == "sources") {
            parse_deb822(&text)
        } else {
            parse_one_line(&text)
        };
        for (uri, suites) in entries {
            classify(&uri, &suites, &mut found);
        }
    }
    Some(found)
}

fn classify(uri: &str, suites: &[String], found: &mut (Option<String>, Option<String>)) {
    let security = format!("{RELEASE}-security");
    if suites.iter().any(|s| s == &security) {
        found.1.get_or_insert_with(|| uri.to_string());
    } else if suites.iter().any(|s| s == RELEASE) {
        found.0.get_or_insert_with(|| uri.to_string());
    }
}

/// `deb [options] URI SUITE COMPONENT...`
fn parse_one_line(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push((uri.to_string(), vec![suite.to_string()]));
        }
    }
    out
}

/// Stanzas of `Types:`, `URIs:`, `Suites:` fields.
fn parse_deb822(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        for line in stanza.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let values = value.split_whitespace().map(str::to_string);
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types.extend(values),
                "uris" => uris.extend(values),
                "suites" => suites.extend(values),
                _ => {}
            }
        }
        if types.iter().any(|t| t == "deb") {
            for uri in uris {
                out.push((uri, suites.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_apt_formats() {
        let dir = std::env::temp_dir().join(format!("stubdoms-mirror-{}", std::process::id()));
        let d = dir.join("sources.list.d");
        fs_err::create_dir_all(&d).unwrap();
        fs_err::write(
            dir.join("sources.list"),
            "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n",
        )
        .unwrap();
        fs_err::write(
            d.join("debian.sources"),
            "Types: deb\nURIs: http://other.example/debian\nSuites: trixie\n\n\
             Types: deb deb-src\n# note\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n",
        )
        .unwrap();
        let found = from_apt_config(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.0.as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(
            found.1.as_deref(),
            Some("http://sec.example/debian-security")
        );
    }

    #[test]
    fn finds_snapshot_bases_in_apt_text() {
        let cases = [
            (
                "Types: deb\n# http://snap.example/archive/debian/20250520T000000Z\nURIs: http://m.example/debian\n",
                Some("http://snap.example"),
            ),
            (
                "deb [check-valid-until=no] https://s.example/x/archive/debian-security/20250520T000000Z/ bookworm-security main\n",
                Some("https://s.example/x"),
            ),
            ("# http://snap.example/archive/debian/latest\n", None),
            ("# http://snap.example/archive/ubuntu/20250520T000000Z\n", None),
            ("deb http://m.example/debian bookworm main\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(snapshot_base_in(text).as_deref(), want, "{text}");
        }
        assert_eq!(
            snapshot_url(
                "http://snap.example/",
                Archive::DebianSecurity,
                "20261201T093000Z",
                "pool/a.deb"
            ),
            "http://snap.example/archive/debian-security/20261201T093000Z/pool/a.deb"
        );
    }

    #[test]
    fn snapshot_timestamps_are_utc_civil_times() {
        let at = |secs: u64| snapshot_timestamp(UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_796_117_400), "20261201T093000Z");
        assert_eq!(at(4_102_444_799), "20991231T235959Z");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        for good in ["20261201T093000Z", "19700101T000000Z"] {
            assert!(is_snapshot_timestamp(good), "{good}");
        }
        for bad in [
            "20261201T093000",
            "20261301T093000Z",
            "20261200T093000Z",
            "20261201 093000Z",
            "2026-12-01T09:30",
            "20261201T243000Z",
            "+0261201T093000Z",
            "",
        ] {
            assert!(!is_snapshot_timestamp(bad), "{bad}");
        }
    }

    #[test]
    fn splits_urls_by_archive() {
        let m = Mirrors {
            debian: "http://m.example/debian/".into(),
            security: "http://m.example/debian-security".into(),
        };
        assert_eq!(
            m.archive_of("http://m.example/debian-security/pool/a.deb"),
            Some((Archive::DebianSecurity, "pool/a.deb"))
        );
        assert_eq!(
            m.archive_of("http://m.example/debian/pool/b.deb"),
            Some((Archive::Debian, "pool/b.deb"))
        );
        assert_eq!(
            m.url(Archive::Debian, "pool/b.deb"),
            "http://m.example/debian/pool/b.deb"
        );
    }
}
