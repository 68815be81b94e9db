//! The `ioemu` kind: the Linux device-model stub domain of libxl (`qemu-stubdom-linux-kernel`
//! and `qemu-stubdom-linux-rootfs`). Three parts, one build:
//!
//! - the kernel: upstream Linux from Debian's orig tarball, `allnoconfig` plus the recipe's
//!   `linux.config` fragment, a gzip bzImage (the variant's first extra file);
//! - QEMU: Debian's source with its patch series (the 7.2 stable series), configured with the
//!   recipe's `qemu-configure.args` with the device set of `qemu-devices.mak`, against the
//!   pinned `libxen-dev`;
//! - the rootfs (the variant's file): the Rust `/init` (`stubdoms/ioemu/init`, static), QEMU,
//!   the libraries its ELF headers name (from the pinned runtime packages, never the host's),
//!   and the option ROMs, as a deterministic cpio.gz.
//!
//! Reproducible because: source and build paths are mapped out of every object
//! (`-ffile-prefix-map`, `--remap-path-prefix`), Kbuild's user, host and time are fixed,
//! QEMU is stripped, and the rootfs is written by the project's own cpio writer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use stubdoms_archive::{ExtractOptions, Format, Tree};

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
    Debs::check_same_as(job)?;
    let debs = Debs::new(job)?;
    let orig = source_blob(job, "linux", ".orig.tar.xz")?;
    let fragment = read(&job.recipe.dir.join("linux.config"))?;
    let kernel = part(
        job,
        "linux",
        &[LINUX_BUILD, &orig.sha256, &fragment, &job.root.key],
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
    qemu_key.push(job.root.key.clone());
    let qemu_key: Vec<&str> = qemu_key.iter().map(String::as_str).collect();
    let qemu = part(job, "qemu", &qemu_key, || build_qemu(job))?;
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

/// The recipe's binary packages, unpacked, by name.
struct Debs {
    roots: BTreeMap<String, PathBuf>,
}

impl Debs {
    fn new(job: &Job) -> Result<Debs> {
        let mut roots = BTreeMap::new();
        for input in &job.recipe.inputs {
            if let crate::lock::Resolved::Debs(debs) = job.ws.lock.resolve(input)? {
                for d in debs {
                    roots.insert(d.name.clone(), job.cache.unpacked_deb(&d.blob()?)?);
                }
            }
        }
        Ok(Debs { roots })
    }

    /// The rootfs ships these packages' libraries, QEMU is compiled against the build
    /// environment's: every package both have must be the same version in both, or QEMU
    /// could need a symbol the rootfs lacks.
    fn check_same_as(job: &Job) -> Result<()> {
        for input in &job.recipe.inputs {
            let crate::lock::Resolved::Debs(debs) = job.ws.lock.resolve(input)? else {
                continue;
            };
            for d in debs {
                let Some(env) = job.root.packages.iter().find(|p| p.name == d.name) else {
                    continue;
                };
                let pin = d.pin()?;
                if pin.version != env.version {
                    bail!(
                        "{}: the rootfs ships {} {}, but QEMU is compiled in {} against {}: run `cargo xtask pin` so both come from the same archive state",
                        job.recipe.path.display(),
                        d.name,
                        pin.version,
                        job.root.name,
                        env.version
                    );
                }
            }
        }
        Ok(())
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

const STRIP_TOP: ExtractOptions = ExtractOptions {
    strip_components: 1,
    compression: None,
};

fn jobs() -> String {
    format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    )
}

/// The kernel: allnoconfig + `linux.config`, out of tree; returns the bzImage.
fn build_kernel(job: &Job) -> Result<PathBuf> {
    let orig = source_blob(job, "linux", ".orig.tar.xz")?;
    let src = prepared(job.cache, "linux", &[&orig.sha256], |src| {
        stubdoms_archive::extract_tarball(&job.cache.get(orig)?, src, &STRIP_TOP)?;
        Ok(())
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

/// QEMU's source: the orig tarball with Debian's patch series applied in order.
fn qemu_source(job: &Job) -> Result<PathBuf> {
    let orig = source_blob(job, "qemu", ".orig.tar.xz")?;
    let debian = source_blob(job, "qemu", ".debian.tar.xz")?;
    let ours = own_patches(job)?;
    let patches_key = super::key::tree_hash(&job.recipe.dir.join("patches"))?;
    let devices = read(&job.recipe.dir.join(QEMU_DEVICES))?;
    prepared(
        job.cache,
        "qemu",
        &[&orig.sha256, &debian.sha256, &patches_key, &devices],
        |src| {
            stubdoms_archive::extract_tarball(&job.cache.get(orig)?, src, &STRIP_TOP)?;
            stubdoms_archive::extract_tarball(
                &job.cache.get(debian)?,
                &src.join("debian"),
                &STRIP_TOP,
            )?;
            let series = fs_err::read_to_string(src.join("debian/patches/series"))?;
            let mut list: Vec<String> = series_entries(&series)
                .into_iter()
                .map(|p| format!("/src/debian/patches/{p}"))
                .collect();
            for p in &ours {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                list.push(format!("/recipe/patches/{name}"));
            }
            for p in &list {
                let mut c = job
                    .root
                    .step()
                    .rw(src, "/src")
                    .ro(&job.recipe.dir, "/recipe")
                    .cwd("/src")
                    .command("patch")?;
                c.args(["-p1", "-s", "-N", "--no-backup-if-mismatch", "-i", p]);
                let name = p.rsplit('/').next().unwrap_or(p);
                super::run_logged(&mut c, &job.staging, &format!("qemu patch {name}"))?;
            }
            // configure only looks for device sets inside the source tree.
            fs_err::write(
                src.join("configs/devices/i386-softmmu/stubdoms.mak"),
                &devices,
            )?;
            Ok(())
        },
    )
}

/// The recipe's own QEMU patches (`patches/*.patch`), applied after Debian's in name order.
fn own_patches(job: &Job) -> Result<Vec<PathBuf>> {
    let dir = job.recipe.dir.join("patches");
    let Ok(entries) = fs_err::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    out.sort();
    Ok(out)
}

/// Patch names of a quilt `series` file, in order (comments, blank lines and options out).
fn series_entries(series: &str) -> Vec<&str> {
    series
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// Arguments of `qemu-configure.args`: one a line, `#` comments.
fn configure_args(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// QEMU, configured with the recipe's arguments, compiled against the build environment's
/// Xen headers and libraries (the same release's packages the rootfs ships); returns the
/// stripped binary.
fn build_qemu(job: &Job) -> Result<PathBuf> {
    let src = qemu_source(job)?;
    let build = job.staging.join("qemu");
    fs_err::create_dir_all(&build)?;
    let args_file = job.recipe.dir.join("qemu-configure.args");
    let args_text = fs_err::read_to_string(&args_file)
        .with_context(|| format!("reading {}", args_file.display()))?;
    let step = || {
        job.root
            .step()
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
    tree.to_bytes(Format::CpioGz, job.epoch)
        .context("writing the rootfs")
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
    fn series_keeps_patch_names_in_order() {
        let series = "# upstream\nv7.2.1.diff\n\nv7.2.2.diff -p1\n  # gone.diff\nfix.patch # why\n";
        assert_eq!(
            series_entries(series),
            ["v7.2.1.diff", "v7.2.2.diff", "fix.patch"]
        );
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
