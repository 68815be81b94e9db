//! `cargo xtask doctor`: what the host must give, and whether it does. Every tool, compiler
//! and library a build or a boot test uses comes from the pinned build environments, so the
//! host needs only Linux that can run a step in a root (as root, or with unprivileged user
//! namespaces) and the Rust toolchain that builds this driver. Also checked, because a run
//! needs them: a Debian mirror to fetch from (unless the cache already has everything) and
//! room in the cache.

use anyhow::{bail, Result};

use crate::cache::Cache;
use crate::mirror::Mirrors;

/// One requirement and what to do when it is not met.
struct Check {
    what: &'static str,
    result: Result<String>,
}

pub fn run() -> Result<()> {
    let checks = [
        Check {
            what: "Linux",
            result: linux(),
        },
        Check {
            what: "sandbox (build steps in their roots)",
            result: crate::sandbox::probe().map(str::to_string),
        },
        Check {
            what: "Rust toolchain (builds the driver)",
            result: rust(),
        },
        Check {
            what: "Debian mirror",
            result: Mirrors::discover().map(|m| format!("{} and {}", m.debian, m.security)),
        },
        Check {
            what: "cache",
            result: Cache::open()
                .map(|c| format!("{}{}", c.root().display(), crate::fsx::disk_hint(c.root()))),
        },
    ];
    let mut failed = 0;
    for c in &checks {
        match &c.result {
            Ok(how) => println!("ok       {:<38} {how}", c.what),
            Err(e) => {
                failed += 1;
                println!("MISSING  {:<38} {e:#}", c.what);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} host requirement(s) not met (see above for what to do)");
    }
    println!(
        "\nthe host has everything; every other tool comes from the pinned build environments"
    );
    Ok(())
}

fn linux() -> Result<String> {
    if !cfg!(target_os = "linux") {
        bail!("the build steps run in Linux namespaces: use a Linux host (or a Linux VM)");
    }
    let release = fs_err::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Ok(format!("kernel {}", release.trim()))
}

fn rust() -> Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(&cargo).arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        _ => bail!("`{cargo} --version` does not run: install Rust (rustup.rs or your distribution's cargo)"),
    }
}
