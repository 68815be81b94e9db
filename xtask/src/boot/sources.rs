//! File sources of scenarios: what a recipe's boot test names (`artifact`,
//! `artifact:NAME[/FILE][@VARIANT]`, `machine:guest-kernel`, `deb:PKG:/path`, a recipe file) turned
//! into host paths, and which recipes a test needs built first.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::machine::Machine;
use crate::cache::Cache;
use crate::fetch;
use crate::recipe::{self, BootTest};
use crate::workspace::Workspace;

/// Recipes whose images a test boots or puts on a disk.
pub fn artifact_refs(t: &BootTest) -> Vec<String> {
    let mut out = Vec::new();
    let mut refer = |src: &str| {
        if src == "artifact" {
            out.push(t.recipe.clone());
        } else if let Some(name) = src.strip_prefix("artifact:") {
            let name = name.split(['/', '@']).next().unwrap_or(name);
            out.push(name.to_string());
        }
    };
    if let Some(k) = default_kernel(t) {
        refer(k);
    }
    if let Some(r) = &t.ramdisk {
        refer(r);
    }
    for src in t.xl_files.values().chain(t.esp_files.values()) {
        refer(src);
    }
    for d in &t.disks {
        for src in d.files.values() {
            refer(src);
        }
    }
    out
}

/// The scenario's kernel source: its own, else the image under test; none for an HVM guest
/// (it boots its firmware) or an ESP (its configuration names its kernels).
pub fn default_kernel(t: &BootTest) -> Option<&str> {
    match (&t.kernel, t.guest_type) {
        (Some(k), _) => Some(k),
        (None, _) if t.mode == recipe::BootMode::Efi => None,
        (None, Some(recipe::GuestType::Hvm)) => None,
        (None, _) => Some("artifact"),
    }
}

/// Turns a file source of a scenario into a host path. The forms:
/// `artifact` (this recipe's image for the scenario's variant), `artifact:NAME`,
/// `artifact:NAME/FILE` (one of the files a recipe's variant installs), either with
/// `@VARIANT` for another variant's (`artifact:pvgrub@x86_32-pv`),
/// `machine:guest-kernel` / `machine:guest-initrd` (the Debian kernel and a tiny busybox
/// initramfs), `machine:dom0-kernel` / `machine:dom0-initrd` (the machine's dom0), `deb:PACKAGE:/path` (a file from a pinned package; `*` allowed in the last
/// component), or a path relative to the recipe folder.
pub fn source(
    ws: &Workspace,
    cache: &Cache,
    m: &Machine,
    t: &BootTest,
    src: &str,
) -> Result<PathBuf> {
    let image = |name: &str| -> Result<PathBuf> {
        let (name, variant) = match name.split_once('@') {
            Some((n, v)) => (
                n,
                v.parse::<crate::variant::Variant>()
                    .map_err(|e| anyhow::anyhow!("`{src}`: {e}"))?,
            ),
            None => (name, t.variant),
        };
        let (recipe, file) = match name.split_once('/') {
            Some((r, f)) => (r, Some(f)),
            None => (name, None),
        };
        let r = ws
            .recipes
            .iter()
            .find(|r| r.name == recipe)
            .with_context(|| format!("no recipe named `{recipe}`"))?;
        let out = r
            .output(variant)
            .with_context(|| format!("recipe `{recipe}` does not build {variant}"))?;
        let file = match file {
            None => out.file.as_str(),
            Some(f) if out.files().any(|o| o == f) => f,
            Some(f) => bail!(
                "`{src}`: recipe `{recipe}` installs no `{f}` for {variant} (it installs {})",
                out.files().collect::<Vec<_>>().join(", ")
            ),
        };
        // An image built per Xen release: the machine's release's.
        let xen = (!r.xen_releases.is_empty()).then_some(m.spec.xen.as_str());
        Ok(ws
            .target
            .join("images")
            .join(crate::builders::image_path(variant, xen, file)))
    };
    if src == "artifact" {
        return image(&t.recipe);
    }
    if let Some(name) = src.strip_prefix("artifact:") {
        return image(name);
    }
    match src {
        "machine:guest-kernel" => return Ok(m.guest_kernel.clone()),
        "machine:guest-initrd" => return Ok(m.guest_initrd.clone()),
        "machine:dom0-kernel" => return Ok(m.dom0_kernel.clone()),
        "machine:dom0-initrd" => return Ok(m.dom0_initrd.clone()),
        _ => {}
    }
    if let Some(rest) = src.strip_prefix("deb:") {
        let (pkg, path) = rest
            .split_once(":/")
            .with_context(|| format!("`{src}`: expected deb:PACKAGE:/path"))?;
        let crate::lock::Resolved::Debs(debs) = ws.lock.resolve(pkg)? else {
            bail!("`{src}`: {pkg} is not a binary package");
        };
        fetch::ensure(
            cache,
            &debs.iter().map(|d| d.blob()).collect::<Result<Vec<_>>>()?,
            &fetch::Flags { offline: false },
        )?;
        for d in debs {
            let root = cache.unpacked_deb(&d.blob()?)?;
            if let Some(found) = glob_one(&root, path)? {
                return Ok(found);
            }
        }
        bail!("`{src}`: no such file in {pkg}");
    }
    // A recipe's files are in its folder, a machine's self-test files beside its self-test.
    let selftest_dir = || {
        m.spec
            .selftest
            .as_deref()
            .and_then(Path::parent)
            .map(|d| ws.root.join(d))
    };
    let dir = match ws.recipes.iter().find(|r| r.name == t.recipe) {
        Some(r) => r.dir.clone(),
        None => selftest_dir().with_context(|| format!("{}/{}: no folder", t.recipe, t.name))?,
    };
    let p = dir.join(src);
    if !p.is_file() {
        bail!(
            "{}/{}: file `{src}` not found in {}",
            t.recipe,
            t.name,
            dir.display()
        );
    }
    Ok(p)
}

/// `dir/path` where the last component may hold one `*`.
fn glob_one(root: &Path, path: &str) -> Result<Option<PathBuf>> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let dir = root.join(parent);
    let Some((pre, post)) = name.split_once('*') else {
        let p = dir.join(name);
        return Ok(p.is_file().then_some(p));
    };
    let Ok(entries) = fs_err::read_dir(&dir) else {
        return Ok(None);
    };
    let mut hits: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.len() >= pre.len() + post.len() && n.starts_with(pre) && n.ends_with(post)
        })
        .map(|e| e.path())
        .collect();
    hits.sort();
    match hits.len() {
        0 => Ok(None),
        1 => Ok(hits.pop()),
        _ => bail!("`{path}` matches several files: {hits:?}"),
    }
}
