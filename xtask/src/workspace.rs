//! The checkout: where it is, its target folder, its recipes and its lock.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::doctor::Need;
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

    /// Every recipe input must name an entry of inputs.lock.
    fn check_inputs(&self) -> Result<()> {
        for r in &self.recipes {
            for input in &r.inputs {
                self.lock
                    .resolve(input)
                    .with_context(|| format!("{}: input `{input}`", r.manifest.display()))?;
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
            out.extend(self.recipe_blobs(r)?);
        }
        Ok(out)
    }

    pub fn recipe_blobs(&self, r: &Recipe) -> Result<Vec<Blob>> {
        let mut out = Vec::new();
        for input in &r.inputs {
            out.extend(self.lock.resolve(input)?.blobs()?);
        }
        Ok(out)
    }

    /// What the host must provide for every recipe, the boot tests and the test suite.
    pub fn needs(&self) -> Vec<Need> {
        let mut needs: Vec<Need> = Vec::new();
        for r in &self.recipes {
            if !needs.contains(&Need::Kind(r.kind)) {
                needs.push(Need::Kind(r.kind));
            }
        }
        needs.push(Need::BootTest);
        needs.push(Need::Tests);
        needs
    }
}
