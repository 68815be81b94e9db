//! A test machine's files (see `machines.rs` for what a machine is): Xen and a Debian dom0
//! kernel with a dom0 initramfs, all from the machine's pinned Debian packages (nothing from
//! the host, so the machine is the same anywhere).
//! The initramfs is written by the project's own cpio writer; it keeps only the files the
//! dom0 programs need, found from their ELF headers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use stubdoms_archive::Tree;

use super::arch::{self, Arch};
use super::elf;
use super::machines::Spec;
use crate::cache::Cache;
use crate::elfdeps::Union;
use crate::fsx;
use crate::lock::Blob;
use crate::workspace::Workspace;

/// The dom0's /init and the console helper, shipped inside the initramfs.
const DOM0_INIT: &str = include_str!("dom0/init");
const GUEST_CONSOLE: &str = include_str!("dom0/guest-console");
/// The tiny Linux guest's /init (self-test and Linux PV scenarios).
const GUEST_INIT: &str = include_str!("dom0/guest-init");

/// Programs dom0 runs, for Xen release `xen`; their libraries are found from their ELF
/// headers.
fn programs(xen: &str, arch: &Arch) -> Vec<String> {
    let mut out: Vec<String> = [
        "xl",
        "xenstored",
        "xenconsoled",
        "xenconsole",
        "xen-init-dom0",
        "vchan-socket-proxy",
        // xl save and restore run it for the domain's memory stream.
        "libxl-save-helper",
    ]
    .iter()
    .map(|b| format!("/usr/lib/xen-{xen}/bin/{b}"))
    .collect();
    out.extend(
        [
            "/usr/bin/xenstore",
            "/bin/bash",
            "/usr/bin/flock",
            "/sbin/losetup",
            "/bin/busybox",
        ]
        .map(String::from),
    );
    // Loaded at run time by pthread_cancel: without it xl aborts.
    out.push(format!("/lib/{}/libgcc_s.so.1", arch.triplet));
    out
}
/// Hotplug scripts xl runs for disks and network interfaces.
const SCRIPTS: &[&str] = &[
    "block",
    "block-common.sh",
    "xen-hotplug-common.sh",
    "xen-script-common.sh",
    "locking.sh",
    "logging.sh",
    "hotplugpath.sh",
    "vif-bridge",
    "vif-common.sh",
    "xen-network-common.sh",
    "vif-route",
    "vif-setup",
];
/// Kernel modules dom0 loads, in this order (their dependencies are loaded first).
const DOM0_MODULES: &[&str] = &[
    "xen-evtchn",
    "xen-privcmd",
    "xenfs",
    "xen-gntdev",
    "xen-gntalloc",
    "loop",
    "xen-blkback",
    "xen-netback",
    "bridge",
    "tun",
];

/// The machine's files, ready to boot.
pub struct Machine {
    pub spec: Spec,
    pub xen: PathBuf,
    pub dom0_kernel: PathBuf,
    pub dom0_initrd: PathBuf,
    /// A cpio appended to the dom0 initramfs of batches with HVM guests: Debian's dom0
    /// QEMU, its libraries, hvmloader and SeaBIOS (see [`hvm_files`]).
    pub dom0_hvm: PathBuf,
    /// The Debian kernel as a guest kernel image, and the tiny guest initramfs.
    pub guest_kernel: PathBuf,
    pub guest_initrd: PathBuf,
    /// QEMU and the disk tools, from the boot environment.
    pub tools: super::tools::Tools,
}

/// What HVM guests need in dom0: libxl runs Debian's QEMU in dom0 for an HVM guest's
/// device model, or, with a stub domain, to serve the stub domain's consoles; hvmloader
/// gets SeaBIOS from libxl. Then the libraries that QEMU's ELF headers name.
const HVM_PROGRAMS: &[&str] = &["/usr/libexec/xen-qemu-system-i386"];
fn hvm_files(xen: &str) -> Vec<String> {
    vec![
        format!("/usr/lib/xen-{xen}/boot/hvmloader"),
        "/usr/share/seabios/bios-256k.bin".into(),
        // QEMU reads its keymap even with `-vnc none`.
        "/usr/share/qemu/keymaps/en-us".into(),
    ]
}
/// The VGA and NIC option ROMs, for a guest whose device model is dom0's QEMU (the bench's
/// reference for ioemu), each at the first of its paths a package has, where Debian's QEMU
/// looks: Debian 12 keeps iPXE's ROMs in /usr/lib/ipxe/qemu, Debian 13 in /usr/share/qemu.
const HVM_ROMS: &[&[&str]] = &[
    &["/usr/share/seabios/vgabios-cirrus.bin"],
    &[
        "/usr/lib/ipxe/qemu/efi-rtl8139.rom",
        "/usr/share/qemu/efi-rtl8139.rom",
    ],
];

/// The pinned package files of machine `spec`.
pub fn blobs(ws: &Workspace, spec: &Spec) -> Result<Vec<Blob>> {
    ws.lock.env(&spec.packages)?.blobs()
}

/// `cargo xtask machine NAME --out DIR [--fresh]`: the machine's files, fetched and assembled
/// into `out` (`fresh`: the hypervisor rebuilt too, for `repro`).
pub fn run(ws: &Workspace, name: &str, out: &Path, fresh: bool) -> Result<()> {
    let spec = super::machines::select(super::machines::load_all(ws)?, Some(name))?.remove(0);
    let cache = Cache::open()?;
    crate::fetch::ensure(
        &cache,
        &blobs(ws, &spec)?,
        &crate::fetch::Flags { offline: false },
    )?;
    assemble_to(
        ws,
        &cache,
        &spec,
        crate::builders::source_date_epoch()?,
        out,
        fresh,
    )?;
    println!("{}", out.display());
    Ok(())
}

/// Assembles machine `spec`, or reuses the one stored under the same key.
pub fn get(
    ws: &Workspace,
    cache: &Cache,
    spec: &Spec,
    epoch: u64,
    offline: bool,
) -> Result<Machine> {
    let blobs = blobs(ws, spec)?;
    let built_xen = built_hypervisor(ws, cache, spec, epoch, offline, false)?;
    let mut k = crate::key::Key::new("stubdoms-machine");
    k.field("machine.rs", include_str!("machine.rs"))
        .field("elf.rs", include_str!("elf.rs"))
        .field("elfdeps.rs", include_str!("../elfdeps.rs"))
        .field("xen", &spec.xen)
        .field("arch", &spec.arch);
    for text in [DOM0_INIT, GUEST_CONSOLE, GUEST_INIT] {
        k.field("script", text);
    }
    k.field("epoch", epoch.to_string());
    for b in &blobs {
        k.field("input", &b.sha256);
    }
    if let Some(x) = &built_xen {
        k.field("built xen", fsx::sha256_file(x)?.0);
    }
    let key = k.finish();
    let dir = cache.root().join("machines").join(&key);
    let machine = Machine {
        spec: spec.clone(),
        xen: dir.join("xen"),
        dom0_kernel: dir.join("vmlinux"),
        dom0_initrd: dir.join("dom0.cpio.gz"),
        dom0_hvm: dir.join("dom0-hvm.cpio"),
        guest_kernel: dir.join("vmlinux.gz"),
        guest_initrd: dir.join("guest.cpio.gz"),
        tools: super::tools::Tools::new(ws, cache, offline)?,
    };
    if dir.is_dir() {
        return Ok(machine);
    }
    crate::ui::step(&format!(
        "boot machine {} ({}): assembling Xen, dom0 kernel and initramfs",
        spec.name, spec.summary
    ));
    assemble_with(ws, cache, spec, built_xen.as_deref(), epoch, &dir)?;
    Ok(machine)
}

/// The machine's hypervisor when its file asks for one built from source.
fn built_hypervisor(
    ws: &Workspace,
    cache: &Cache,
    spec: &Spec,
    epoch: u64,
    offline: bool,
    fresh: bool,
) -> Result<Option<PathBuf>> {
    spec.xen_config
        .as_ref()
        .map(|c| super::hypervisor::get(ws, cache, &ws.root.join(c), epoch, offline, fresh))
        .transpose()
}

/// Assembles the machine's files into `dir` (which appears whole or not at all).
pub fn assemble_to(
    ws: &Workspace,
    cache: &Cache,
    spec: &Spec,
    epoch: u64,
    dir: &Path,
    fresh: bool,
) -> Result<()> {
    let built_xen = built_hypervisor(ws, cache, spec, epoch, false, fresh)?;
    assemble_with(ws, cache, spec, built_xen.as_deref(), epoch, dir)
}

fn assemble_with(
    ws: &Workspace,
    cache: &Cache,
    spec: &Spec,
    built_xen: Option<&Path>,
    epoch: u64,
    dir: &Path,
) -> Result<()> {
    let union = union(ws, cache, spec)?;
    // Another process may have finished the same machine meanwhile: same key, same bytes.
    fsx::create_dir_atomic(dir, true, |tmp| {
        assemble(
            &union,
            &spec.xen,
            arch::of(&spec.arch),
            built_xen,
            tmp,
            epoch,
        )
    })
}

fn assemble(
    union: &Union,
    xen_release: &str,
    arch: &Arch,
    built_xen: Option<&Path>,
    out: &Path,
    epoch: u64,
) -> Result<()> {
    // Xen: the one built from source, or Debian's (QEMU's -kernel takes it uncompressed).
    let xen = match built_xen {
        Some(x) => fs_err::read(x)?,
        None => {
            let (pkg, path) = arch.hypervisor(xen_release);
            let file = union.file(&pkg, &path)?;
            if path.ends_with(".gz") {
                let mut xen = Vec::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&file)?)
                    .read_to_end(&mut xen)
                    .context("decompressing Xen")?;
                xen
            } else {
                fs_err::read(&file)?
            }
        }
    };
    fsx::write_atomic(&out.join("xen"), &xen)?;

    // Xen loads dom0 from the kernel as the architecture boots it, and guests from a gzip
    // of that (xl unpacks gzip fast; the plain kernel would make bundles larger).
    let kernel = kernel(union, arch)?;
    let vmlinuz = fs_err::read(kernel.root.join(format!("boot/vmlinuz-{}", kernel.version)))?;
    let vmlinux = (arch.dom0_kernel)(&vmlinuz)?;
    fsx::write_atomic(&out.join("vmlinux"), &vmlinux)?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &vmlinux)?;
    fsx::write_atomic(&out.join("vmlinux.gz"), &gz.finish()?)?;

    let mut dom0 = Tree::new();
    skeleton(&mut dom0)?;
    let mut wanted = BTreeSet::new();
    for p in programs(xen_release, arch) {
        union.closure(&p, &mut wanted)?;
    }
    for s in SCRIPTS {
        wanted.insert(format!("/etc/xen/scripts/{s}"));
    }
    wanted.insert("/etc/xen/xl.conf".to_string());
    merged_usr_links(&mut dom0, &wanted)?;
    for path in &wanted {
        union.add_to(&mut dom0, path)?;
    }
    for b in ["xl", "xenstored", "xenconsoled", "xen-init-dom0"] {
        dom0.add_symlink(
            &format!("usr/sbin/{b}"),
            &format!("../lib/xen-{xen_release}/bin/{b}"),
        )?;
    }
    dom0.add_symlink(
        "usr/bin/vchan-socket-proxy",
        &format!("../lib/xen-{xen_release}/bin/vchan-socket-proxy"),
    )?;
    for b in [
        "read", "write", "ls", "list", "rm", "exists", "watch", "chmod",
    ] {
        dom0.add_symlink(&format!("usr/bin/xenstore-{b}"), "xenstore")?;
    }
    let order = kernel.modules(DOM0_MODULES)?;
    for m in &order {
        dom0.add_file(&format!("usr/lib/modules/{m}"), kernel.module(m)?, 0o644)?;
    }
    dom0.add_file("usr/lib/modules/load.order", order.join("\n") + "\n", 0o644)?;
    dom0.add_file("init", DOM0_INIT, 0o755)?;
    dom0.add_file("usr/bin/guest-console", GUEST_CONSOLE, 0o755)?;
    write_gz(&dom0, &out.join("dom0.cpio.gz"), epoch)?;

    // The HVM addition: only what the base initramfs lacks. Uncompressed, like the
    // scenario bundles: gunzip under emulation costs more boot time than it saves.
    // Empty where Xen has no HVM guests (Arm).
    let mut hvm_wanted = BTreeSet::new();
    if arch.hvm {
        for p in HVM_PROGRAMS {
            union.closure(p, &mut hvm_wanted)?;
        }
        for f in hvm_files(xen_release) {
            union.follow(&f, &mut hvm_wanted)?;
        }
        for paths in HVM_ROMS {
            let rom = paths
                .iter()
                .find(|p| union.find(p).is_some())
                .with_context(|| format!("{} is in none of the packages", paths.join(" or ")))?;
            union.follow(rom, &mut hvm_wanted)?;
        }
    }
    let mut hvm = Tree::new();
    for path in hvm_wanted.difference(&wanted) {
        union.add_to(&mut hvm, path)?;
    }
    fsx::write_atomic(
        &out.join("dom0-hvm.cpio"),
        &hvm.to_bytes(stubdoms_archive::Format::Cpio, epoch)?,
    )?;

    // The tiny Linux guest: busybox, the xenstore client, blkfront.
    let mut guest = Tree::new();
    guest.add_dir("dev", 0o755)?;
    guest.add_char_dev("dev/console", 5, 1, 0o600)?;
    let mut guest_files = BTreeSet::new();
    union.follow("/bin/busybox", &mut guest_files)?;
    union.closure("/usr/bin/xenstore", &mut guest_files)?;
    merged_usr_links(&mut guest, &guest_files)?;
    for p in &guest_files {
        union.add_to(&mut guest, p)?;
    }
    for b in ["read", "write", "ls"] {
        guest.add_symlink(&format!("usr/bin/xenstore-{b}"), "xenstore")?;
    }
    for m in kernel.modules(&["xen-blkfront"])? {
        let name = Path::new(&m)
            .file_name()
            .context("module name")?
            .to_string_lossy()
            .into_owned();
        guest.add_file(
            &format!("usr/lib/modules/{name}"),
            kernel.module(&m)?,
            0o644,
        )?;
    }
    guest.add_file("init", GUEST_INIT, 0o755)?;
    write_gz(&guest, &out.join("guest.cpio.gz"), epoch)?;
    Ok(())
}

/// On a merged-/usr machine (Debian 13) /bin, /sbin, /lib and /lib64 are links into /usr:
/// each of them that none of `paths` has files in becomes one, so `#!/bin/sh` and the
/// dynamic linker's /lib64 path work whichever layout the packages have.
fn merged_usr_links(tree: &mut Tree, paths: &BTreeSet<String>) -> Result<()> {
    for d in crate::elfdeps::MERGED {
        if !paths.iter().any(|p| p.starts_with(&format!("/{d}/"))) {
            tree.add_symlink(d, &format!("usr/{d}"))?;
        }
    }
    Ok(())
}

fn skeleton(t: &mut Tree) -> Result<()> {
    for d in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root",
        "etc",
        "var/lib/xen",
        "var/log/xen",
    ] {
        t.add_dir(d, 0o755)?;
    }
    t.add_char_dev("dev/console", 5, 1, 0o600)?;
    t.add_symlink("var/run", "../run")?;
    t.add_symlink("var/lock", "../run/lock")?;
    Ok(())
}

fn write_gz(tree: &Tree, path: &Path, epoch: u64) -> Result<()> {
    let bytes = tree
        .to_bytes(stubdoms_archive::Format::CpioGz, epoch)
        .with_context(|| format!("writing {}", path.display()))?;
    fsx::write_atomic(path, &bytes)
}

struct Kernel {
    root: PathBuf,
    version: String,
}

/// The machine's packages, unpacked, seen as one file system.
fn union(ws: &Workspace, cache: &Cache, spec: &Spec) -> Result<Union> {
    let env = ws.lock.env(&spec.packages)?;
    let mut roots = BTreeMap::new();
    for (d, blob) in env.debs.iter().zip(env.blobs()?) {
        roots.insert(d.name.clone(), cache.unpacked_deb(&blob)?);
    }
    Ok(Union::new(roots))
}

/// The versioned kernel package behind Debian's kernel metapackage.
fn kernel(union: &Union, arch: &Arch) -> Result<Kernel> {
    let meta = arch.kernel_meta();
    let (name, root) = union
        .roots()
        .iter()
        .find(|(n, _)| n.starts_with("linux-image-") && **n != meta)
        .context("no versioned linux-image package: run `cargo xtask pin`")?;
    let version = name.trim_start_matches("linux-image-").to_string();
    Ok(Kernel {
        root: root.clone(),
        version,
    })
}

impl Kernel {
    /// /lib/modules/VERSION, or /usr/lib/modules/VERSION on a merged-/usr release.
    fn module_dir(&self) -> PathBuf {
        let old = self.root.join("lib/modules").join(&self.version);
        if old.is_dir() {
            return old;
        }
        self.root.join("usr/lib/modules").join(&self.version)
    }

    /// The module at `path` (as modules.order names it), uncompressed: Debian 13 ships
    /// modules xz-compressed, which the dom0's busybox insmod cannot load.
    fn module(&self, path: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        let plain = self.module_dir().join(path);
        if plain.is_file() {
            return Ok(fs_err::read(&plain)?);
        }
        let xz = self.module_dir().join(format!("{path}.xz"));
        let packed = fs_err::read(&xz).with_context(|| format!("kernel module {path}"))?;
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new(packed.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", xz.display()))?;
        Ok(out)
    }

    /// Module paths (relative to the module folder), dependencies first, each once.
    fn modules(&self, names: &[&str]) -> Result<Vec<String>> {
        let order = fs_err::read_to_string(self.module_dir().join("modules.order"))
            .context("reading modules.order")?;
        let path_of = |name: &str| -> Result<String> {
            let want = format!("{}.ko", name.replace('_', "-"));
            order
                .lines()
                .find(|l| {
                    l.rsplit('/')
                        .next()
                        .is_some_and(|f| f.replace('_', "-") == want)
                })
                .map(str::to_string)
                .with_context(|| format!("kernel module {name} is not in modules.order"))
        };
        let mut out = Vec::new();
        fn visit(
            k: &Kernel,
            name: &str,
            path_of: &dyn Fn(&str) -> Result<String>,
            out: &mut Vec<String>,
        ) -> Result<()> {
            let p = path_of(name)?;
            if out.contains(&p) {
                return Ok(());
            }
            let bytes = k.module(&p)?;
            for dep in elf::module_depends(&bytes)? {
                visit(k, &dep, path_of, out)?;
            }
            out.push(p);
            Ok(())
        }
        for n in names {
            visit(self, n, &path_of, &mut out)?;
        }
        Ok(out)
    }
}
