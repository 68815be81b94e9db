//! The crates of `Cargo.lock` as a vendored source for the image builds' cargo, which runs
//! offline in the build environment: every registry package of the lock, its `.crate`
//! checked against the lock's sha256, unpacked once into the cache (`vendor/<key>/`, keyed
//! by the lock's checksums) with the `.cargo-checksum.json` a directory source needs.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::cache::Cache;
use crate::fsx;
use crate::key::Key;
use crate::workspace::Workspace;

/// Bumped when the vendored layout changes.
const FORMAT: &str = "stubdoms-vendor-1";

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
