//! The x86_64 test machine: Xen 4.17 and a Debian dom0 kernel with a dom0 initramfs, all
//! from pinned Debian packages (nothing from the host, so the machine is the same anywhere).
//! The initramfs is written by the project's own cpio writer; it keeps only the files the
//! dom0 programs need, found from their ELF headers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use stubdoms_archive::Tree;

use super::elf;
use crate::cache::Cache;
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
const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/lib",
    "/usr/lib",
];

/// The machine's files, ready to boot.
pub struct Machine {
    pub xen: PathBuf,
    pub dom0_kernel: PathBuf,
    pub dom0_initrd: PathBuf,
    /// The Debian kernel as a guest kernel image, and the tiny guest initramfs.
    pub guest_kernel: PathBuf,
    pub guest_initrd: PathBuf,
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

pub fn blobs(ws: &Workspace) -> Result<Vec<Blob>> {
    let mut out = Vec::new();
    for p in PACKAGES {
        out.extend(ws.lock.resolve(p)?.blobs()?);
    }
    Ok(out)
}

/// Assembles the machine, or reuses the one stored under the same key.
pub fn x86_64(ws: &Workspace, cache: &Cache, epoch: u64) -> Result<Machine> {
    let blobs = blobs(ws)?;
    let mut h = Sha256::new();
    h.update(include_str!("machine.rs"));
    h.update(include_str!("elf.rs"));
    for text in [DOM0_INIT, GUEST_CONSOLE, GUEST_INIT] {
        h.update(text);
    }
    h.update(epoch.to_le_bytes());
    for b in &blobs {
        h.update(&b.sha256);
    }
    let key = format!("{:x}", h.finalize());
    let dir = cache.root().join("machines").join(&key);
    let machine = Machine {
        xen: dir.join("xen"),
        dom0_kernel: dir.join("vmlinux"),
        dom0_initrd: dir.join("dom0.cpio.gz"),
        guest_kernel: dir.join("vmlinux.gz"),
        guest_initrd: dir.join("guest.cpio.gz"),
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
    let tmp = fsx::partial_path(dir);
    fsx::remove_dir_if_exists(&tmp)?;
    std::fs::create_dir_all(&tmp)?;
    let union = Union::new(ws, cache)?;
    if let Err(e) = assemble(&union, &tmp, epoch) {
        let _ = fsx::remove_dir_if_exists(&tmp);
        return Err(e);
    }
    // Another process may have finished the same machine meanwhile: same key, same bytes.
    if dir.is_dir() {
        fsx::remove_dir_if_exists(dir)?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("storing {}", dir.display()))
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
    let kernel = union.kernel()?;
    let bzimage = std::fs::read(kernel.root.join(format!("boot/vmlinuz-{}", kernel.version)))?;
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

/// The unpacked packages seen as one file system, without copying them together.
struct Union {
    /// Package name -> unpacked tree.
    roots: BTreeMap<String, PathBuf>,
}

struct Kernel {
    root: PathBuf,
    version: String,
}

impl Union {
    fn new(ws: &Workspace, cache: &Cache) -> Result<Union> {
        let mut roots = BTreeMap::new();
        for p in PACKAGES {
            let crate::lock::Resolved::Debs(debs) = ws.lock.resolve(p)? else {
                bail!("`{p}` must be a binary package");
            };
            for d in debs {
                roots.insert(d.name.clone(), cache.unpacked_deb(&d.blob()?)?);
            }
        }
        Ok(Union { roots })
    }

    fn file(&self, package: &str, path: &str) -> Result<PathBuf> {
        let root = self
            .roots
            .get(package)
            .with_context(|| format!("package {package} is not part of the machine"))?;
        let p = root.join(path.trim_start_matches('/'));
        if !p.is_file() {
            bail!("{package} has no {path}: is the pin right?");
        }
        Ok(p)
    }

    /// The package that holds `path` (as a file or a symlink), and that host path.
    fn find(&self, path: &str) -> Option<(&str, PathBuf)> {
        let rel = path.trim_start_matches('/');
        self.roots.iter().find_map(|(name, root)| {
            let p = root.join(rel);
            std::fs::symlink_metadata(&p)
                .ok()
                .filter(|m| !m.is_dir())
                .map(|_| (name.as_str(), p))
        })
    }

    /// `path`, the symlinks it goes through and the libraries it needs, recursively.
    fn closure(&self, path: &str, out: &mut BTreeSet<String>) -> Result<()> {
        let mut seen = BTreeSet::new();
        let mut queue = vec![path.to_string()];
        while let Some(p) = queue.pop() {
            let real = self.follow(&p, out)?;
            if !seen.insert(real.clone()) {
                continue;
            }
            let (_, host) = self
                .find(&real)
                .with_context(|| format!("{real} vanished"))?;
            let bytes = std::fs::read(&host)?;
            let Some((interp, needed)) = elf::needs(&bytes).with_context(|| real.clone())? else {
                continue;
            };
            queue.extend(interp);
            for so in needed {
                let found = LIB_DIRS
                    .iter()
                    .map(|d| format!("{d}/{so}"))
                    .find(|p| self.find(p).is_some())
                    .with_context(|| format!("{so} (needed by {real}) is in none of the machine's packages: add its package to inputs.lock and boot/machine.rs"))?;
                queue.push(found);
            }
        }
        Ok(())
    }

    /// Adds `path` and every symlink hop to `out`; returns the real file's path.
    fn follow(&self, path: &str, out: &mut BTreeSet<String>) -> Result<String> {
        let mut p = path.to_string();
        for _ in 0..16 {
            let (_, host) = self
                .find(&p)
                .with_context(|| format!("{p} is in none of the machine's packages"))?;
            out.insert(p.clone());
            match std::fs::read_link(&host) {
                Ok(target) => {
                    let t = target.to_string_lossy();
                    p = if t.starts_with('/') {
                        t.into_owned()
                    } else {
                        normalize(&format!("{}/{t}", parent(&p)))
                    };
                }
                Err(_) => return Ok(p),
            }
        }
        bail!("symlink loop at {path}")
    }

    /// Adds one union path (file or symlink) to a tree.
    fn add_to(&self, tree: &mut Tree, path: &str) -> Result<()> {
        let (_, host) = self
            .find(path)
            .with_context(|| format!("{path} is in none of the machine's packages"))?;
        let rel = path.trim_start_matches('/');
        match std::fs::read_link(&host) {
            Ok(target) => tree.add_symlink(rel, &target.to_string_lossy())?,
            Err(_) => {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&host)?.permissions().mode();
                tree.add_host_file(rel, &host, stubdoms_archive::normalize_file_mode(mode))?
            }
        }
        Ok(())
    }

    fn kernel(&self) -> Result<Kernel> {
        let (name, root) = self
            .roots
            .iter()
            .find(|(n, _)| n.starts_with("linux-image-") && n.as_str() != "linux-image-amd64")
            .context("no versioned linux-image package: run `cargo xtask pin`")?;
        let version = name.trim_start_matches("linux-image-").to_string();
        Ok(Kernel {
            root: root.clone(),
            version,
        })
    }
}

impl Kernel {
    fn module_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.version)
    }

    /// Module paths (relative to the module folder), dependencies first, each once.
    fn modules(&self, names: &[&str]) -> Result<Vec<String>> {
        let order = std::fs::read_to_string(self.module_dir().join("modules.order"))
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
            let bytes = std::fs::read(k.module_dir().join(&p))
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

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

/// Lexical `.`/`..` folding of an absolute path (never touches the host's file system).
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalizes_lexically() {
        assert_eq!(
            super::normalize("/lib/x86_64-linux-gnu/../../usr/lib/a.so"),
            "/usr/lib/a.so"
        );
        assert_eq!(super::normalize("/a/./b//c"), "/a/b/c");
    }
}
