//! The content-addressed cache outside the checkout (`$XDG_CACHE_HOME/stubdoms`, else
//! `~/.cache/stubdoms`, or `$STUBDOMS_CACHE`): fetched inputs by sha256, their unpacked
//! trees, and finished builds by build key.
//!
//! **Invariant:** a file under `sha256/` is only ever used after its hash was checked in this
//! process, so a cache file altered on disk is caught before it reaches a build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::fsx;
use crate::lock::Blob;

pub struct Cache {
    root: PathBuf,
    /// Blobs already verified in this process (a blob is hashed once per run).
    verified: Mutex<BTreeSet<String>>,
}

/// What the cache holds for a blob.
pub enum State {
    Missing,
    Good(PathBuf),
    Altered { actual: String, size: u64 },
}

impl Cache {
    pub fn open() -> Result<Cache> {
        let root = if let Some(dir) = std::env::var_os("STUBDOMS_CACHE").filter(|d| !d.is_empty()) {
            PathBuf::from(dir)
        } else if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            PathBuf::from(xdg).join("stubdoms")
        } else if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            PathBuf::from(home).join(".cache/stubdoms")
        } else {
            bail!("cannot place the cache: set XDG_CACHE_HOME or HOME (or STUBDOMS_CACHE)");
        };
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the cache folder {}", root.display()))?;
        Ok(Cache {
            root,
            verified: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// A scratch folder inside the cache (same file system, so renames are atomic).
    pub fn tmp(&self) -> Result<PathBuf> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Checks what the cache holds for `blob`, hashing the file (once per process).
    pub fn state(&self, blob: &Blob) -> Result<State> {
        let path = self.blob_path(&blob.sha256);
        if !path.exists() {
            return Ok(State::Missing);
        }
        if self.is_verified(&blob.sha256) {
            return Ok(State::Good(path));
        }
        let (actual, size) = fsx::sha256_file(&path)?;
        if actual == blob.sha256 && size == blob.size {
            self.mark_verified(&blob.sha256);
            Ok(State::Good(path))
        } else {
            Ok(State::Altered { actual, size })
        }
    }

    /// The verified path of a blob that must already be in the cache.
    pub fn get(&self, blob: &Blob) -> Result<PathBuf> {
        match self.state(blob)? {
            State::Good(path) => Ok(path),
            State::Missing => bail!("{blob} is not in the cache: run `cargo xtask fetch`"),
            State::Altered { actual, .. } => bail!(
                "cached {blob} was altered: expected sha256 {}, found {actual} at {}; run `cargo xtask fetch` to fetch it again",
                blob.sha256,
                self.blob_path(&blob.sha256).display()
            ),
        }
    }

    pub fn mark_verified(&self, sha256: &str) {
        if let Ok(mut v) = self.verified.lock() {
            v.insert(sha256.to_string());
        }
    }

    fn is_verified(&self, sha256: &str) -> bool {
        self.verified.lock().is_ok_and(|v| v.contains(sha256))
    }

    /// The unpacked tree of a `.deb` (extracted once, atomically, keyed by the deb's hash).
    pub fn unpacked_deb(&self, blob: &Blob) -> Result<PathBuf> {
        let deb = self.get(blob)?;
        let dest = self.root.join("unpacked").join(&blob.sha256);
        if !dest.exists() {
            std::fs::create_dir_all(self.root.join("unpacked"))?;
            // A per-process scratch name, so two processes unpacking the same package do
            // not trip over each other; the first rename wins, the same bytes either way.
            let tmp = crate::fsx::partial_path(&dest);
            crate::fsx::remove_dir_if_exists(&tmp)?;
            stubdoms_archive::deb::extract_data(&deb, &tmp)
                .with_context(|| format!("unpacking {blob}"))?;
            if std::fs::rename(&tmp, &dest).is_err() && dest.is_dir() {
                crate::fsx::remove_dir_if_exists(&tmp)?;
            }
        }
        Ok(dest)
    }

    /// A folder made once under a key and kept (`<kind>/<name>`): `fill` writes it (whole
    /// or not at all) when it is missing, or again when `rebuild`. Every cached part of a
    /// build (prepared sources, the kernel and QEMU, build environments, vendored crates,
    /// test machines) is one of these.
    pub fn stored(
        &self,
        kind: &str,
        name: &str,
        rebuild: bool,
        fill: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let dir = self.root.join(kind).join(name);
        if rebuild || !dir.is_dir() {
            std::fs::create_dir_all(self.root.join(kind))
                .with_context(|| format!("creating {}", self.root.join(kind).display()))?;
            fsx::create_dir_atomic(&dir, rebuild, fill)?;
        }
        Ok(dir)
    }

    /// Finished builds, by build key.
    pub fn build_dir(&self, key: &str) -> PathBuf {
        self.root.join("builds").join(key)
    }
}
