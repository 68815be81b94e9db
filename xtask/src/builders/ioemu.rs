//! The `ioemu` kind: the Linux device-model stub domain of libxl (`qemu-stubdom-linux-kernel`
//! and `qemu-stubdom-linux-rootfs`). Three parts, one build:
//!
//! - the kernel: upstream Linux from Debian's orig tarball, `allnoconfig` plus the recipe's
//!   `linux.config` fragment, a gzip bzImage (the variant's first extra file);
//! - QEMU: Debian's source with its patch series (the 7.2 stable series), configured with the
//!   recipe's `qemu-configure.args` with the device set of `qemu-devices.mak`, in the build
//!   environment of the image's Xen release (`xen-releases` in the recipe), against its
//!   `libxen-dev`;
//! - the rootfs (the variant's file): the Rust `/init` (`stubdoms/ioemu/init`, static), QEMU,
//!   the libraries its ELF headers name (from the packages of the environment QEMU was built
//!   in, so the versions match by construction; never the host's), and the option ROMs, as a
//!   deterministic cpio compressed with the build environment's xz.
//!
//! The kernel and the init do not depend on the Xen release: they build in the main build
//! environment once and serve every release's image.
//!
//! Reproducible because: source and build paths are mapped out of every object
//! (`-ffile-prefix-map`, `--remap-path-prefix`), Kbuild's user, host and time are fixed,
//! QEMU is stripped, and the rootfs is written by the project's own cpio writer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use stubdoms_archive::{Format, Tree};

use super::Job;
use crate::cache::Cache;
use crate::elfdeps::Union;
use crate::fsx;
use crate::lock::Blob;
use crate::variant::Variant;

/// Bumped when the way a source tree is prepared changes (the trees are kept in the cache).
const PREPARE: &str = "ioemu-prepare-1";
/// Bumped when the way the kernel (`LINUX_BUILD`) or QEMU (`QEMU_BUILD`) is built changes:
/// each is kept in the cache under a key of its own inputs and this version, so a change
/// to the init or the rootfs does not rebuild them.
const LINUX_BUILD: &str = "ioemu-linux-4";
/// See [`LINUX_BUILD`].
const QEMU_BUILD: &str = "ioemu-qemu-4";
/// The recipe's kernel patches (`*.patch`, applied in name order to the upstream tarball).
const LINUX_PATCHES: &str = "linux-patches";
/// The recipe's QEMU device set, installed in the source as the `stubdoms` device config.
const QEMU_DEVICES: &str = "qemu-devices.mak";
/// QEMU's path inside the rootfs; the init starts it from there.
const QEMU: &str = "/usr/bin/qemu-system-i386";
/// Option ROMs QEMU loads from its firmware path (`--firmwarepath=/usr/share/qemu`):
/// (name in the rootfs, package, path in the package).
const ROMS: &[(&str, &str, &str)] = &[
    (
        "vgabios-stdvga.bin",
        "seabios",
        "/usr/share/seabios/vgabios-stdvga.bin",
    ),
    (
        "vgabios-cirrus.bin",
        "seabios",
        "/usr/share/seabios/vgabios-cirrus.bin",
    ),
    (
        "efi-rtl8139.rom",
        "ipxe-qemu",
        "/usr/lib/ipxe/qemu/efi-rtl8139.rom",
    ),
    (
        "efi-e1000.rom",
        "ipxe-qemu",
        "/usr/lib/ipxe/qemu/efi-e1000.rom",
    ),
];
pub fn build(job: &Job) -> Result<()> {
    if job.variant != Variant::X86_64Pv {
        bail!(
            "the ioemu stub domain is a 64-bit PV guest: it builds x86_64-pv only, not {}",
            job.variant
        );
    }
    let [kernel_name] = job.extra_files else {
        bail!(
            "{}: the ioemu variant installs the rootfs as `file` and the kernel as its one `extra-files` entry",
            job.recipe.path.display()
        );
    };
    let Some(xen) = job.xen else {
        bail!(
            "{}: the ioemu image links against one Xen release's libraries: name the releases and their build environments in `xen-releases`",
            job.recipe.path.display()
        );
    };
    let debs = Debs::new(job, xen.root)?;
    let orig = source_blob(job, "linux", ".orig.tar.xz")?;
    let fragment = read(&job.recipe.dir.join("linux.config"))?;
    let linux_patches = super::key::tree_hash(&job.recipe.dir.join(LINUX_PATCHES))?;
    let kernel = part(
        job,
        "linux",
        &[
            LINUX_BUILD,
            &orig.sha256,
            &linux_patches,
            &fragment,
            &job.root.key,
        ],
        || build_kernel(job),
    )?;
    fsx::copy_atomic(&kernel, &job.extra_output(kernel_name)?)?;
    let mut qemu_key = vec![
        QEMU_BUILD.to_string(),
        read(&job.recipe.dir.join("qemu-configure.args"))?,
        read(&job.recipe.dir.join(QEMU_DEVICES))?,
        super::key::tree_hash(&job.recipe.dir.join("patches"))?,
    ];
    for b in &job.inputs {
        if b.label.starts_with("source qemu ") {
            qemu_key.push(b.sha256.clone());
        }
    }
    // The compiler, meson and the libraries QEMU links against (Xen's among them).
    qemu_key.push(xen.root.key.clone());
    let qemu_key: Vec<&str> = qemu_key.iter().map(String::as_str).collect();
    let qemu = part(job, "qemu", &qemu_key, || build_qemu(job, xen.root))?;
    let init = build_init(job)?;
    let rootfs = rootfs(job, &debs, &qemu, &init)?;
    fsx::write_atomic(&job.output(), &rootfs)
}

fn read(path: &Path) -> Result<String> {
    fs_err::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// One built part (the kernel or QEMU), kept in the cache under a key of what decides its
/// bytes; `make` builds it (in the staging folder) when no stored copy exists.
fn part(
    job: &Job,
    name: &str,
    key: &[&str],
    make: impl FnOnce() -> Result<PathBuf>,
) -> Result<PathBuf> {
    let mut k = crate::key::Key::new(&format!("ioemu-{name}"));
    k.field("epoch", job.epoch.to_string());
    for (i, part) in key.iter().enumerate() {
        k.field(&i.to_string(), part);
    }
    let folder = format!("ioemu-{name}-{}", k.finish());
    let stored = job.cache.root().join("parts").join(&folder).join(name);
    if !job.fresh && stored.is_file() {
        crate::ui::step(&format!("ioemu: {name} up to date ({folder})"));
        return Ok(stored);
    }
    let started = std::time::Instant::now();
    let built = make()?;
    crate::ui::step(&format!(
        "ioemu: {name} built in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    job.cache.stored("parts", &folder, true, |tmp| {
        fsx::copy_atomic(&built, &tmp.join(name))
    })?;
    Ok(stored)
}

/// The packages the rootfs takes files from, unpacked, by name: those of QEMU's build
/// environment (its libraries) and the recipe's binary inputs (the option ROMs).
struct Debs {
    roots: BTreeMap<String, PathBuf>,
}

impl Debs {
    fn new(job: &Job, qemu_root: &crate::buildenv::Root) -> Result<Debs> {
        let mut roots = BTreeMap::new();
        let env = job.ws.lock.env(&qemu_root.name)?;
        for (d, blob) in env.debs.iter().zip(env.blobs()?) {
            roots.insert(d.name.clone(), job.cache.unpacked_deb(&blob)?);
        }
        for input in &job.recipe.inputs {
            if let crate::lock::Resolved::Debs(debs) = job.ws.lock.resolve(input)? {
                for d in debs {
                    if roots.contains_key(&d.name) {
                        bail!(
                            "{}: input `{}` is also in {}, where the rootfs takes its libraries from: drop it from `inputs`",
                            job.recipe.path.display(),
                            d.name,
                            qemu_root.name
                        );
                    }
                    roots.insert(d.name.clone(), job.cache.unpacked_deb(&d.blob()?)?);
                }
            }
        }
        Ok(Debs { roots })
    }
}

/// The source blob whose file name ends in `suffix`, from the source package `package`.
fn source_blob<'a>(job: &'a Job, package: &str, suffix: &str) -> Result<&'a Blob> {
    let prefix = format!("source {package} ");
    job.inputs
        .iter()
        .find(|b| b.label.starts_with(&prefix) && b.path.ends_with(suffix))
        .with_context(|| format!("the ioemu recipe needs `src:{package}` (no *{suffix} pinned)"))
}

/// A source tree in the cache under a key of its inputs, made once by `make` and shared by
/// every build (and both builds of `repro`): builds only read it.
fn prepared(
    cache: &Cache,
    name: &str,
    key: &[&str],
    make: impl Fn(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let mut k = crate::key::Key::new(PREPARE);
    k.field("name", name);
    for (i, part) in key.iter().enumerate() {
        k.field(&i.to_string(), part);
    }
    let folder = format!("{name}-{}", &k.finish()[..16]);
    if !cache.root().join("prepared").join(&folder).is_dir() {
        crate::ui::step(&format!("ioemu: preparing the {name} source"));
    }
    let dir = cache.stored("prepared", &folder, false, |tmp| make(&tmp.join("src")))?;
    Ok(dir.join("src"))
}

fn jobs() -> String {
    format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    )
}

/// The kernel: the upstream tarball with the recipe's `linux-patches/`, allnoconfig +
/// `linux.config`, out of tree; returns the bzImage.
fn build_kernel(job: &Job) -> Result<PathBuf> {
    let orig = source_blob(job, "linux", ".orig.tar.xz")?;
    let ours = job.recipe.dir.join(LINUX_PATCHES);
    let patches_key = super::key::tree_hash(&ours)?;
    let src = prepared(job.cache, "linux", &[&orig.sha256, &patches_key], |src| {
        crate::debsrc::unpack_upstream(job.root, &job.cache.get(orig)?, &ours, src, &job.staging)
    })?;
    let out = job.staging.join("linux");
    fs_err::create_dir_all(&out)?;
    let fragment = job.recipe.dir.join("linux.config");
    // The source at /src (read-only), the build folder at /build, the recipe at /recipe:
    // fixed paths, so nothing of the host reaches the kernel.
    let step = || {
        job.root
            .step()
            .ro(&src, "/src")
            .rw(&out, "/build")
            .ro(&job.recipe.dir, "/recipe")
            .cwd("/src")
            .env("ARCH", "x86_64")
            .env("KBUILD_BUILD_TIMESTAMP", "1970-01-01 00:00:00 UTC")
            .env("KBUILD_BUILD_USER", "stubdoms")
            .env("KBUILD_BUILD_HOST", "stubdoms")
            .env("KBUILD_BUILD_VERSION", "1")
            .env("SOURCE_DATE_EPOCH", job.epoch.to_string())
            // No Rust in this kernel: a rustc that does not exist keeps the environment's
            // rustc out of the configuration and lets repro's shifted clock apply (rustc
            // hangs under libfaketime).
            .env(
                "MAKEFLAGS",
                "RUSTC=stubdoms-no-rustc HOSTRUSTC=stubdoms-no-rustc",
            )
            .shifted_clock()
    };
    // The fragment applies on top of allnoconfig (what merge_config.sh -n does, without its
    // scratch files in the read-only source); every requested value that did not survive
    // (a dependency missing from the fragment) is an error.
    let mut config = step().command("make")?;
    config.args([
        "O=/build",
        "KCONFIG_ALLCONFIG=/recipe/linux.config",
        "allnoconfig",
    ]);
    super::run_logged(&mut config, &job.staging, "linux allnoconfig")?;
    let wanted = read(&fragment)?;
    let got = read(&out.join(".config"))?;
    let lost = lost_settings(&wanted, &got);
    if !lost.is_empty() {
        bail!(
            "{}: these settings did not make it into the kernel configuration (a dependency is missing):\n{}",
            fragment.display(),
            lost.join("\n")
        );
    }
    let mut make = step().command("make")?;
    make.args(["O=/build", &jobs(), "bzImage"]);
    super::run_logged(&mut make, &job.staging, "linux make")?;
    Ok(out.join("arch/x86/boot/bzImage"))
}

/// The settings of a Kconfig fragment that the final `.config` does not have as asked:
/// `CONFIG_X=v` lines must be there as written, `# CONFIG_X is not set` lines must not be
/// set to anything.
fn lost_settings(fragment: &str, config: &str) -> Vec<String> {
    let set: std::collections::BTreeMap<&str, &str> = config
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .collect();
    let mut lost = Vec::new();
    for line in fragment.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            if let Some(v) = set.get(name) {
                lost.push(format!("{name} is set to {v}, asked to be unset"));
            }
        } else if let Some((name, want)) = line.split_once('=') {
            if line.starts_with("CONFIG_") {
                match set.get(name) {
                    Some(v) if *v == want => {}
                    Some(v) => lost.push(format!("{name}={want} asked, {v} in the end")),
                    None => lost.push(format!("{name}={want} asked, not set in the end")),
                }
            }
        }
    }
    lost
}

/// QEMU's source: the orig tarball with Debian's patch series, then the recipe's
/// `patches/`, applied in order, and the recipe's device set.
fn qemu_source(job: &Job) -> Result<PathBuf> {
    let orig = source_blob(job, "qemu", ".orig.tar.xz")?;
    let debian = source_blob(job, "qemu", ".debian.tar.xz")?;
    let ours = job.recipe.dir.join("patches");
    let patches_key = super::key::tree_hash(&ours)?;
    let devices = read(&job.recipe.dir.join(QEMU_DEVICES))?;
    prepared(
        job.cache,
        "qemu",
        &[&orig.sha256, &debian.sha256, &patches_key, &devices],
        |src| {
            crate::debsrc::unpack_patched(
                job.root,
                &job.cache.get(orig)?,
                &job.cache.get(debian)?,
                Some(&ours),
                src,
                &job.staging,
            )?;
            // configure only looks for device sets inside the source tree.
            fs_err::write(
                src.join("configs/devices/i386-softmmu/stubdoms.mak"),
                &devices,
            )?;
            Ok(())
        },
    )
}

/// Arguments of `qemu-configure.args`: one a line, `#` comments.
fn configure_args(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// QEMU, configured with the recipe's arguments, compiled in `root`, against its Xen
/// headers and libraries (the packages the rootfs ships); returns the stripped binary.
fn build_qemu(job: &Job, root: &crate::buildenv::Root) -> Result<PathBuf> {
    let src = qemu_source(job)?;
    let build = job.staging.join("qemu");
    fs_err::create_dir_all(&build)?;
    let args_file = job.recipe.dir.join("qemu-configure.args");
    let args_text = fs_err::read_to_string(&args_file)
        .with_context(|| format!("reading {}", args_file.display()))?;
    let step = || {
        root.step()
            .ro(&src, "/src")
            .rw(&build, "/build")
            .cwd("/build")
            .env("SOURCE_DATE_EPOCH", job.epoch.to_string())
            .shifted_clock()
    };
    let mut configure = step().command("/src/configure")?;
    configure
        .args(configure_args(&args_text))
        // Meson compiles sources by their path relative to the build folder: map that form
        // to the absolute one, so `__FILE__` is the same whichever way a file was named.
        .arg("--extra-cflags=-ffile-prefix-map=../src/=/src/");
    super::run_logged(&mut configure, &job.staging, "qemu configure")?;
    let mut ninja = step().command("ninja")?;
    ninja.args([&jobs(), "qemu-system-i386"]);
    super::run_logged(&mut ninja, &job.staging, "qemu ninja")?;
    let mut strip = step().command("strip")?;
    strip.args([
        "--strip-all",
        "-o",
        "/build/qemu-system-i386.stripped",
        "/build/qemu-system-i386",
    ]);
    super::run_logged(&mut strip, &job.staging, "qemu strip")?;
    Ok(build.join("qemu-system-i386.stripped"))
}

/// The Rust `/init`: a static glibc binary, paths mapped out.
fn build_init(job: &Job) -> Result<PathBuf> {
    let flags = ["-C target-feature=+crt-static".to_string()];
    let (mut c, dir) = job.cargo_image("ioemu-init", "ioemu-init", &flags, &[])?;
    // Not on `repro`'s shifted clock: rustc hangs under libfaketime.
    super::run_logged(&mut c, &job.staging, "init cargo")?;
    Ok(dir.join("ioemu-init"))
}

/// The rootfs: `/init`, QEMU and what it loads, the ROMs, and the few nodes the kernel
/// needs before devtmpfs is mounted.
fn rootfs(job: &Job, debs: &Debs, qemu: &Path, init: &Path) -> Result<Vec<u8>> {
    // QEMU joins the packages as one more root, so its libraries resolve like theirs.
    let built = job.staging.join("built");
    let qemu_in = built.join(QEMU.trim_start_matches('/'));
    fs_err::create_dir_all(qemu_in.parent().context("QEMU path")?)?;
    fsx::copy_atomic(qemu, &qemu_in)?;
    let mut roots = debs.roots.clone();
    roots.insert(" built".to_string(), built);
    let union = Union::new(roots);
    let mut wanted = BTreeSet::new();
    union.closure(QEMU, &mut wanted)?;
    // glibc loads libgcc_s at run time (thread cancellation): QEMU's threads need it.
    union.closure("/lib/x86_64-linux-gnu/libgcc_s.so.1", &mut wanted)?;

    let mut tree = Tree::new();
    for d in ["dev", "proc", "sys", "run", "tmp", "usr/share/qemu"] {
        tree.add_dir(d, 0o755)?;
    }
    tree.add_char_dev("dev/console", 5, 1, 0o600)?;
    tree.add_host_file("init", init, 0o755)?;
    for path in &wanted {
        if path == QEMU {
            tree.add_host_file(QEMU.trim_start_matches('/'), &qemu_in, 0o755)?;
        } else {
            union.add_to(&mut tree, path)?;
        }
    }
    for (name, package, path) in ROMS {
        let host = union.file(package, path)?;
        tree.add_host_file(&format!("usr/share/qemu/{name}"), host, 0o644)?;
    }
    // A merged-/usr release (Debian 13) has its libraries under /usr only, but the kernel
    // looks for QEMU's interpreter where its ELF header says (/lib64/ld-linux-x86-64.so.2).
    let (interp, _) =
        crate::elfdeps::needs(&fs_err::read(qemu)?)?.context("QEMU is no ELF file")?;
    if let Some(interp) = interp.map(|i| i.trim_start_matches('/').to_string()) {
        if tree.get(&interp).is_none() {
            let top = interp.split('/').next().unwrap_or_default();
            tree.add_symlink(top, &format!("usr/{top}"))?;
        }
    }
    // xz, not gzip: libxl's domain builder unpacks a gzip ramdisk into the stub domain's
    // memory, where it would sit beside the unpacked rootfs until the kernel frees it (16 MiB
    // more at boot, the difference between booting in 48 MiB or not). An xz one stays
    // compressed; Linux unpacks it (CONFIG_RD_XZ), with the CRC32 check and the small
    // dictionary its decompressor wants.
    let cpio = job.staging.join("rootfs");
    fs_err::create_dir_all(&cpio)?;
    let bytes = tree
        .to_bytes(Format::Cpio, job.epoch)
        .context("writing the rootfs")?;
    fsx::write_atomic(&cpio.join("rootfs.cpio"), &bytes)?;
    let mut xz = job.root.step().rw(&cpio, "/build").command("xz")?;
    xz.args([
        "--check=crc32",
        "--lzma2=preset=9,dict=1MiB",
        "--threads=1",
        "--force",
        "/build/rootfs.cpio",
    ]);
    super::run_logged(&mut xz, &job.staging, "rootfs xz")?;
    fs_err::read(cpio.join("rootfs.cpio.xz")).context("reading the compressed rootfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_kconfig_settings_are_named() {
        let fragment =
            "CONFIG_XEN=y\n# CONFIG_SMP is not set\nCONFIG_NR=4\nCONFIG_GONE=y\n# a comment\n";
        let config = "CONFIG_XEN=y\nCONFIG_SMP=y\nCONFIG_NR=8\n# CONFIG_GONE is not set\n";
        assert_eq!(
            lost_settings(fragment, config),
            [
                "CONFIG_SMP is set to y, asked to be unset",
                "CONFIG_NR=4 asked, 8 in the end",
                "CONFIG_GONE=y asked, not set in the end",
            ]
        );
        assert!(lost_settings("CONFIG_XEN=y\n", "CONFIG_XEN=y\n").is_empty());
    }

    #[test]
    fn configure_args_skip_comments_and_blank_lines() {
        let text = "# comment\n--target-list=i386-softmmu\n\n  --enable-xen  \n#--enable-kvm\n";
        assert_eq!(
            configure_args(text),
            ["--target-list=i386-softmmu", "--enable-xen"]
        );
    }

    /// The recipe's configure arguments name the one target the init starts.
    #[test]
    fn recipe_builds_the_binary_the_init_starts() {
        let text = include_str!("../../../stubdoms/ioemu/qemu-configure.args");
        assert!(configure_args(text).contains(&"--target-list=i386-softmmu"));
        let init = include_str!("../../../stubdoms/ioemu/init/src/main.rs");
        assert!(init.contains(QEMU), "the init must start {QEMU}");
    }
}
