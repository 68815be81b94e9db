//! The `rust` and `c` kinds: stub domains on the `stubrt` runtime. One freestanding x86_64
//! ELF serves both `x86_64-pv` and `x86_64-pvh` (it carries both entry points).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::Job;
use crate::recipe::Kind;
use crate::variant::Variant;

const C_FLAGS: &[&str] = &[
    "-O2",
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-pic",
    "-mno-red-zone",
    "-nostdlib",
    "-fno-asynchronous-unwind-tables",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wall",
    "-Wextra",
    "-Werror",
];

const LINK_FLAGS: &[&str] = &[
    "-nostartfiles",
    "-nostdlib",
    "-static",
    "-no-pie",
    "-Wl,--build-id=none",
    "-Wl,--gc-sections",
    "-Wl,--strip-all",
];

pub fn build(job: &Job) -> Result<()> {
    match job.variant {
        Variant::X86_64Pv | Variant::X86_64Pvh => {}
        other => bail!("the runtime supports x86_64-pv and x86_64-pvh, not {other}"),
    }
    let out = job.output();
    match job.recipe.kind {
        Kind::Rust => {
            let bin = cargo_image(job, &job.recipe.name)?;
            std::fs::copy(&bin, &out).with_context(|| format!("copying {}", bin.display()))?;
        }
        Kind::C => build_c(job, &out)?,
        other => bail!("not a runtime kind: {other}"),
    }
    Ok(())
}

/// `cargo build` of one package for the image target; returns the artifact path.
fn cargo_image(job: &Job, package: &str) -> Result<PathBuf> {
    let root = &job.ws.root;
    let mut flags = vec![
        "-C relocation-model=static".to_string(),
        "-C no-redzone=yes".to_string(),
        format!("--remap-path-prefix={}=.", root.display()),
    ];
    if let Some(home) = std::env::var_os("HOME").filter(|h| h.len() > 1) {
        flags.push(format!(
            "--remap-path-prefix={}=~",
            Path::new(&home).display()
        ));
    }
    let (mut cargo, dir) = job.cargo_image(package, "image", &flags);
    let status = cargo
        .env("STUBRT_IMAGE", "1")
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build of `{package}` for the image target failed");
    }
    let lib = dir.join(format!("lib{}.a", package.replace('-', "_")));
    let bin = dir.join(package);
    Ok(if bin.is_file() { bin } else { lib })
}

/// A C stub domain: every `*.c` of the recipe folder, compiled freestanding and linked with
/// the runtime's C API library and the runtime's linker script.
fn build_c(job: &Job, out: &Path) -> Result<()> {
    let lib = cargo_image(job, "stubrt-c")?;
    let root = &job.ws.root;
    let include = root.join("libs/stubrt-c/include");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&job.recipe.dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        bail!("{}: no .c files", job.recipe.dir.display());
    }
    let mut objects = Vec::new();
    for src in &sources {
        let obj = job
            .staging
            .join(src.file_name().context("source name")?)
            .with_extension("o");
        // Relative paths and a mapped prefix keep the build folder out of the object.
        let rel = src.strip_prefix(root).unwrap_or(src);
        run(Command::new("cc")
            .args(C_FLAGS)
            .arg(format!("-ffile-prefix-map={}=.", root.display()))
            .arg("-I")
            .arg(&include)
            .arg("-c")
            .arg(rel)
            .arg("-o")
            .arg(&obj)
            .current_dir(root))
        .with_context(|| format!("compiling {}", rel.display()))?;
        objects.push(obj);
    }
    run(Command::new("cc")
        .args(LINK_FLAGS)
        .arg("-T")
        .arg(root.join("libs/stubrt/link.ld"))
        .arg("-o")
        .arg(out)
        .args(&objects)
        .arg(&lib))
    .context("linking")
}

fn run(cmd: &mut Command) -> Result<()> {
    let o = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !o.status.success() {
        bail!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(())
}
