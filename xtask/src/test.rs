//! `cargo xtask test`: everything CI checks, in the order that fails fastest: formatting,
//! clippy, the workspace tests (with the pinned Xen headers for the ABI check), then the
//! boot tests of every recipe.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::cache::Cache;
use crate::doctor;
use crate::fetch;
use crate::ui;
use crate::workspace::Workspace;

/// Payloads quick enough to build twice on every test run (`cargo xtask repro` checks all).
const FAST: [&str; 2] = ["rust-stubdom", "c-stubdom"];

/// The pinned package whose headers the hypervisor ABI crate is checked against.
const XEN_HEADERS: &str = "libxen-dev";

pub fn run(ws: &Workspace) -> Result<()> {
    doctor::ensure(&ws.needs())?;
    let sandbox_checks = crate::sandbox::check(ws)?;
    let include = xen_headers(ws)?;
    cargo(
        ws,
        &["fmt", "--all", "--check"],
        &[],
        "formatting (run `cargo fmt --all`)",
    )?;
    cargo(
        ws,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
        "clippy",
    )?;
    let include = include.display().to_string();
    cargo(
        ws,
        &["test", "--workspace"],
        &[("XEN_INCLUDE_DIR", include.as_str())],
        "workspace tests",
    )?;
    ui::step("boot tests");
    let boots = crate::boot::run(
        ws,
        &[],
        &crate::boot::Flags {
            variant: None,
            keep: false,
            offline: false,
        },
    )?;
    ui::step("template: new-stubdom in a copy of the workspace, then build and boot-test it");
    template(ws)?;
    ui::step("reproducibility of the fast payloads and the boot machine");
    let identical = crate::repro::run(ws, &FAST.map(String::from))?;
    // The sandbox checks, fmt, clippy and the workspace tests, each boot test, the template
    // check, each artifact found identical: every one of them a check that ran and passed.
    println!(
        "checks: {} passed, 0 failed",
        sandbox_checks + 3 + boots.len() + 1 + identical
    );
    Ok(())
}

/// The template works for a team that uses it: in a throw-away copy of the workspace,
/// `new-stubdom` makes a stub domain that builds and passes its boot tests.
fn template(ws: &Workspace) -> Result<()> {
    let copy = ws.target.join("template-check");
    crate::fsx::remove_dir_if_exists(&copy)?;
    crate::workspace::copy_to(&ws.root, &copy)?;
    let me = std::env::current_exe().context("finding the xtask binary")?;
    let target = copy.join("target");
    for args in [
        &["new-stubdom", "team-demo"][..],
        &["build", "team-demo"],
        &["boot-test", "team-demo"],
    ] {
        let status = std::process::Command::new(&me)
            .args(args)
            .current_dir(&copy)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .with_context(|| format!("running xtask {}", args.join(" ")))?;
        if !status.success() {
            bail!(
                "template check: `cargo xtask {}` failed in {}",
                args.join(" "),
                copy.display()
            );
        }
    }
    crate::fsx::remove_dir_if_exists(&copy)?;
    Ok(())
}

/// Fetches and unpacks the pinned Xen headers; returns their include folder.
fn xen_headers(ws: &Workspace) -> Result<PathBuf> {
    let cache = Cache::open()?;
    let blobs = ws.lock.resolve(XEN_HEADERS)?.blobs()?;
    fetch::ensure(&cache, &blobs, &fetch::Flags { offline: false })?;
    let dir = cache.unpacked_deb(&blobs[0])?.join("usr/include");
    if !dir.join("xen/xen.h").is_file() {
        bail!("{XEN_HEADERS} has no usr/include/xen/xen.h: is the pin right?");
    }
    Ok(dir)
}

fn cargo(ws: &Workspace, args: &[&str], env: &[(&str, &str)], what: &str) -> Result<()> {
    ui::step(&format!("cargo {}", args.join(" ")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&ws.root)
        .status()
        .with_context(|| format!("running cargo {}", args[0]))?;
    if !status.success() {
        bail!("{what} failed");
    }
    Ok(())
}
