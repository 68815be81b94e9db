//! The `rust` and `c` kinds: stub domains on the `stubrt` runtime. One freestanding x86_64
//! ELF serves both `x86_64-pv` and `x86_64-pvh` (it carries both entry points);
//! `x86_32-pv` is a 32-bit PAE PV ELF from the same sources and linker script.

use std::path::{Path, PathBuf};

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

/// What the C compiler and linker driver need to make code for the variant.
fn arch_flags(variant: Variant) -> Result<&'static [&'static str]> {
    Ok(match variant {
        Variant::X86_64Pv | Variant::X86_64Pvh => &[],
        Variant::X86_32Pv => &["-m32", "-march=i686"],
        other => bail!("the runtime supports x86_64-pv, x86_64-pvh and x86_32-pv, not {other}"),
    })
}

pub fn build(job: &Job) -> Result<()> {
    arch_flags(job.variant)?;
    let out = job.output();
    match job.recipe.kind {
        Kind::Rust => {
            let bin = cargo_image(job, &job.recipe.name)?;
            fs_err::copy(&bin, &out).with_context(|| format!("copying {}", bin.display()))?;
        }
        Kind::C => build_c(job, &out)?,
        other => bail!("not a runtime kind: {other}"),
    }
    Ok(())
}

/// `cargo build` of one package for the image target; returns the artifact path on the
/// host (the target folder is mounted at `/build` in the build environment).
fn cargo_image(job: &Job, package: &str) -> Result<PathBuf> {
    let flags = [
        "-C relocation-model=static".to_string(),
        "-C no-redzone=yes".to_string(),
        "--remap-path-prefix=/src=.".to_string(),
    ];
    let (mut cargo, dir) = job.cargo_image(package, "image", &flags, &[("STUBRT_IMAGE", "1")])?;
    super::run_logged(&mut cargo, &job.staging, &format!("cargo {package}"))?;
    let lib = dir.join(format!("lib{}.a", package.replace('-', "_")));
    let bin = dir.join(package);
    Ok(if bin.is_file() { bin } else { lib })
}

/// A C stub domain: every `*.c` of the recipe folder, compiled freestanding and linked with
/// the runtime's C API library and the runtime's linker script, in the build environment
/// (the checkout at `/src`, the staging folder at `/out`, the image target folder at
/// `/build`).
fn build_c(job: &Job, out: &Path) -> Result<()> {
    let lib = cargo_image(job, "stubrt-c")?;
    let root = &job.ws.root;
    let rel_dir = job
        .recipe
        .dir
        .strip_prefix(root)
        .context("the recipe folder is outside the checkout")?;
    let mut sources: Vec<String> = fs_err::read_dir(&job.recipe.dir)
        .with_context(|| format!("reading {}", job.recipe.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    sources.sort();
    if sources.is_empty() {
        bail!("{}: no .c files", job.recipe.dir.display());
    }
    let lib_dir = lib.parent().context("library path")?;
    let lib_name = lib.file_name().context("library name")?.to_string_lossy();
    let step = || {
        job.root
            .step()
            .ro(root, "/src")
            .ro(lib_dir, "/build")
            .rw(&job.staging, "/out")
            .cwd("/src")
            .shifted_clock()
    };
    let mut objects = Vec::new();
    for src in &sources {
        let obj = format!("/out/{}", Path::new(src).with_extension("o").display());
        let rel = rel_dir.join(src);
        let mut cc = step().command("cc")?;
        cc.args(C_FLAGS)
            .args(arch_flags(job.variant)?)
            .arg("-ffile-prefix-map=/src=.")
            .args(["-I", "/src/libs/stubrt-c/include", "-c"])
            .arg(&rel)
            .args(["-o", &obj]);
        super::run_logged(&mut cc, &job.staging, &format!("cc {src}"))
            .with_context(|| format!("compiling {}", rel.display()))?;
        objects.push(obj);
    }
    let out_rel = out.strip_prefix(&job.staging).context("output path")?;
    let mut link = step().command("cc")?;
    link.args(LINK_FLAGS)
        .args(arch_flags(job.variant)?)
        .args(["-T", "/src/libs/stubrt/link.ld", "-o"])
        .arg(Path::new("/out").join(out_rel))
        .args(&objects)
        .arg(format!("/build/{lib_name}"));
    super::run_logged(&mut link, &job.staging, "link").context("linking")
}
