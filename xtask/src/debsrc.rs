//! A Debian source package made ready to build: the upstream tarball, `debian/` from the
//! Debian tarball, then the patches of `debian/patches/series` and the project's own
//! (`*.patch` of a folder, in name order) applied with the build environment's `patch`, each
//! logged on its own. Used for GRUB and for the test machines' Xen.

use std::path::Path;

use anyhow::Result;
use stubdoms_archive::ExtractOptions;

use crate::buildenv::Root;

/// Unpacks `orig` and `debian` into `src` and applies the series, then the `*.patch` files
/// of `ours` (a host folder, seen at /recipe). Patch logs go to `logs`.
pub fn unpack_patched(
    root: &Root,
    orig: &Path,
    debian: &Path,
    ours: Option<&Path>,
    src: &Path,
    logs: &Path,
) -> Result<()> {
    let strip = ExtractOptions {
        strip_components: 1,
        compression: None,
    };
    stubdoms_archive::extract_tarball(orig, src, &strip)?;
    stubdoms_archive::extract_tarball(debian, &src.join("debian"), &strip)?;
    let series = fs_err::read_to_string(src.join("debian/patches/series"))?;
    let mut list: Vec<String> = series
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| format!("/src/debian/patches/{l}"))
        .collect();
    if let Some(dir) = ours {
        let mut names: Vec<String> = fs_err::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "patch"))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        list.extend(names.iter().map(|n| format!("/recipe/{n}")));
    }
    for p in &list {
        let mut step = root.step().rw(src, "/src").cwd("/src").shifted_clock();
        if let Some(dir) = ours {
            step = step.ro(dir, "/recipe");
        }
        let mut c = step.command("patch")?;
        c.args(["-p1", "-s", "-N", "--no-backup-if-mismatch", "-i", p]);
        let name = p.rsplit('/').next().unwrap_or(p);
        crate::builders::run_logged(&mut c, logs, &format!("patch {name}"))?;
    }
    Ok(())
}
