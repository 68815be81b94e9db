//! The `rust` and `c` kinds: stub domains on the `stubrt` runtime. One freestanding x86_64
//! ELF serves both `x86_64-pv` and `x86_64-pvh` (it carries both entry points);
//! `x86_32-pv` is a 32-bit PAE PV ELF from the same sources and linker script; `aarch64` is
//! an arm64 Image, made from its ELF with the cross binutils' objcopy and checked to be one
//! that Xen and libxl load.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Job;
use crate::buildenv::Root;
use crate::cache::Cache;
use crate::recipe::Kind;
use crate::variant::Variant;
use crate::workspace::Workspace;

const C_FLAGS: &[&str] = &[
    "-O2",
    "-ffreestanding",
    "-fno-stack-protector",
    "-fno-pic",
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
    // One read-write-execute segment is what the linker script asks for.
    "-Wl,--no-warn-rwx-segments",
];

/// How the build environment makes code for a variant.
struct Toolchain {
    /// The C compiler and linker driver.
    cc: &'static str,
    /// What it needs to make code for the variant.
    flags: &'static [&'static str],
    /// x86: kernel code must not use the red zone below the stack pointer, which an
    /// exception frame would overwrite.
    no_red_zone: bool,
    /// The runtime's linker script, inside the build environment.
    link_script: &'static str,
    /// The cross binutils' objcopy, for variants whose image is a raw binary (arm64 Image).
    objcopy: Option<&'static str>,
}

fn toolchain(variant: Variant) -> Toolchain {
    const X86_SCRIPT: &str = "/src/libs/stubrt/src/arch/x86/link.ld";
    match variant {
        Variant::X86_64Pv | Variant::X86_64Pvh => Toolchain {
            cc: "cc",
            flags: &["-mno-red-zone"],
            no_red_zone: true,
            link_script: X86_SCRIPT,
            objcopy: None,
        },
        Variant::X86_32Pv => Toolchain {
            cc: "cc",
            flags: &["-m32", "-march=i686", "-mno-red-zone"],
            no_red_zone: true,
            link_script: X86_SCRIPT,
            objcopy: None,
        },
        Variant::Aarch64 => Toolchain {
            cc: "aarch64-linux-gnu-gcc",
            flags: &[],
            no_red_zone: false,
            link_script: "/src/libs/stubrt/src/arch/aarch64/link.ld",
            objcopy: Some("aarch64-linux-gnu-objcopy"),
        },
    }
}

pub fn build(job: &Job) -> Result<()> {
    let tools = toolchain(job.variant);
    let out = job.output();
    // The linked ELF: the image itself, or what objcopy makes it from.
    let elf = match tools.objcopy {
        Some(_) => job.staging.join("image.elf"),
        None => out.clone(),
    };
    match job.recipe.kind {
        Kind::Rust => {
            let bin = cargo_image(job, &job.recipe.name)?;
            fs_err::copy(&bin, &elf).with_context(|| format!("copying {}", bin.display()))?;
        }
        Kind::C => build_c(job, &elf)?,
        other => bail!("not a runtime kind: {other}"),
    }
    if let Some(objcopy) = tools.objcopy {
        let rel = |p: &Path| -> Result<PathBuf> {
            Ok(Path::new("/out").join(p.strip_prefix(&job.staging).context("output path")?))
        };
        let mut cmd = job
            .root
            .step()
            .rw(&job.staging, "/out")
            .cwd("/out")
            .command(objcopy)?;
        cmd.args(["-O", "binary"]).arg(rel(&elf)?).arg(rel(&out)?);
        super::run_logged(&mut cmd, &job.staging, "objcopy").context("making the Image")?;
        let image = fs_err::read(&out)?;
        check_arm64_image(&image).with_context(|| format!("{}", out.display()))?;
    }
    Ok(())
}

/// Where Xen (dom0less) and libxl load an arm64 Image: `text_offset` above the start of
/// guest RAM (`GUEST_RAM0_BASE`); the runtime links its images for this place.
const ARM64_LOAD_ADDRESS: u64 = 0x4000_0000;

/// Checks that `image` is an arm64 Image as Xen and libxl load it: the header's magic,
/// little-endian, a `text_offset` that keeps it at the address it is linked for (0), and an
/// `image_size` that covers the file.
pub(crate) fn check_arm64_image(image: &[u8]) -> Result<()> {
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(image.get(at..at + 8)?.try_into().ok()?))
    };
    let (Some(text_offset), Some(size), Some(flags)) = (word(8), word(16), word(24)) else {
        bail!(
            "not an arm64 Image: {} bytes, shorter than its header",
            image.len()
        );
    };
    if image.get(56..60) != Some(b"ARM\x64".as_slice()) {
        bail!("not an arm64 Image: no ARM\\x64 magic at offset 56");
    }
    if flags & 1 != 0 {
        bail!("the arm64 Image is big-endian: Xen loads only little-endian ones");
    }
    if text_offset != 0 {
        bail!("the arm64 Image has text_offset {text_offset:#x}: it is linked for {ARM64_LOAD_ADDRESS:#x} exactly");
    }
    if size < image.len() as u64 {
        bail!(
            "the arm64 Image's image_size ({size}) is smaller than the file ({} bytes)",
            image.len()
        );
    }
    Ok(())
}

/// The compiler flags and environment of a variant's image build (`RUSTFLAGS`, and the
/// variables that make the runtime's image configuration and, for cross builds, name the
/// C compiler the `cc` crate uses).
fn rust_env(variant: Variant) -> (Vec<String>, Vec<(String, String)>) {
    let tools = toolchain(variant);
    let mut flags = vec![
        "-C relocation-model=static".to_string(),
        "--remap-path-prefix=/src=.".to_string(),
    ];
    if tools.no_red_zone {
        flags.push("-C no-redzone=yes".to_string());
    }
    let mut vars = vec![("STUBRT_IMAGE".to_string(), "1".to_string())];
    if tools.cc != "cc" {
        // A cross build: rustc links with the cross gcc and its GNU ld (the target's default
        // linker is rust-lld, which the toolchain lacks), the C parts (stubrt-c's printf)
        // compile with it.
        flags.push(format!(
            "-C linker={} -C linker-flavor=gcc -C link-arg=-fuse-ld=bfd",
            tools.cc
        ));
        let target = variant.rust_target().replace('-', "_");
        vars.push((format!("CC_{target}"), tools.cc.to_string()));
        vars.push((format!("AR_{target}"), tools.cc.replace("-gcc", "-ar")));
    }
    (flags, vars)
}

/// `cargo build` of one package for the image target; returns the artifact path on the
/// host (the target folder is mounted at `/build` in the build environment).
fn cargo_image(job: &Job, package: &str) -> Result<PathBuf> {
    let (flags, vars) = rust_env(job.variant);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (mut cargo, dir) = job.cargo_image(package, "image", &flags, &vars)?;
    super::run_logged(&mut cargo, &job.staging, &format!("cargo {package}"))?;
    let lib = dir.join(format!("lib{}.a", package.replace('-', "_")));
    let bin = dir.join(package);
    Ok(if bin.is_file() { bin } else { lib })
}

/// The packages of the runtime's image configuration that clippy checks.
const LINTED: &[&str] = &["stubrt", "stubrt-c", "rust-stubdom"];

/// Clippy of the runtime's image configuration (`cfg(stubrt_image)`: the boot code,
/// hypercalls and most unsafe blocks, code the host build never compiles), as each
/// variant's image build compiles it, by the build environment's clippy. Returns how many
/// targets were checked.
pub fn clippy(ws: &Workspace, cache: &Cache, root: &Root) -> Result<usize> {
    let mut targets: Vec<Variant> = Vec::new();
    for v in Variant::ALL {
        if !targets.iter().any(|t| t.rust_target() == v.rust_target()) {
            targets.push(v);
        }
    }
    for &variant in &targets {
        let (rustflags, vars) = rust_env(variant);
        let cargo = super::ImageCargo {
            ws,
            cache,
            root,
            variant,
            target_dir: ws.target.join("image-clippy"),
            epoch: super::DEFAULT_SOURCE_DATE_EPOCH,
            rustflags,
            vars,
        };
        let packages: Vec<&str> = LINTED.iter().flat_map(|p| ["-p", p]).collect();
        let what = format!(
            "clippy of the image configuration for {}",
            variant.rust_target()
        );
        crate::ui::step(&what);
        let status = cargo
            .command("clippy", &packages, &["-D", "warnings"])?
            .status()
            .with_context(|| format!("running {what}"))?;
        if !status.success() {
            bail!("{what} failed");
        }
    }
    Ok(targets.len())
}

/// A C stub domain: every `*.c` of the recipe folder, compiled freestanding and linked with
/// the runtime's C API library and the runtime's linker script, in the build environment
/// (the checkout at `/src`, the staging folder at `/out`, the image target folder at
/// `/build`).
fn build_c(job: &Job, out: &Path) -> Result<()> {
    let tools = toolchain(job.variant);
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
        let mut cc = step().command(tools.cc)?;
        cc.args(C_FLAGS)
            .args(tools.flags)
            .arg("-ffile-prefix-map=/src=.")
            .args(["-I", "/src/libs/stubrt-c/include", "-c"])
            .arg(&rel)
            .args(["-o", &obj]);
        super::run_logged(&mut cc, &job.staging, &format!("cc {src}"))
            .with_context(|| format!("compiling {}", rel.display()))?;
        objects.push(obj);
    }
    let out_rel = out.strip_prefix(&job.staging).context("output path")?;
    let mut link = step().command(tools.cc)?;
    link.args(LINK_FLAGS)
        .args(tools.flags)
        .args(["-T", tools.link_script, "-o"])
        .arg(Path::new("/out").join(out_rel))
        .args(&objects)
        .arg(format!("/build/{lib_name}"));
    super::run_logged(&mut link, &job.staging, "link").context("linking")
}

#[cfg(test)]
mod tests {
    use super::check_arm64_image;

    fn header(text_offset: u64, size: u64, flags: u64, magic: &[u8; 4]) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(magic);
        h
    }

    #[test]
    fn arm64_images_are_checked() {
        assert!(check_arm64_image(&header(0, 4096, 2, b"ARM\x64")).is_ok());
        for (image, what) in [
            (header(0, 4096, 2, b"ARM\x00"), "magic"),
            (header(0, 4096, 3, b"ARM\x64"), "big-endian"),
            (header(0x80000, 4096, 2, b"ARM\x64"), "text_offset"),
            (header(0, 16, 2, b"ARM\x64"), "smaller than the file"),
            (vec![0; 20], "shorter than its header"),
        ] {
            let err = format!("{:#}", check_arm64_image(&image).unwrap_err());
            assert!(err.contains(what), "{err}");
        }
    }
}
