//! The x86_64 test machine: Xen 4.17 and a Debian dom0 kernel with a dom0 initramfs, all
//! from pinned Debian packages (nothing from the host, so the machine is the same anywhere).
//! The initramfs is written by the project's own cpio writer; it keeps only the files the
//! dom0 programs need, found from their ELF headers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use stubdoms_archive::Tree;

use super::elf;
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

/// Programs dom0 runs; their libraries are found from their ELF headers.
const PROGRAMS: &[&str] = &[
    "/usr/lib/xen-4.17/bin/xl",
    "/usr/lib/xen-4.17/bin/xenstored",
    "/usr/lib/xen-4.17/bin/xenconsoled",
    "/usr/lib/xen-4.17/bin/xenconsole",
    "/usr/lib/xen-4.17/bin/xen-init-dom0",
    "/usr/lib/xen-4.17/bin/vchan-socket-proxy",
    "/usr/bin/xenstore",
    "/bin/bash",
    "/usr/bin/flock",
    "/sbin/losetup",
    "/bin/busybox",
    // Loaded at run time by pthread_cancel: without it xl aborts.
    "/lib/x86_64-linux-gnu/libgcc_s.so.1",
];
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
    pub xen: PathBuf,
    pub dom0_kernel: PathBuf,
    pub dom0_initrd: PathBuf,
    /// A cpio appended to the dom0 initramfs of batches with HVM guests: Debian's dom0
    /// QEMU, its libraries and SeaBIOS (see [`HVM_PACKAGES`]).
    pub dom0_hvm: PathBuf,
    /// The Debian kernel as a guest kernel image, and the tiny guest initramfs.
    pub guest_kernel: PathBuf,
    pub guest_initrd: PathBuf,
    /// QEMU and the disk tools, from the boot environment.
    pub tools: super::tools::Tools,
}

/// The pinned packages the machine is made of.
pub const PACKAGES: &[&str] = &[
    "xen-hypervisor-4.17-amd64",
    "linux-image-amd64",
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "busybox-static",
    "bash",
    "util-linux",
    "mount",
    "libc6",
    "libgcc-s1",
    "libtinfo6",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    "libxenmisc4.17",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
    "liblzma5",
    "libuuid1",
    "libzstd1",
    "zlib1g",
    "libsmartcols1",
];

/// What HVM guests need in dom0 beyond [`PACKAGES`]: libxl runs Debian's QEMU in dom0 for
/// an HVM guest's device model, or, with a stub domain, to serve the stub domain's consoles;
/// hvmloader gets SeaBIOS from libxl. Then the libraries that QEMU's ELF headers name.
pub const HVM_PACKAGES: &[&str] = &[
    "qemu-system-xen",
    "qemu-system-data",
    "seabios",
    "libfdt1",
    "libglib2.0-0",
    "libpcre2-8-0",
    "libffi8",
    "libpixman-1-0",
    "libjpeg62-turbo",
    "libusb-1.0-0",
    "libudev1",
    "libspice-server1",
    "libgstreamer1.0-0",
    "libgstreamer-plugins-base1.0-0",
    "liborc-0.4-0",
    "libopus0",
    "liblz4-1",
    "libsasl2-2",
    "libssl3",
    "libstdc++6",
    "libunwind8",
    "libdw1",
    "libelf1",
    "libbz2-1.0",
];
/// Programs and files of the HVM addition.
const HVM_PROGRAMS: &[&str] = &["/usr/libexec/xen-qemu-system-i386"];
const HVM_FILES: &[&str] = &[
    "/usr/lib/xen-4.17/boot/hvmloader",
    "/usr/share/seabios/bios-256k.bin",
    // QEMU reads its keymap even with `-vnc none`.
    "/usr/share/qemu/keymaps/en-us",
];

pub fn blobs(ws: &Workspace) -> Result<Vec<Blob>> {
    let mut out = Vec::new();
    for p in PACKAGES.iter().chain(HVM_PACKAGES) {
        out.extend(ws.lock.resolve(p)?.blobs()?);
    }
    Ok(out)
}

/// `cargo xtask machine --out DIR`: the machine's files, fetched and assembled into `out`.
pub fn run(ws: &Workspace, out: &Path) -> Result<()> {
    let cache = Cache::open()?;
    crate::fetch::ensure(&cache, &blobs(ws)?, &crate::fetch::Flags { offline: false })?;
    assemble_to(ws, &cache, crate::builders::source_date_epoch()?, out)?;
    println!("{}", out.display());
    Ok(())
}

/// Assembles the machine, or reuses the one stored under the same key.
pub fn x86_64(ws: &Workspace, cache: &Cache, epoch: u64, offline: bool) -> Result<Machine> {
    let blobs = blobs(ws)?;
    let mut k = crate::key::Key::new("stubdoms-machine-x86_64");
    k.field("machine.rs", include_str!("machine.rs"))
        .field("elf.rs", include_str!("elf.rs"))
        .field("elfdeps.rs", include_str!("../elfdeps.rs"));
    for text in [DOM0_INIT, GUEST_CONSOLE, GUEST_INIT] {
        k.field("script", text);
    }
    k.field("epoch", epoch.to_string());
    for b in &blobs {
        k.field("input", &b.sha256);
    }
    let key = k.finish();
    let dir = cache.root().join("machines").join(&key);
    let machine = Machine {
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
    crate::ui::step("boot machine x86_64: assembling Xen, dom0 kernel and initramfs");
    assemble_to(ws, cache, epoch, &dir)?;
    Ok(machine)
}

/// Assembles the machine's files into `dir` (which appears whole or not at all).
pub fn assemble_to(ws: &Workspace, cache: &Cache, epoch: u64, dir: &Path) -> Result<()> {
    let union = union(ws, cache)?;
    // Another process may have finished the same machine meanwhile: same key, same bytes.
    fsx::create_dir_atomic(dir, true, |tmp| assemble(&union, tmp, epoch))
}

fn assemble(union: &Union, out: &Path, epoch: u64) -> Result<()> {
    // Xen: the gzip'd multiboot ELF, decompressed for QEMU's -kernel.
    let xen_gz = union.file("xen-hypervisor-4.17-amd64", "/boot/xen-4.17-amd64.gz")?;
    let mut xen = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&xen_gz)?)
        .read_to_end(&mut xen)
        .context("decompressing Xen")?;
    fsx::write_atomic(&out.join("xen"), &xen)?;

    // Debian's kernel is an xz bzImage; decompressing it under emulation costs seconds per
    // boot. Xen loads dom0 from the plain ELF, and guests from a gzip of it (xl unpacks gzip
    // fast; an ELF this big would make the bundle larger than it saves).
    let kernel = kernel(union)?;
    let bzimage = fs_err::read(kernel.root.join(format!("boot/vmlinuz-{}", kernel.version)))?;
    let vmlinux = elf::vmlinux_from_bzimage(&bzimage).context("extracting the kernel ELF")?;
    fsx::write_atomic(&out.join("vmlinux"), &vmlinux)?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &vmlinux)?;
    fsx::write_atomic(&out.join("vmlinux.gz"), &gz.finish()?)?;

    let mut dom0 = Tree::new();
    skeleton(&mut dom0)?;
    let mut wanted = BTreeSet::new();
    for p in PROGRAMS {
        union.closure(p, &mut wanted)?;
    }
    for s in SCRIPTS {
        wanted.insert(format!("/etc/xen/scripts/{s}"));
    }
    wanted.insert("/etc/xen/xl.conf".to_string());
    for path in &wanted {
        union.add_to(&mut dom0, path)?;
    }
    for b in ["xl", "xenstored", "xenconsoled"] {
        dom0.add_symlink(
            &format!("usr/sbin/{b}"),
            &format!("../lib/xen-4.17/bin/{b}"),
        )?;
    }
    dom0.add_symlink(
        "usr/bin/vchan-socket-proxy",
        "../lib/xen-4.17/bin/vchan-socket-proxy",
    )?;
    for b in [
        "read", "write", "ls", "list", "rm", "exists", "watch", "chmod",
    ] {
        dom0.add_symlink(&format!("usr/bin/xenstore-{b}"), "xenstore")?;
    }
    let order = kernel.modules(DOM0_MODULES)?;
    for m in &order {
        dom0.add_host_file(
            &format!("lib/modules/{m}"),
            kernel.module_dir().join(m),
            0o644,
        )?;
    }
    dom0.add_file("lib/modules/load.order", order.join("\n") + "\n", 0o644)?;
    dom0.add_file("init", DOM0_INIT, 0o755)?;
    dom0.add_file("usr/bin/guest-console", GUEST_CONSOLE, 0o755)?;
    write_gz(&dom0, &out.join("dom0.cpio.gz"), epoch)?;

    // The HVM addition: only what the base initramfs lacks. Uncompressed, like the
    // scenario bundles: gunzip under emulation costs more boot time than it saves.
    let mut hvm_wanted = BTreeSet::new();
    for p in HVM_PROGRAMS {
        union.closure(p, &mut hvm_wanted)?;
    }
    for f in HVM_FILES {
        union.follow(f, &mut hvm_wanted)?;
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
    union.add_to(&mut guest, "/bin/busybox")?;
    let mut xs = BTreeSet::new();
    union.closure("/usr/bin/xenstore", &mut xs)?;
    for p in &xs {
        union.add_to(&mut guest, p)?;
    }
    for b in ["read", "write", "ls"] {
        guest.add_symlink(&format!("bin/xenstore-{b}"), "/usr/bin/xenstore")?;
    }
    for m in kernel.modules(&["xen-blkfront"])? {
        let name = Path::new(&m)
            .file_name()
            .context("module name")?
            .to_string_lossy()
            .into_owned();
        guest.add_host_file(
            &format!("lib/modules/{name}"),
            kernel.module_dir().join(&m),
            0o644,
        )?;
    }
    guest.add_file("init", GUEST_INIT, 0o755)?;
    write_gz(&guest, &out.join("guest.cpio.gz"), epoch)?;
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
fn union(ws: &Workspace, cache: &Cache) -> Result<Union> {
    let mut roots = BTreeMap::new();
    for p in PACKAGES.iter().chain(HVM_PACKAGES) {
        let crate::lock::Resolved::Debs(debs) = ws.lock.resolve(p)? else {
            bail!("`{p}` must be a binary package");
        };
        for d in debs {
            roots.insert(d.name.clone(), cache.unpacked_deb(&d.blob()?)?);
        }
    }
    Ok(Union::new(roots))
}

/// The versioned kernel package behind `linux-image-amd64`.
fn kernel(union: &Union) -> Result<Kernel> {
    let (name, root) = union
        .roots()
        .iter()
        .find(|(n, _)| n.starts_with("linux-image-") && n.as_str() != "linux-image-amd64")
        .context("no versioned linux-image package: run `cargo xtask pin`")?;
    let version = name.trim_start_matches("linux-image-").to_string();
    Ok(Kernel {
        root: root.clone(),
        version,
    })
}

impl Kernel {
    fn module_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.version)
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
            let bytes = fs_err::read(k.module_dir().join(&p))
                .with_context(|| format!("reading module {p}"))?;
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
