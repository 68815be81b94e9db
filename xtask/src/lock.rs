//! `inputs.lock`: every external input, pinned by sha256. The file is both the request list
//! (names written by hand, with comments) and the lock (versions, paths, sizes and hashes
//! written by `cargo xtask pin`).

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub const FILE: &str = "inputs.lock";

/// Which Debian archive a pool path is relative to; each has its own mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Archive {
    Debian,
    DebianSecurity,
}

impl Archive {
    pub fn as_str(self) -> &'static str {
        match self {
            Archive::Debian => "debian",
            Archive::DebianSecurity => "debian-security",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLock {
    #[serde(default)]
    deb: Vec<Deb>,
    #[serde(default)]
    source: Vec<Source>,
    #[serde(default)]
    env: Vec<Env>,
}

/// A build environment: Debian packages resolved together, with everything they need, into
/// one consistent set that the driver unpacks into a root folder (`crate::buildenv`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Env {
    pub name: String,
    pub arch: String,
    /// Prefer this suite (e.g. `bookworm-backports`) wherever it has a package.
    #[serde(default)]
    pub suite: Option<String>,
    /// What the environment is asked to hold (written by hand).
    pub packages: Vec<String>,
    /// The pin, written by `cargo xtask pin`: every package of the closure, sorted by name.
    #[serde(default)]
    pub debs: Vec<EnvDeb>,
}

/// One pinned package of an [`Env`].
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnvDeb {
    pub name: String,
    pub version: String,
    pub archive: Archive,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// When it was pinned, as for [`Deb::snapshot`].
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// A Debian binary package.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Deb {
    pub name: String,
    pub arch: String,
    /// Pin from this suite (e.g. `bookworm-backports`) instead of apt's candidate.
    #[serde(default)]
    pub suite: Option<String>,
    /// Also pin everything this package needs (written back as entries with `required-by`).
    #[serde(default)]
    pub closure: bool,
    /// A metapackage: also pin the packages it directly depends on (e.g. the kernel package
    /// behind `linux-image-amd64`, whose name changes with the kernel ABI).
    #[serde(default)]
    pub follow: bool,
    /// SPDX expression, for the distribution manifests (NOASSERTION when absent).
    #[serde(default)]
    pub licence: Option<String>,
    /// Set by `pin` on a closure: the names of the packages it needs.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Set by `pin` on entries that are only here because a closure needs them.
    #[serde(default)]
    pub required_by: Vec<String>,
    // The pin, written by `cargo xtask pin` (all or none of these are present).
    pub version: Option<String>,
    pub archive: Option<Archive>,
    pub path: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// Set by `pin`: when this pin was first made (`YYYYMMDDTHHMMSSZ`, UTC), so a file the
    /// mirror has dropped can be fetched from a snapshot archive as of that time.
    #[serde(default)]
    pub snapshot: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebPin {
    pub version: String,
    pub archive: Archive,
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A Debian source package: the `.dsc` and the tarballs it names. A recipe builds from one
/// (`src:NAME`); one with `of` is the corresponding source of a pinned binary package,
/// pinned at the version that binary was built from (for `dist --sources`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Source {
    pub name: String,
    #[serde(default)]
    pub suite: Option<String>,
    /// The binary package (amd64) whose source this is: a `[[deb]]`, or a package of the
    /// environment `env`.
    #[serde(default)]
    pub of: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub licence: Option<String>,
    pub version: Option<String>,
    pub archive: Option<Archive>,
    pub dir: Option<String>,
    pub files: Option<Vec<SourceFile>>,
    /// Set by `pin`, as for [`Deb::snapshot`].
    #[serde(default)]
    pub snapshot: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePin {
    pub version: String,
    pub archive: Archive,
    pub dir: String,
    pub files: Vec<SourceFile>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// One file to fetch: where it lives on a mirror and what it must hash to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Blob {
    /// What the user reads in messages, e.g. `deb libc6 2.36-9+deb12u10 amd64`.
    pub label: String,
    pub archive: ArchiveKey,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// SPDX expression, or NOASSERTION.
    pub licence: String,
    /// When it was pinned (`YYYYMMDDTHHMMSSZ`), for the snapshot archive fallback.
    pub snapshot: Option<String>,
}

/// Wraps [`Archive`] so blobs sort and compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchiveKey(pub u8);

impl From<Archive> for ArchiveKey {
    fn from(a: Archive) -> Self {
        ArchiveKey(a as u8)
    }
}

impl ArchiveKey {
    pub fn archive(self) -> Archive {
        if self.0 == Archive::DebianSecurity as u8 {
            Archive::DebianSecurity
        } else {
            Archive::Debian
        }
    }
}

impl fmt::Display for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

#[derive(Clone, Debug)]
pub struct Lock {
    pub debs: Vec<Deb>,
    pub sources: Vec<Source>,
    pub envs: Vec<Env>,
}

impl Deb {
    pub fn id(&self) -> String {
        format!("{}:{}", self.name, self.arch)
    }

    /// The pin, or an error saying the entry needs `cargo xtask pin`.
    pub fn pin(&self) -> Result<DebPin> {
        match (&self.version, self.archive, &self.path, self.size, &self.sha256) {
            (Some(version), Some(archive), Some(path), Some(size), Some(sha256)) => Ok(DebPin {
                version: version.clone(),
                archive,
                path: path.clone(),
                size,
                sha256: sha256.clone(),
            }),
            (None, None, None, None, None) => bail!(
                "{FILE}: deb `{}` is not pinned yet: run `cargo xtask pin`",
                self.id()
            ),
            _ => bail!(
                "{FILE}: deb `{}` is partly pinned (needs version, archive, path, size and sha256): run `cargo xtask pin`",
                self.id()
            ),
        }
    }

    pub fn blob(&self) -> Result<Blob> {
        let pin = self.pin()?;
        Ok(Blob {
            label: format!("deb {} {} {}", self.name, pin.version, self.arch),
            archive: pin.archive.into(),
            path: pin.path.clone(),
            size: pin.size,
            sha256: pin.sha256.clone(),
            licence: self.licence.clone().unwrap_or_else(|| "NOASSERTION".into()),
            snapshot: self.snapshot.clone(),
        })
    }
}

impl Source {
    /// `NAME`, or for a binary's source `NAME (of BINARY[ in ENV])`: unique in the lock.
    pub fn id(&self) -> String {
        match (&self.of, &self.env) {
            (Some(of), Some(env)) => format!("{} (of {of} in {env})", self.name),
            (Some(of), None) => format!("{} (of {of})", self.name),
            _ => self.name.clone(),
        }
    }

    pub fn pinned(&self) -> Result<SourcePin> {
        match (&self.version, self.archive, &self.dir, &self.files) {
            (Some(version), Some(archive), Some(dir), Some(files)) => Ok(SourcePin {
                version: version.clone(),
                archive,
                dir: dir.clone(),
                files: files.clone(),
            }),
            (None, None, None, None) => bail!(
                "{FILE}: source `{}` is not pinned yet: run `cargo xtask pin`",
                self.id()
            ),
            _ => bail!(
                "{FILE}: source `{}` is partly pinned (needs version, archive, dir and files): run `cargo xtask pin`",
                self.id()
            ),
        }
    }

    pub fn blobs(&self) -> Result<Vec<Blob>> {
        let pin = self.pinned()?;
        Ok(pin
            .files
            .iter()
            .map(|f| Blob {
                label: format!("source {} {} {}", self.name, pin.version, f.name),
                archive: pin.archive.into(),
                path: format!("{}/{}", pin.dir, f.name),
                size: f.size,
                sha256: f.sha256.clone(),
                licence: self.licence.clone().unwrap_or_else(|| "NOASSERTION".into()),
                snapshot: self.snapshot.clone(),
            })
            .collect())
    }
}

/// `(NAME, VERSION)` of the source package a binary package NAME at VERSION was built
/// from, given its control `Source` field: `glibc` (same version), `glib2.0 (2.74.6-2)` (a
/// binary-only rebuild's), or none (the same name).
pub fn source_of(field: Option<&str>, name: &str, version: &str) -> (String, String) {
    let field = field.map(str::trim).unwrap_or(name);
    match field.split_once(' ') {
        Some((src, v)) => (
            src.to_string(),
            v.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .to_string(),
        ),
        None => (field.to_string(), version.to_string()),
    }
}

/// A Debian version without its epoch (`1:1.2.13-1` -> `1.2.13-1`), as source package file
/// names spell it.
pub fn without_epoch(version: &str) -> &str {
    match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => version,
    }
}

/// What a recipe's `inputs` entry resolved to.
#[derive(Clone, Debug)]
pub enum Resolved<'a> {
    /// A binary package, and for a closure every package it needs (the root first).
    Debs(Vec<&'a Deb>),
    Source(&'a Source),
}

impl Lock {
    pub fn load(root: &Path) -> Result<Lock> {
        let path = root.join(FILE);
        let src =
            fs_err::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&src)
    }

    pub fn parse(src: &str) -> Result<Lock> {
        let raw: RawLock = toml::from_str(src).map_err(|e| {
            let at = e.span().map_or(String::new(), |s| {
                let before = &src[..s.start.min(src.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, |l| l.len()) + 1;
                format!(":{line}:{col}")
            });
            anyhow::anyhow!("{FILE}{at}: {}", e.message().trim_end())
        })?;
        let lock = Lock {
            debs: raw.deb,
            sources: raw.source,
            envs: raw.env,
        };
        lock.check()?;
        Ok(lock)
    }

    fn check(&self) -> Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.debs {
            if !seen.insert(d.id()) {
                bail!("{FILE}: deb `{}` is listed twice", d.id());
            }
            if d.closure && d.follow {
                bail!(
                    "{FILE}: deb `{}`: `closure` and `follow` exclude each other",
                    d.id()
                );
            }
            if let Some(sha) = &d.sha256 {
                check_sha256(sha, &d.id())?;
            }
            if let Some(path) = &d.path {
                check_rel_path(path, &d.id())?;
            }
            check_snapshot(d.snapshot.as_deref(), &d.id())?;
        }
        for s in &self.sources {
            let id = s.id();
            if !seen.insert(format!("src:{id}")) {
                bail!("{FILE}: source `{id}` is listed twice");
            }
            if s.env.is_some() && s.of.is_none() {
                bail!("{FILE}: source `{id}`: `env` says where the binary package `of` names is pinned; add `of`");
            }
            if let Some(env) = &s.env {
                if !self.envs.iter().any(|e| &e.name == env) {
                    bail!("{FILE}: source `{id}`: no env `{env}`");
                }
            }
            if let Some(dir) = &s.dir {
                check_rel_path(dir, &id)?;
            }
            check_snapshot(s.snapshot.as_deref(), &id)?;
            if let Some(files) = &s.files {
                for f in files {
                    check_sha256(&f.sha256, &id)?;
                    if f.name.contains('/') {
                        bail!("{FILE}: source `{id}`: file name `{}` has a `/`", f.name);
                    }
                }
            }
        }
        for e in &self.envs {
            if !seen.insert(format!("env:{}", e.name)) {
                bail!("{FILE}: env `{}` is listed twice", e.name);
            }
            if e.packages.is_empty() {
                bail!("{FILE}: env `{}` asks for no packages", e.name);
            }
            let mut names = std::collections::BTreeSet::new();
            for d in &e.debs {
                let what = format!("env {} deb {}", e.name, d.name);
                check_sha256(&d.sha256, &what)?;
                check_rel_path(&d.path, &what)?;
                check_snapshot(d.snapshot.as_deref(), &what)?;
                if !names.insert(&d.name) {
                    bail!("{FILE}: env `{}` pins `{}` twice", e.name, d.name);
                }
            }
        }
        Ok(())
    }

    /// The build environment called `name`.
    pub fn env(&self, name: &str) -> Result<&Env> {
        self.envs.iter().find(|e| e.name == name).with_context(|| {
            format!("build environment `{name}` is not in {FILE}: add an [[env]] entry and run `cargo xtask pin`")
        })
    }

    /// Resolves a recipe's input reference: `NAME` (a deb for amd64), `NAME:ARCH`, or
    /// `src:NAME` (a source package).
    pub fn resolve(&self, reference: &str) -> Result<Resolved<'_>> {
        if let Some(name) = reference.strip_prefix("src:") {
            return self
                .sources
                .iter()
                .find(|s| s.name == name && s.of.is_none())
                .map(Resolved::Source)
                .with_context(|| format!("source package `{name}` is not in {FILE}: add a [[source]] entry and run `cargo xtask pin`"));
        }
        let (name, arch) = reference.split_once(':').unwrap_or((reference, "amd64"));
        let root = self
            .debs
            .iter()
            .find(|d| d.name == name && d.arch == arch && d.required_by.is_empty())
            .with_context(|| format!("package `{name}:{arch}` is not in {FILE}: add a [[deb]] entry and run `cargo xtask pin`"))?;
        let mut debs = vec![root];
        for need in &root.needs {
            let dep = self
                .debs
                .iter()
                .find(|d| &d.name == need && d.arch == arch)
                .with_context(|| format!("{FILE}: `{name}:{arch}` needs `{need}`, which has no entry: run `cargo xtask pin`"))?;
            debs.push(dep);
        }
        Ok(Resolved::Debs(debs))
    }

    /// The pinned source package NAME at VERSION (a binary's `Source` version may carry an
    /// epoch, which source file names and so pins do not).
    pub fn source_at(&self, name: &str, version: &str) -> Option<&Source> {
        let version = without_epoch(version);
        self.sources
            .iter()
            .find(|s| s.name == name && s.version.as_deref() == Some(version))
    }

    /// Every file of every input, for `fetch` with no names.
    pub fn all_blobs(&self) -> Result<Vec<Blob>> {
        let mut out = Vec::new();
        for d in &self.debs {
            out.push(d.blob()?);
        }
        for s in &self.sources {
            out.extend(s.blobs()?);
        }
        for e in &self.envs {
            out.extend(e.blobs()?);
        }
        Ok(out)
    }
}

impl Env {
    /// Every package file of the environment, or an error saying it needs `pin`.
    pub fn blobs(&self) -> Result<Vec<Blob>> {
        if self.debs.is_empty() {
            bail!(
                "{FILE}: env `{}` is not pinned yet: run `cargo xtask pin`",
                self.name
            );
        }
        Ok(self
            .debs
            .iter()
            .map(|d| Blob {
                label: format!("deb {} {} {}", d.name, d.version, self.arch),
                archive: d.archive.into(),
                path: d.path.clone(),
                size: d.size,
                sha256: d.sha256.clone(),
                licence: "NOASSERTION".into(),
                snapshot: d.snapshot.clone(),
            })
            .collect())
    }
}

impl Resolved<'_> {
    pub fn blobs(&self) -> Result<Vec<Blob>> {
        match self {
            Resolved::Debs(debs) => debs.iter().map(|d| d.blob()).collect(),
            Resolved::Source(s) => s.blobs(),
        }
    }
}

fn check_sha256(hex: &str, what: &str) -> Result<()> {
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("{FILE}: `{what}`: sha256 `{hex}` is not 64 lowercase hex digits");
    }
    Ok(())
}

fn check_snapshot(snapshot: Option<&str>, what: &str) -> Result<()> {
    match snapshot {
        Some(s) if !crate::mirror::is_snapshot_timestamp(s) => bail!(
            "{FILE}: `{what}`: snapshot `{s}` is not a UTC time like 20261201T093000Z (YYYYMMDDTHHMMSSZ)"
        ),
        _ => Ok(()),
    }
}

fn check_rel_path(path: &str, what: &str) -> Result<()> {
    if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
        bail!("{FILE}: `{what}`: path `{path}` must be relative, without `..`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
# a comment
[[deb]]
name = "xen-utils-4.17"
arch = "amd64"
closure = true
version = "4.17.7"
needs = ["libc6"]
archive = "debian-security"
path = "pool/main/x/xen/xen-utils-4.17_4.17.7_amd64.deb"
size = 10
sha256 = "0000000000000000000000000000000000000000000000000000000000000001"

[[deb]]
name = "libc6"
arch = "amd64"
required-by = ["xen-utils-4.17"]
version = "2.36"
archive = "debian"
path = "pool/main/g/glibc/libc6_2.36_amd64.deb"
size = 20
sha256 = "0000000000000000000000000000000000000000000000000000000000000002"
snapshot = "20261201T093000Z"

[[deb]]
name = "busybox-static"
arch = "amd64"

[[source]]
name = "grub2"
version = "2.06-13"
archive = "debian"
dir = "pool/main/g/grub2"
files = [{ name = "grub2_2.06.orig.tar.xz", size = 5, sha256 = "0000000000000000000000000000000000000000000000000000000000000003" }]
"#;

    #[test]
    fn a_binary_package_names_its_source() {
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            source_of(None, "seabios", "1.16.2-1"),
            pair("seabios", "1.16.2-1")
        );
        assert_eq!(
            source_of(Some("glibc"), "libc6", "2.36-9"),
            pair("glibc", "2.36-9")
        );
        assert_eq!(
            source_of(Some("dtc (1.6.1-4)"), "libfdt1", "1.6.1-4+b1"),
            pair("dtc", "1.6.1-4")
        );
    }

    #[test]
    fn resolves_closures_sources_and_unpinned() {
        let lock = Lock::parse(LOCK).unwrap();
        let Resolved::Debs(debs) = lock.resolve("xen-utils-4.17").unwrap() else {
            panic!("not debs")
        };
        let names: Vec<_> = debs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["xen-utils-4.17", "libc6"]);
        let blobs = lock.resolve("src:grub2").unwrap().blobs().unwrap();
        assert_eq!(blobs[0].path, "pool/main/g/grub2/grub2_2.06.orig.tar.xz");
        assert_eq!(blobs[0].snapshot, None);
        assert_eq!(
            debs[1].blob().unwrap().snapshot.as_deref(),
            Some("20261201T093000Z")
        );
        let err = lock.resolve("busybox-static").unwrap().blobs().unwrap_err();
        assert!(format!("{err}").contains("not pinned yet: run `cargo xtask pin`"));
        let err = lock.resolve("libc6:arm64").unwrap_err();
        assert!(format!("{err}").contains("`libc6:arm64` is not in inputs.lock"));
        // A binary's corresponding source may share a recipe source's name; `src:` never
        // names it.
        let both = format!("{LOCK}\n[[source]]\nname = \"grub2\"\nof = \"grub-pc\"\n");
        let lock = Lock::parse(&both).unwrap();
        let Resolved::Source(s) = lock.resolve("src:grub2").unwrap() else {
            panic!("not a source")
        };
        assert_eq!(s.of, None);
        assert_eq!(lock.sources[1].id(), "grub2 (of grub-pc)");
    }

    #[test]
    fn bad_locks_are_refused() {
        let cases = [
            (
                LOCK.replace(
                    "sha256 = \"0000000000000000000000000000000000000000000000000000000000000002\"",
                    "sha256 = \"xyz\"",
                ),
                "`libc6:amd64`: sha256 `xyz` is not 64 lowercase hex digits",
            ),
            (
                LOCK.replace("20261201T093000Z", "2026-12-01"),
                "`libc6:amd64`: snapshot `2026-12-01` is not a UTC time",
            ),
            (
                LOCK.replace(
                    "dir = \"pool/main/g/grub2\"",
                    "dir = \"pool/main/g/grub2\"\nsnapshot = \"20261232T000000Z\"",
                ),
                "`grub2`: snapshot `20261232T000000Z` is not a UTC time",
            ),
            (
                LOCK.replace("pool/main/g/glibc/", "../"),
                "path `../libc6_2.36_amd64.deb` must be relative",
            ),
            (
                LOCK.replace("closure = true", "closure = true\ncolour = 1"),
                "inputs.lock:7:1: unknown field `colour`",
            ),
            (
                format!("{LOCK}\n[[deb]]\nname = \"libc6\"\narch = \"amd64\"\n"),
                "deb `libc6:amd64` is listed twice",
            ),
            (
                format!("{LOCK}\n[[source]]\nname = \"glibc\"\nenv = \"x\"\n"),
                "source `glibc`: `env` says where the binary package `of` names is pinned; add `of`",
            ),
            (
                format!("{LOCK}\n[[source]]\nname = \"glibc\"\nof = \"libc6\"\nenv = \"x\"\n"),
                "source `glibc (of libc6 in x)`: no env `x`",
            ),
            (
                format!("{LOCK}\n[[source]]\nname = \"glibc\"\nof = \"libc6\"\n[[source]]\nname = \"glibc\"\nof = \"libc6\"\n"),
                "source `glibc (of libc6)` is listed twice",
            ),
        ];
        for (src, want) in cases {
            let err = format!("{:#}", Lock::parse(&src).unwrap_err());
            assert!(err.contains(want), "want {want:?}\n got {err:?}");
        }
    }
}
