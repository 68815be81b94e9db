//! What differs between the machines' architectures: where Debian's hypervisor and kernel
//! packages put their files, what Xen and the dom0 kernel are booted from, and how QEMU
//! loads them. Everything else about a machine is the same on every architecture.

pub mod aarch64;
mod x86;

use anyhow::Result;

/// The architecture-specific part of a machine (`arch` of its file).
pub struct Arch {
    /// Debian's architecture (`amd64`, `arm64`): package and file names carry it.
    pub debian: &'static str,
    /// The multiarch folder of the C library (`/lib/<triplet>`).
    pub triplet: &'static str,
    /// How Debian's hypervisor file name ends after the architecture (`.gz`: gzip'd).
    pub xen_suffix: &'static str,
    /// The QEMU that emulates the machine.
    pub qemu: &'static str,
    /// Xen's console options on the emulated serial port.
    pub xen_console: &'static str,
    /// The dom0 kernel's command line.
    pub dom0_cmdline: &'static str,
    /// Whether Xen runs HVM guests there (libxl then runs Debian's QEMU in dom0).
    pub hvm: bool,
    /// The dom0 kernel as Xen boots it, from Debian's `/boot/vmlinuz-*`.
    pub dom0_kernel: fn(&[u8]) -> Result<Vec<u8>>,
    /// QEMU's arguments that load Xen (with its command line) and the dom0 kernel (with its
    /// command line) and initramfs, as QEMU inside its sandbox sees the files.
    pub load: fn(&Load) -> Result<Vec<String>>,
}

/// What [`Arch::load`] boots.
pub struct Load<'a> {
    pub xen: &'a str,
    pub xen_cmdline: &'a str,
    pub kernel: &'a str,
    pub kernel_cmdline: &'a str,
    pub initrd: &'a str,
}

/// The part of machine architecture `arch` (`x86_64`, `x86_32`: a 64-bit Xen; `aarch64`).
pub fn of(arch: &str) -> &'static Arch {
    match arch {
        "aarch64" => &aarch64::ARCH,
        _ => &x86::ARCH,
    }
}

impl Arch {
    /// The hypervisor in Debian's package for release `xen`: (package, path in it); a
    /// path ending in `.gz` is gzip'd.
    pub fn hypervisor(&self, xen: &str) -> (String, String) {
        let pkg = format!("xen-hypervisor-{xen}-{}", self.debian);
        let path = format!("/boot/xen-{xen}-{}{}", self.debian, self.xen_suffix);
        (pkg, path)
    }

    /// Debian's kernel metapackage, which names the versioned one.
    pub fn kernel_meta(&self) -> String {
        format!("linux-image-{}", self.debian)
    }
}

/// Rejects a path QEMU would split at a comma (`-initrd` lists, `-device` options).
pub fn no_comma(p: &str) -> Result<&str> {
    if p.contains(',') {
        anyhow::bail!("{p}: QEMU cannot take a file whose path contains a comma: move the checkout or set CARGO_TARGET_DIR");
    }
    Ok(p)
}
