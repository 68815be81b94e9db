//! The `pvgrub` kind: GRUB 2 from the pinned Debian `grub2` source (upstream tarball plus
//! Debian's patch series, which carries the security fixes, plus this project's patches),
//! built for one Xen platform per variant, with the recipe's embedded configuration.
//!
//! Reproducible because: the source path and build path are mapped out of every object
//! (`-ffile-prefix-map`), the memdisk is written by the project's tar writer, the image is
//! gzip'd without name or time, and the locale and time zone are fixed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use stubdoms_archive::{Format, Tree};

use super::Job;
use crate::fsx;
use crate::variant::Variant;

/// (configure `--with-platform`, `--target`, grub-mkimage `-O`) of a variant.
fn platform(v: Variant) -> Result<(&'static str, &'static str, &'static str)> {
    Ok(match v {
        Variant::X86_64Pv => ("xen", "x86_64", "x86_64-xen"),
        Variant::X86_32Pv => ("xen", "i386", "i386-xen"),
        Variant::X86_64Pvh => ("xen_pvh", "i386", "i386-xen_pvh"),
        Variant::Aarch64 => {
            bail!("GRUB has no Xen platform for aarch64 (arm64 guests boot through EFI)")
        }
    })
}

pub fn build(job: &Job) -> Result<()> {
    let (with_platform, target, format) = platform(job.variant)?;
    let src = prepared_source(job)?;
    let build = job.staging.join("build");
    fs_err::create_dir_all(&build)?;
    // The prepared source at /src (read-only), the build folder at /build, the recipe at
    // /recipe: fixed paths, mapped to short ones in the objects.
    let maps = "-ffile-prefix-map=/src=/grub -ffile-prefix-map=/build=/build";
    let step = || {
        job.root
            .step()
            .ro(&src, "/src")
            .rw(&build, "/build")
            .ro(&job.recipe.dir, "/recipe")
            .rw(&job.staging, "/out")
            .cwd("/build")
            .env("SOURCE_DATE_EPOCH", job.epoch.to_string())
            // GRUB appends CFLAGS to its own target flags: nothing must make the
            // freestanding -Os build into something that crashes under Xen.
            .env("CFLAGS", "")
            .shifted_clock()
    };
    let mut configure = step().command("/src/configure")?;
    configure
        .arg(format!("--with-platform={with_platform}"))
        .arg(format!("--target={target}"))
        .args([
            "--prefix=/usr",
            "--disable-werror",
            "--disable-nls",
            "--disable-grub-mkfont",
            "--disable-grub-themes",
            "--disable-grub-mount",
            "--disable-device-mapper",
            "--disable-liblzma",
            "--disable-libzfs",
            "--disable-efiemu",
            "--disable-grub-emu-sdl",
            "--disable-grub-emu-pci",
            "--disable-dependency-tracking",
        ])
        .arg(format!("HOST_CFLAGS=-O2 {maps}"))
        .arg(format!("TARGET_CFLAGS=-Os {maps}"));
    super::run_logged(&mut configure, &job.staging, "configure")?;
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    for args in [
        vec![jobs.as_str(), "-C", "grub-core"],
        vec![jobs.as_str(), "-C", "grub-core/lib/gnulib"],
        vec![jobs.as_str(), "grub-mkimage"],
    ] {
        let mut make = step().command("make")?;
        make.args(&args);
        super::run_logged(
            &mut make,
            &job.staging,
            &format!("make {}", args[1..].join(" ")),
        )?;
    }

    // The embedded configuration, as a deterministic tar for grub-mkimage -m.
    let dir = &job.recipe.dir;
    let mut memdisk = Tree::new();
    memdisk.add_host_dir("", dir.join("memdisk"))?;
    let memdisk_tar = job.staging.join("memdisk.tar");
    fsx::write_atomic(&memdisk_tar, &memdisk.to_bytes(Format::Tar, job.epoch)?)?;
    let mut modules = read_modules(&dir.join("modules.txt"))?;
    if with_platform == "xen" {
        // xen_ls/xen_cat: the PV platforms' way to look at xenstore, for debugging a guest.
        modules.push("lsxen".into());
    }
    let image = job.staging.join("image");
    let mut mkimage = step().command("/build/grub-mkimage")?;
    mkimage
        .args(["-O", format, "-d", "/build/grub-core"])
        .args(["-c", "/recipe/bootstrap.cfg", "-m", "/out/memdisk.tar"])
        .args(["-p", "(memdisk)/pvgrub", "-o", "/out/image"])
        .args(&modules);
    super::run_logged(&mut mkimage, &job.staging, "grub-mkimage")?;
    let bytes = fs_err::read(&image)?;
    check_image(&bytes, job.variant)?;
    fsx::write_atomic(&job.output(), &stubdoms_archive::gzip::compress(&bytes)?)?;
    Ok(())
}

/// Words of `modules.txt`, without comments.
fn read_modules(path: &Path) -> Result<Vec<String>> {
    let text =
        fs_err::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .map(str::to_string)
        .collect())
}

/// A Xen guest image of the right class, with the ELF notes Xen's domain builder needs.
fn check_image(bytes: &[u8], variant: Variant) -> Result<()> {
    let elf = goblin::elf::Elf::parse(bytes).context("grub-mkimage did not write an ELF image")?;
    let want64 = variant == Variant::X86_64Pv;
    if elf.is_64 != want64 {
        bail!(
            "the {variant} image is ELF{}, expected ELF{}",
            if elf.is_64 { 64 } else { 32 },
            if want64 { 64 } else { 32 }
        );
    }
    let notes = xen_notes(&elf, bytes);
    // XEN_ELFNOTE_PHYS32_ENTRY (18) for PVH; XEN_ELFNOTE_ENTRY (1) or a loader for PV.
    let need: &[u32] = match variant {
        Variant::X86_64Pvh => &[18],
        _ => &[6, 5], // XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_XEN_VERSION
    };
    for n in need {
        if !notes.contains(n) {
            bail!("the {variant} image lacks Xen ELF note {n} (has {notes:?})");
        }
    }
    Ok(())
}

/// The types of the "Xen" ELF notes, read from the PT_NOTE segments. Parsed by hand and
/// bounded: GRUB writes its 32-bit PAE note with a wrong size, and a generic note iterator
/// must not stop (or spin) on it.
fn xen_notes(elf: &goblin::elf::Elf, bytes: &[u8]) -> Vec<u32> {
    let word = |at: usize| -> Option<u32> {
        let b = bytes.get(at..at + 4)?;
        Some(if elf.little_endian {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        })
    };
    let mut out = Vec::new();
    for ph in elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == goblin::elf::program_header::PT_NOTE)
    {
        let (mut at, end) = (ph.p_offset as usize, (ph.p_offset + ph.p_filesz) as usize);
        while at + 12 <= end {
            let (Some(namesz), Some(descsz), Some(kind)) = (word(at), word(at + 4), word(at + 8))
            else {
                break;
            };
            let name_at = at + 12;
            let desc_at = name_at + (namesz as usize).next_multiple_of(4);
            if bytes.get(name_at..name_at + namesz as usize) == Some(b"Xen\0".as_slice()) {
                out.push(kind);
            }
            at = desc_at + (descsz as usize).next_multiple_of(4);
        }
    }
    out
}

/// Bumped when [`prepare_into`] changes what a prepared source tree holds.
const PREP_VERSION: &str = "grub-prep-1";

/// The upstream tarball with Debian's patch series and the recipe's patches applied and the
/// build system regenerated; kept in the cache, keyed by everything that went in, and shared
/// by all three platforms.
fn prepared_source(job: &Job) -> Result<PathBuf> {
    let patches = job.recipe.dir.join("patches");
    let mut k = crate::key::Key::new(PREP_VERSION);
    for b in &job.inputs {
        k.field("input", &b.sha256);
    }
    k.field("patches", super::key::tree_hash(&patches)?);
    // autogen's output depends on the autotools of the build environment.
    k.field("root", &job.root.key);
    let folder = format!("grub2-{}", &k.finish()[..16]);
    if !job.cache.root().join("prepared").join(&folder).is_dir() {
        crate::ui::step("pvgrub: preparing the GRUB source (Debian's patch series, autogen)");
    }
    let dir = job.cache.stored("prepared", &folder, false, |tmp| {
        prepare_into(job, &tmp.join("grub"))
    })?;
    let src = dir.join("grub");
    Ok(src)
}

fn prepare_into(job: &Job, src: &Path) -> Result<()> {
    let (cache, inputs) = (job.cache, &job.inputs);
    let find = |suffix: &str| {
        inputs
            .iter()
            .find(|b| b.path.ends_with(suffix))
            .with_context(|| format!("the grub2 source pin has no *{suffix}"))
    };
    let orig = cache.get(find(".orig.tar.xz")?)?;
    let debian = cache.get(find(".debian.tar.xz")?)?;
    let patches = job.recipe.dir.join("patches");
    crate::debsrc::unpack_patched(job.root, &orig, &debian, Some(&patches), src, &job.staging)?;
    let step = || job.root.step().rw(src, "/src").cwd("/src").shifted_clock();
    let mut autogen = step().env("PYTHON", "python3").command("./autogen.sh")?;
    super::run_logged(&mut autogen, &job.staging, "autogen.sh")
}
