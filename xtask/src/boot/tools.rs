//! The host-side tools of the boot tests (QEMU, mke2fs, sfdisk), run from the pinned
//! `bookworm-boot` environment like every build step: the cache is mounted read-only at
//! `/cache` and the target folder writable at `/work`, and host paths under either are
//! passed to the tools as those inside paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::buildenv::{self, Root};
use crate::cache::Cache;
use crate::workspace::Workspace;

pub struct Tools {
    root: Root,
    cache: PathBuf,
    target: PathBuf,
}

impl Tools {
    pub fn new(ws: &Workspace, cache: &Cache, offline: bool) -> Result<Tools> {
        Ok(Tools {
            root: buildenv::fetched_root(ws, cache, buildenv::BOOT, offline)?,
            cache: cache.root().to_path_buf(),
            target: ws.target.clone(),
        })
    }

    /// Where the host file `p` is inside the tools' sandbox.
    pub fn inside(&self, p: &Path) -> Result<String> {
        for (host, inside) in [(&self.target, "/work"), (&self.cache, "/cache")] {
            if let Ok(rel) = p.strip_prefix(host) {
                return Ok(format!("{inside}/{}", rel.display()));
            }
        }
        anyhow::bail!(
            "{} is neither in the cache ({}) nor in the target folder ({}): the boot tools cannot see it",
            p.display(),
            self.cache.display(),
            self.target.display()
        )
    }

    /// `program` of the boot environment, with the cache and the target folder mounted.
    pub fn command(&self, program: &str) -> Result<Command> {
        self.command_with(program, &[])
    }

    /// [`Tools::command`] with environment variables for the program.
    pub fn command_with(&self, program: &str, vars: &[(&str, &str)]) -> Result<Command> {
        let mut step = self
            .root
            .step()
            .ro(&self.cache, "/cache")
            .rw(&self.target, "/work")
            .cwd("/");
        for (name, value) in vars {
            step = step.env(name, *value);
        }
        step.command(program)
            .with_context(|| format!("preparing {program} from the boot environment"))
    }
}
