//! x86 machines (x86_64 and x86_32 guests alike run on a 64-bit Xen): Xen is a multiboot
//! kernel, the dom0 kernel and initramfs its modules.

use anyhow::{Context, Result};

use super::{no_comma, Arch, Load};

pub static ARCH: Arch = Arch {
    debian: "amd64",
    triplet: "x86_64-linux-gnu",
    xen_suffix: ".gz",
    qemu: "qemu-system-x86_64",
    xen_console: "console=com1 com1=115200,8n1",
    dom0_cmdline: "console=hvc0 earlyprintk=xen",
    hvm: true,
    dom0_kernel,
    load,
};

/// Debian's kernel is an xz bzImage; decompressing it under emulation costs seconds per
/// boot, so Xen gets the plain ELF inside.
fn dom0_kernel(bzimage: &[u8]) -> Result<Vec<u8>> {
    crate::boot::elf::vmlinux_from_bzimage(bzimage).context("extracting the kernel ELF")
}

/// Multiboot: QEMU's `-initrd` lists the modules, each with its command line.
fn load(l: &Load) -> Result<Vec<String>> {
    Ok(vec![
        "-kernel".into(),
        l.xen.into(),
        "-append".into(),
        l.xen_cmdline.into(),
        "-initrd".into(),
        format!(
            "{} {},{}",
            no_comma(l.kernel)?,
            l.kernel_cmdline,
            no_comma(l.initrd)?
        ),
    ])
}
