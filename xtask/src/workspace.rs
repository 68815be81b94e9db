//! The checkout: where it is, its target folder, its recipes and its lock.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::lock::{Blob, Lock};
use crate::recipe::{self, Recipe};

pub struct Workspace {
    pub root: PathBuf,
    pub target: PathBuf,
    pub recipes: Vec<Recipe>,
    pub lock: Lock,
}

/// The workspace root, from cargo's own view of the workspace.
pub fn root() -> Result<PathBuf> {
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("running `cargo metadata` to find the workspace")?;
    Ok(meta.workspace_root.into())
}

impl Workspace {
    pub fn load() -> Result<Workspace> {
        let meta = cargo_metadata::MetadataCommand::new()
            .no_deps()
            .exec()
            .context("running `cargo metadata` to find the workspace")?;
        let root: PathBuf = meta.workspace_root.into();
        let target: PathBuf = meta.target_directory.into();
        let recipes = recipe::load_all(&root)?;
        let lock = Lock::load(&root)?;
        let ws = Workspace {
            root,
            target,
            recipes,
            lock,
        };
        ws.check_inputs()?;
        Ok(ws)
    }

    /// Every recipe input and build environment must name an entry of inputs.lock.
    fn check_inputs(&self) -> Result<()> {
        for r in &self.recipes {
            for input in &r.inputs {
                self.lock
                    .resolve(input)
                    .with_context(|| format!("{}: input `{input}`", r.path.display()))?;
            }
            for (release, env) in &r.xen_releases {
                self.lock.env(env).with_context(|| {
                    format!("{}: xen-releases: Xen {release}", r.path.display())
                })?;
            }
        }
        Ok(())
    }

    /// The files to fetch for the named recipes, or every pinned input when none is named.
    pub fn blobs_for(&self, names: &[String]) -> Result<Vec<Blob>> {
        if names.is_empty() {
            return self.lock.all_blobs();
        }
        let mut out = Vec::new();
        for r in recipe::select(&self.recipes, names)? {
            out.extend(self.build_blobs(r, None)?);
        }
        Ok(out)
    }

    /// Every file `cargo xtask build NAME [--xen-release R]` reads: the build environment
    /// every recipe builds in, the recipe's inputs, and the environment of each Xen release
    /// built (all of the recipe's when `release` is `None`). `nix/inputs.nix` follows the
    /// same rules; the flake's evaluation check compares the two.
    pub fn build_blobs(&self, r: &Recipe, release: Option<&str>) -> Result<Vec<Blob>> {
        let mut out = self.lock.env(crate::buildenv::BUILD)?.blobs()?;
        out.extend(self.recipe_blobs(r)?);
        for (rel, env) in &r.xen_releases {
            if release.is_none_or(|want| want == rel) {
                out.extend(self.lock.env(env)?.blobs()?);
            }
        }
        // Each file once (a recipe's deb may also be in an environment), in a fixed order.
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|b| seen.insert(b.sha256.clone()));
        out.sort();
        Ok(out)
    }

    pub fn recipe_blobs(&self, r: &Recipe) -> Result<Vec<Blob>> {
        let mut out = Vec::new();
        for input in &r.inputs {
            out.extend(self.lock.resolve(input)?.blobs()?);
        }
        Ok(out)
    }
}

/// The checkout's files, relative to `root`, sorted: those git knows (tracked, and
/// untracked but not ignored), or every file but `target/` and `.git/` outside a git
/// checkout.
pub fn files(root: &Path) -> Result<Vec<PathBuf>> {
    let listed = std::process::Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success());
    let mut files: Vec<PathBuf> = match listed {
        Some(o) => o
            .stdout
            .split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| PathBuf::from(String::from_utf8_lossy(f).into_owned()))
            // Deleted but still in the index.
            .filter(|rel| root.join(rel).is_file())
            .collect(),
        None => {
            let mut out = Vec::new();
            walk(root, root, &mut out)?;
            out
        }
    };
    files.sort();
    files.dedup();
    Ok(files)
}

/// Copies the checkout's [`files`] to `to`.
pub fn copy_to(root: &Path, to: &Path) -> Result<()> {
    for rel in files(root)? {
        let src = root.join(&rel);
        let dst = to.join(&rel);
        fs_err::create_dir_all(dst.parent().context("file path")?)?;
        fs_err::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
    }
    Ok(())
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in fs_err::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        if e.file_type()?.is_dir() {
            walk(base, &e.path(), out)?;
        } else {
            out.push(e.path().strip_prefix(base)?.to_path_buf());
        }
    }
    Ok(())
}
