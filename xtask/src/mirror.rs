//! Where Debian's archives are. The repository names no mirror: the URIs come from the
//! environment (`STUBDOMS_DEBIAN_MIRROR`, `STUBDOMS_DEBIAN_SECURITY_MIRROR`) or from the
//! machine's apt configuration, so pins stay valid on any mirror or snapshot archive.

use std::path::Path;

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

/// (debian, security) URIs from one-line `.list` files and deb822 `.sources` files.
fn from_apt_config(etc: &Path) -> Option<(Option<String>, Option<String>)> {
    let mut files = vec![etc.join("sources.list")];
    if let Ok(dir) = std::fs::read_dir(etc.join("sources.list.d")) {
        let mut more: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    let mut found = (None, None);
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
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
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            dir.join("sources.list"),
            "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n",
        )
        .unwrap();
        std::fs::write(
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
