//! The content-addressed cache outside the checkout (`$XDG_CACHE_HOME/stubdoms`, else
//! `~/.cache/stubdoms`, or `$STUBDOMS_CACHE`): fetched inputs by sha256, their unpacked
//! trees, and finished builds by build key.
//!
//! **Invariant:** a file under `sha256/` is only ever used after its hash was checked, in this
//! process or in an earlier one whose verification stamp still matches the file, so a cache
//! file altered on disk is caught before it reaches a build.
//!
//! A stamp (`stamps/<sha256>`) records the device, inode, size, mtime and ctime of a file
//! whose sha256 was checked. A later process trusts the file without hashing it while all
//! five still match. Every write to a file (and every rename onto its name) sets its ctime to
//! the current time, and user space cannot set a ctime back, so an altered file no longer
//! matches its stamp even if its mtime was restored. A stamp is only written for a file whose
//! ctime is [`SETTLE`] old: a write within the same timestamp tick as the last change (file
//! systems keep coarse times) would otherwise leave the ctime unchanged.

use std::collections::BTreeSet;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::fsx;
use crate::lock::Blob;

/// How old a file's last change must be before a stamp may vouch for it: well above the
/// timestamp granularity of any file system the cache may live on.
const SETTLE: Duration = Duration::from_secs(2);

pub struct Cache {
    root: PathBuf,
    /// Blobs already verified in this process (a blob is hashed once per run).
    verified: Mutex<BTreeSet<String>>,
    /// [`SETTLE`], shorter in tests.
    settle: Duration,
}

/// What a verification stamp records about a cache file (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
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
        Cache::at(root)
    }

    /// The cache in the folder `root`.
    pub fn at(root: PathBuf) -> Result<Cache> {
        fs_err::create_dir_all(&root)
            .with_context(|| format!("creating the cache folder {}", root.display()))?;
        Ok(Cache {
            root,
            verified: Mutex::new(BTreeSet::new()),
            settle: SETTLE,
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
        fs_err::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    fn stamp_path(&self, sha256: &str) -> PathBuf {
        self.root.join("stamps").join(sha256)
    }

    /// Checks what the cache holds for `blob`: trusted once verified in this process or while
    /// its stamp matches, else hashed (and stamped when it matches).
    pub fn state(&self, blob: &Blob) -> Result<State> {
        let path = self.blob_path(&blob.sha256);
        let meta = match fs_err::metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Missing),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if self.is_verified(&blob.sha256) {
            return Ok(State::Good(path));
        }
        let before = Stamp::of(&meta);
        if before.size == blob.size && self.stamp(&blob.sha256) == Some(before) {
            self.mark_verified(&blob.sha256);
            return Ok(State::Good(path));
        }
        let (actual, size) = fsx::sha256_file(&path)?;
        if actual == blob.sha256 && size == blob.size {
            self.mark_verified(&blob.sha256);
            self.record_stamp(&path, &blob.sha256, before)?;
            Ok(State::Good(path))
        } else {
            Ok(State::Altered { actual, size })
        }
    }

    /// The stamp stored for a blob; an unreadable one counts as none (it is rewritten).
    fn stamp(&self, sha256: &str) -> Option<Stamp> {
        let bytes = fs_err::read(self.stamp_path(sha256)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores the stamp of a file just hashed, if it did not change while it was hashed
    /// (`before`) and its last change is old enough to be told from a later one.
    fn record_stamp(&self, path: &Path, sha256: &str, before: Stamp) -> Result<()> {
        let after = Stamp::of(
            &fs_err::metadata(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let now_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let settle_ns = i64::try_from(self.settle.as_nanos()).unwrap_or(i64::MAX);
        if after != before || now_ns.saturating_sub(after.ctime_ns) < settle_ns {
            return Ok(());
        }
        let json = serde_json::to_vec(&after).context("encoding a verification stamp")?;
        fsx::write_atomic(&self.stamp_path(sha256), &json)
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

    /// The unpacked tree of a `.deb` (extracted once, atomically, keyed by the deb's hash;
    /// when two processes unpack the same package the first one's tree is kept, the same
    /// bytes either way).
    pub fn unpacked_deb(&self, blob: &Blob) -> Result<PathBuf> {
        let deb = self.get(blob)?;
        let dest = self.root.join("unpacked").join(&blob.sha256);
        if !dest.is_dir() {
            fsx::create_dir_atomic(&dest, false, |tmp| {
                // extract_data makes its destination folder itself.
                std::fs::remove_dir(tmp).with_context(|| format!("removing {}", tmp.display()))?;
                stubdoms_archive::deb::extract_data(&deb, tmp)
                    .with_context(|| format!("unpacking {blob}"))?;
                Ok(())
            })?;
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
            fs_err::create_dir_all(self.root.join(kind))
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn blob_of(bytes: &[u8]) -> Blob {
        use sha2::Digest;
        Blob {
            label: "deb test 1 amd64".into(),
            archive: crate::lock::Archive::Debian.into(),
            path: "pool/main/t/test/test_1_amd64.deb".into(),
            size: bytes.len() as u64,
            sha256: format!("{:x}", sha2::Sha256::digest(bytes)),
            licence: "NOASSERTION".into(),
            snapshot: None,
        }
    }

    /// A new `Cache` on the same folder stands for a later process.
    fn later_process(root: &Path, settle: Duration) -> Cache {
        Cache {
            settle,
            ..Cache::at(root.to_path_buf()).unwrap()
        }
    }

    fn is_good(cache: &Cache, blob: &Blob) -> bool {
        matches!(cache.state(blob).unwrap(), State::Good(_))
    }

    /// Whether the stored stamp vouches for the file as it is now (no hashing).
    fn stamp_matches(cache: &Cache, blob: &Blob) -> bool {
        let meta = fs_err::metadata(cache.blob_path(&blob.sha256)).unwrap();
        cache.stamp(&blob.sha256) == Some(Stamp::of(&meta))
    }

    #[test]
    fn stamps_vouch_only_for_files_unchanged_since_they_were_hashed() {
        let root = std::env::temp_dir().join(format!("stubdoms-stamps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let good = b"the pinned bytes".as_slice();
        let blob = blob_of(good);
        let path = root.join("sha256").join(&blob.sha256);
        fsx::write_atomic(&path, good).unwrap();
        // Older than the settle time, so the first check may stamp it.
        std::thread::sleep(Duration::from_millis(60));
        let settle = Duration::from_millis(30);

        let first = later_process(&root, settle);
        assert!(is_good(&first, &blob));
        let second = later_process(&root, settle);
        assert!(stamp_matches(&second, &blob), "stamp written and trusted");
        assert!(is_good(&second, &blob));

        // Altered in place, its mtime put back: the ctime still moved.
        let mtime = fs_err::metadata(&path).unwrap().modified().unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(b"THE").unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        assert_eq!(fs_err::metadata(&path).unwrap().modified().unwrap(), mtime);
        let third = later_process(&root, settle);
        assert!(!stamp_matches(&third, &blob));
        assert!(matches!(
            third.state(&blob).unwrap(),
            State::Altered { size: 16, .. }
        ));

        // A file copied in under the right name, with the wrong content.
        let other = root.join("other");
        fs_err::write(&other, b"not the pinned bytes").unwrap();
        fs_err::remove_file(&path).unwrap();
        fs_err::copy(&other, &path).unwrap();
        let fourth = later_process(&root, settle);
        assert!(matches!(
            fourth.state(&blob).unwrap(),
            State::Altered { size: 20, .. }
        ));

        // The right bytes again: hashed, good, and stamped anew once settled.
        fsx::write_atomic(&path, good).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(is_good(&later_process(&root, settle), &blob));
        assert!(stamp_matches(&later_process(&root, settle), &blob));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A file changed a moment ago could change again within the same timestamp tick without
    /// moving its ctime, so it is verified but not stamped.
    #[test]
    fn fresh_files_are_verified_but_not_stamped() {
        let root = std::env::temp_dir().join(format!("stubdoms-fresh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = Cache::at(root.clone()).unwrap();
        let blob = blob_of(b"fresh");
        fsx::write_atomic(&cache.blob_path(&blob.sha256), b"fresh").unwrap();
        assert!(is_good(&cache, &blob));
        assert!(!cache.stamp_path(&blob.sha256).exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn unpacking_a_bad_deb_leaves_nothing() {
        let root = std::env::temp_dir().join(format!("stubdoms-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cache = Cache::at(root.clone()).unwrap();
        let blob = blob_of(b"not an ar archive");
        fsx::write_atomic(&cache.blob_path(&blob.sha256), b"not an ar archive").unwrap();
        let err = format!("{:#}", cache.unpacked_deb(&blob).unwrap_err());
        assert!(err.starts_with("unpacking deb test 1 amd64"), "{err}");
        let unpacked: Vec<_> = fs_err::read_dir(root.join("unpacked")).unwrap().collect();
        assert!(unpacked.is_empty(), "{unpacked:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
