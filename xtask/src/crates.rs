//! The crates of `Cargo.lock` as a vendored source for the image builds' cargo, which runs
//! offline in the build environment: every registry package of the lock, its `.crate`
//! checked against the lock's sha256, unpacked once into the cache (`vendor/<key>/`, keyed
//! by the lock's checksums) with the `.cargo-checksum.json` a directory source needs.
//! Inside a Nix build, where cargo cannot download, the crates come from nixpkgs' vendored
//! folder instead ([`VENDORED_ENV`]), each checked against the lock by its checksum file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cache::Cache;
use crate::fsx;
use crate::key::Key;
use crate::workspace::Workspace;

/// Bumped when the vendored layout changes.
const FORMAT: &str = "stubdoms-vendor-1";

/// A folder of unpacked crates (`NAME-VERSION/` with a `.cargo-checksum.json` whose
/// `package` is the lock's checksum, as nixpkgs' `importCargoLock` makes it) to take the
/// crates from instead of cargo's registry cache.
pub const VENDORED_ENV: &str = "STUBDOMS_VENDORED_CRATES";

#[derive(Deserialize)]
struct CargoLock {
    #[serde(default)]
    package: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// The `--config` arguments that make cargo read crates from the vendored folder mounted
/// at `inside`.
pub fn cargo_config(inside: &str) -> [String; 4] {
    [
        "--config".into(),
        "source.crates-io.replace-with=\"vendored\"".into(),
        "--config".into(),
        format!("source.vendored.directory=\"{inside}\""),
    ]
}

/// The vendored folder for the workspace's `Cargo.lock`, made if it is not in the cache.
pub fn vendored(ws: &Workspace, cache: &Cache) -> Result<PathBuf> {
    let lock_path = ws.root.join("Cargo.lock");
    let text = fs_err::read_to_string(&lock_path)
        .with_context(|| format!("reading {}", lock_path.display()))?;
    let lock: CargoLock =
        toml::from_str(&text).with_context(|| format!("parsing {}", lock_path.display()))?;
    let mut crates = Vec::new();
    for p in lock.package {
        match (&p.source, &p.checksum) {
            (None, _) => {} // a workspace member
            (Some(s), Some(sum)) if s.starts_with("registry+") => {
                let sum = sum.clone();
                crates.push((p, sum));
            }
            (Some(s), _) => bail!(
                "{}: `{} {}` comes from `{s}`: only registry crates with a checksum can be vendored",
                lock_path.display(),
                p.name,
                p.version
            ),
        }
    }
    let mut k = Key::new(FORMAT);
    for (p, sum) in &crates {
        k.field(&format!("{} {}", p.name, p.version), sum);
    }
    let key = k.finish();
    if cache.root().join("vendor").join(&key[..16]).is_dir() {
        return Ok(cache.root().join("vendor").join(&key[..16]));
    }
    crate::ui::step(&format!(
        "vendoring {} crates of Cargo.lock for the image builds",
        crates.len()
    ));
    if let Some(from) = std::env::var_os(VENDORED_ENV) {
        let from = PathBuf::from(from);
        return cache.stored("vendor", &key[..16], false, |tmp| {
            for (p, sum) in &crates {
                let dir = format!("{}-{}", p.name, p.version);
                copy_checked(&from.join(&dir), sum, &tmp.join(&dir))
                    .with_context(|| format!("{VENDORED_ENV}={}: crate {dir}", from.display()))?;
            }
            Ok(())
        });
    }
    let registry = registry_cache(ws)?;
    cache.stored("vendor", &key[..16], false, |tmp| {
        for (p, sum) in &crates {
            let file = find_crate(&registry, &p.name, &p.version)?;
            let (actual, _) = fsx::sha256_file(&file)?;
            if &actual != sum {
                bail!(
                    "{}: sha256 {actual}, but Cargo.lock says {sum}: remove it and run `cargo fetch`",
                    file.display()
                );
            }
            let into = tmp.join(format!("{}-{}", p.name, p.version));
            let opts = stubdoms_archive::ExtractOptions {
                strip_components: 1,
                compression: None,
            };
            stubdoms_archive::extract_tarball(&file, &into, &opts)
                .with_context(|| format!("unpacking {}", file.display()))?;
            let checksum = serde_json::json!({ "files": {}, "package": sum });
            fsx::write_atomic(
                &into.join(".cargo-checksum.json"),
                checksum.to_string().as_bytes(),
            )?;
        }
        Ok(())
    })
}

/// Copies an unpacked crate whose `.cargo-checksum.json` names `sum` as its package
/// checksum; files get mode 0644, or 0755 when any execute bit was set.
fn copy_checked(from: &std::path::Path, sum: &str, to: &std::path::Path) -> Result<()> {
    let checksum = from.join(".cargo-checksum.json");
    let text = fs_err::read_to_string(&checksum).with_context(|| {
        format!(
            "{} is not an unpacked crate with a checksum file",
            from.display()
        )
    })?;
    let said: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", checksum.display()))?;
    let package = said.get("package").and_then(|p| p.as_str());
    if package != Some(sum) {
        bail!(
            "{} says package checksum {}, but Cargo.lock says {sum}",
            checksum.display(),
            package.unwrap_or("(none)")
        );
    }
    copy_tree(from, to)
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::create_dir_all(to)?;
    for e in fs_err::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&src)?, &dst)?;
        } else {
            fs_err::copy(&src, &dst)?;
            let exec = e.metadata()?.permissions().mode() & 0o111 != 0;
            let mode = if exec { 0o755 } else { 0o644 };
            fs_err::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// Downloads every crate of the lock with the host's cargo (for every platform, so the
/// whole lock resolves offline) and returns cargo's registry cache folders.
fn registry_cache(ws: &Workspace) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .args(["fetch", "--locked", "--quiet"])
        .current_dir(&ws.root)
        .status()
        .context("running `cargo fetch`")?;
    if !status.success() {
        bail!("`cargo fetch --locked` failed: the crates of Cargo.lock could not be downloaded");
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let cache = home.join("registry/cache");
    let dirs: Vec<PathBuf> = fs_err::read_dir(&cache)
        .with_context(|| format!("reading {}", cache.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    Ok(dirs)
}

fn find_crate(dirs: &[PathBuf], name: &str, version: &str) -> Result<PathBuf> {
    let file = format!("{name}-{version}.crate");
    dirs.iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{file} is not in cargo's registry cache ({}) after `cargo fetch`",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_crates_io_at_the_folder() {
        let c = cargo_config("/vendor");
        assert_eq!(c[1], "source.crates-io.replace-with=\"vendored\"");
        assert_eq!(c[3], "source.vendored.directory=\"/vendor\"");
    }

    #[test]
    fn a_vendored_crate_is_copied_only_with_the_locks_checksum() {
        let dir = std::env::temp_dir().join(format!("xtask-vendored-{}", std::process::id()));
        let from = dir.join("from/libc-0.2.1");
        fs_err::create_dir_all(from.join("src")).unwrap();
        fs_err::write(
            from.join(".cargo-checksum.json"),
            r#"{"files":{},"package":"ab"}"#,
        )
        .unwrap();
        fs_err::write(from.join("src/lib.rs"), b"//").unwrap();
        copy_checked(&from, "ab", &dir.join("to")).unwrap();
        assert_eq!(fs_err::read(dir.join("to/src/lib.rs")).unwrap(), b"//");
        let err = format!(
            "{:#}",
            copy_checked(&from, "cd", &dir.join("to2")).unwrap_err()
        );
        assert!(
            err.contains("says package checksum ab, but Cargo.lock says cd"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            copy_checked(&dir.join("none"), "ab", &dir.join("to3")).unwrap_err()
        );
        assert!(err.contains("is not an unpacked crate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_a_crate_in_any_registry_folder() {
        let dir = std::env::temp_dir().join(format!("xtask-crates-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs_err::create_dir_all(&a).unwrap();
        fs_err::create_dir_all(&b).unwrap();
        fs_err::write(b.join("libc-0.2.1.crate"), b"x").unwrap();
        let dirs = [a, b.clone()];
        assert_eq!(
            find_crate(&dirs, "libc", "0.2.1").unwrap(),
            b.join("libc-0.2.1.crate")
        );
        let err = format!("{:#}", find_crate(&dirs, "libc", "0.2.2").unwrap_err());
        assert!(err.contains("libc-0.2.2.crate is not in cargo's registry cache"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
