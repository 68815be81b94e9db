//! File helpers shared by every command: hashing, and writes that land whole or not at all.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Hashes a file in a streaming way; returns (sha256, size).
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((format!("{:x}", hasher.finalize()), size))
}

/// Where `path` is written before it is renamed into place: `path.partial.<pid>.<n>`, so
/// two processes or threads making the same file (two builds, two boot tests) never share a
/// scratch path.
pub fn partial_path(path: &Path) -> PathBuf {
    beside(path, "partial")
}

/// A name next to `path` that no other process or call uses: `path.<what>.<pid>.<n>`.
fn beside(path: &Path, what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}.{}.{n}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` through a `.partial` file, so a crash or a full disk never leaves
/// a half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = partial_path(path);
    let result = (|| -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}{}", path.display(), disk_hint(path)));
    }
    Ok(())
}

/// Copies `from` to `to` through a `.partial` file.
pub fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = partial_path(to);
    if let Err(e) = fs::copy(from, &tmp).and_then(|_| fs::rename(&tmp, to)) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| {
            format!(
                "copying {} to {}{}",
                from.display(),
                to.display(),
                disk_hint(to)
            )
        });
    }
    Ok(())
}

/// A hint for the most common reason a write fails.
pub fn disk_hint(path: &Path) -> String {
    let dir = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match fs2_available(dir) {
        Some(free) if free < 64 << 20 => format!(
            " (only {} MiB free on the disk holding {}: free some space and run again)",
            free >> 20,
            dir.display()
        ),
        _ => String::new(),
    }
}

/// Free bytes on the file system holding `dir`.
fn fs2_available(dir: &Path) -> Option<u64> {
    let dir = dir.ancestors().find(|d| d.exists())?;
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail * st.f_frsize)
}

/// Makes the folder `dir` whole or not at all: `fill` writes into a per-process partial
/// folder, which is then renamed to `dir`. An existing `dir` is kept (another process made
/// the same thing first) unless `replace`.
pub fn create_dir_atomic(
    dir: &Path,
    replace: bool,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let tmp = partial_path(dir);
    remove_dir_if_exists(&tmp)?;
    fs::create_dir_all(&tmp)
        .with_context(|| format!("creating {}{}", tmp.display(), disk_hint(&tmp)))?;
    if let Err(e) = fill(&tmp) {
        let _ = remove_dir_if_exists(&tmp);
        return Err(e);
    }
    // The old folder is first renamed aside to a name of this call's own: two processes
    // replacing the same folder (the two builds of `repro` share the cache) then never
    // delete under each other's feet.
    let aside = replace.then(|| beside(dir, "old"));
    if let Some(aside) = &aside {
        match fs::rename(dir, aside) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                let _ = remove_dir_if_exists(&tmp);
                return Err(e).with_context(|| format!("moving {} aside", dir.display()));
            }
            _ => {}
        }
    }
    let placed = match fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another process placed the same thing in between: keep theirs.
        Err(_) if dir.is_dir() => remove_dir_if_exists(&tmp),
        Err(e) => Err(e).with_context(|| format!("storing {}", dir.display())),
    };
    if let Some(aside) = &aside {
        remove_dir_if_exists(aside)?;
    }
    placed
}

/// Removes a directory tree if it exists.
pub fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_no_partial() {
        let dir = std::env::temp_dir().join(format!("stubdoms-fsx-{}", std::process::id()));
        let file = dir.join("a/b.txt");
        write_atomic(&file, b"hello").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"hello");
        assert!(!partial_path(&file).exists());
        assert_eq!(
            sha256_file(&file).unwrap(),
            (
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_string(),
                5
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A folder appears whole or not at all; an existing one is kept unless replaced.
    #[test]
    fn atomic_folders_appear_whole_or_not_at_all() {
        let base = std::env::temp_dir().join(format!("stubdoms-fsxdir-{}", std::process::id()));
        let dir = base.join("made");
        let write = |name: &'static str| {
            move |tmp: &Path| -> Result<()> { Ok(fs::write(tmp.join(name), name)?) }
        };
        let failed = create_dir_atomic(&dir, false, |tmp| {
            fs::write(tmp.join("half"), "x")?;
            anyhow::bail!("fill failed")
        });
        assert_eq!(failed.unwrap_err().to_string(), "fill failed");
        assert!(!dir.exists());
        assert_eq!(
            fs::read_dir(&base).unwrap().count(),
            0,
            "no scratch folder is left"
        );

        create_dir_atomic(&dir, false, write("first")).unwrap();
        create_dir_atomic(&dir, false, write("second")).unwrap();
        assert!(dir.join("first").is_file() && !dir.join("second").exists());
        create_dir_atomic(&dir, true, write("second")).unwrap();
        assert!(!dir.join("first").exists() && dir.join("second").is_file());
        let names: Vec<_> = fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["made"], "no scratch or old folder is left");
        fs::remove_dir_all(&base).unwrap();
    }

    /// Many replacing the same folder at once (as `repro`'s two builds do in the shared
    /// cache) all succeed, and one whole result is left.
    #[test]
    fn concurrent_replaces_all_succeed() {
        let base = std::env::temp_dir().join(format!("stubdoms-fsxrace-{}", std::process::id()));
        let dir = base.join("made");
        std::thread::scope(|s| {
            for t in 0..8 {
                let dir = &dir;
                s.spawn(move || {
                    for i in 0..25 {
                        create_dir_atomic(dir, true, |tmp| {
                            for f in 0..20 {
                                fs::write(tmp.join(format!("{f}")), format!("{t}.{i}"))?;
                            }
                            Ok(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let names: Vec<_> = fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["made"], "no scratch or old folder is left");
        let first = fs::read(dir.join("0")).unwrap();
        for f in 0..20 {
            assert_eq!(
                fs::read(dir.join(format!("{f}"))).unwrap(),
                first,
                "one whole result"
            );
        }
        fs::remove_dir_all(&base).unwrap();
    }
}
