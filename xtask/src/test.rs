//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use anyhow::{bail, Context, Result};

use crate::doctor;
use crate::ui;
use crate::workspace::Workspace;

pub fn run(ws: &Workspace) -> Result<()> {
    doctor::ensure(&ws.needs())?;
    cargo(
        ws,
        &["fmt", "--all", "--check"],
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
        "clippy",
    )?;
    cargo(ws, &["test", "--workspace"], "workspace tests")?;
    Ok(())
}

fn cargo(ws: &Workspace, args: &[&str], what: &str) -> Result<()> {
    ui::step(&format!("cargo {}", args.join(" ")));
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .current_dir(&ws.root)
            .status()
            .with_context(|| format!("running cargo {}", args[0]))?;
    if !status.success() {
        bail!("{what} failed");
    }
    Ok(())
}
