//! Source trees made ready to build: a Debian source package (the upstream tarball,
//! `debian/` from the Debian tarball, the patches of `debian/patches/series`) and the
//! project's own patches (`*.patch` of a folder, in name order), applied with the build
//! environment's `patch`, each logged on its own. Used for GRUB, QEMU, the ioemu kernel
//! and the test machines' Xen.

use std::path::Path;

use anyhow::{Context, Result};
use stubdoms_archive::ExtractOptions;

use crate::buildenv::Root;

const STRIP_TOP: ExtractOptions = ExtractOptions {
    strip_components: 1,
    compression: None,
};

/// Unpacks `orig` and `debian` into `src` and applies the series, then the `*.patch` files
/// of `ours` (a host folder). Patch logs go to `logs`.
pub fn unpack_patched(
    root: &Root,
    orig: &Path,
    debian: &Path,
    ours: Option<&Path>,
    src: &Path,
    logs: &Path,
) -> Result<()> {
    stubdoms_archive::extract_tarball(orig, src, &STRIP_TOP)?;
    stubdoms_archive::extract_tarball(debian, &src.join("debian"), &STRIP_TOP)?;
    let series = fs_err::read_to_string(src.join("debian/patches/series"))?;
    for p in series_entries(&series) {
        apply(root, src, &src.join("debian/patches").join(p), logs)?;
    }
    if let Some(dir) = ours {
        apply_all(root, src, dir, logs)?;
    }
    Ok(())
}

/// Unpacks the upstream tarball `orig` into `src` and applies the `*.patch` files of `ours`.
pub fn unpack_upstream(
    root: &Root,
    orig: &Path,
    ours: &Path,
    src: &Path,
    logs: &Path,
) -> Result<()> {
    stubdoms_archive::extract_tarball(orig, src, &STRIP_TOP)?;
    apply_all(root, src, ours, logs)
}

/// The `*.patch` files of `dir` in name order; none when `dir` does not exist.
pub fn own_patches(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    out.sort();
    Ok(out)
}

fn apply_all(root: &Root, src: &Path, dir: &Path, logs: &Path) -> Result<()> {
    for p in own_patches(dir)? {
        apply(root, src, &p, logs)?;
    }
    Ok(())
}

/// Applies one patch (a host file, mounted read-only at /recipe) to the tree at /src.
fn apply(root: &Root, src: &Path, patch: &Path, logs: &Path) -> Result<()> {
    let dir = patch.parent().context("patch path")?;
    let name = patch
        .file_name()
        .context("patch name")?
        .to_string_lossy()
        .into_owned();
    let step = root
        .step()
        .rw(src, "/src")
        .ro(dir, "/recipe")
        .cwd("/src")
        .shifted_clock();
    let mut c = step.command("patch")?;
    c.args(["-p1", "-s", "-N", "--no-backup-if-mismatch", "-i"])
        .arg(format!("/recipe/{name}"));
    crate::builders::run_logged(&mut c, logs, &format!("patch {name}"))
}

/// Patch names of a quilt `series` file, in order (comments, blank lines and options out).
fn series_entries(series: &str) -> Vec<&str> {
    series
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn series_keeps_patch_names_in_order() {
        let series = "# upstream\nv7.2.1.diff\n\nv7.2.2.diff -p1\n  # gone.diff\nfix.patch # why\n";
        assert_eq!(
            super::series_entries(series),
            ["v7.2.1.diff", "v7.2.2.diff", "fix.patch"]
        );
    }
}
