//! aarch64 machines: QEMU's `virt` board with EL2 for Xen, which finds its dom0 kernel and
//! initramfs as device-tree modules that QEMU's guest loader places in RAM.

use anyhow::Result;

use super::{no_comma, Arch, Load};

pub static ARCH: Arch = Arch {
    debian: "arm64",
    triplet: "aarch64-linux-gnu",
    xen_suffix: "",
    qemu: "qemu-system-aarch64",
    xen_console: "console=dtuart dtuart=serial0",
    dom0_cmdline: "console=hvc0 earlycon=xen",
    hvm: false,
    dom0_kernel,
    load,
};

/// Debian's arm64 `vmlinuz` is already an uncompressed Image, which Xen boots as it is.
fn dom0_kernel(image: &[u8]) -> Result<Vec<u8>> {
    if image.get(56..60) != Some(b"ARM\x64") {
        anyhow::bail!("the arm64 kernel has no Image header (magic ARM\\x64 at byte 56)");
    }
    Ok(image.to_vec())
}

/// Where the guest loader puts the dom0 kernel and initramfs: RAM starts at 1 GiB on
/// `virt`; the kernel (about 32 MiB) gets 64 MiB, the initramfs what follows.
const KERNEL_AT: &str = "0x50000000";
const INITRD_AT: &str = "0x54000000";

fn load(l: &Load) -> Result<Vec<String>> {
    // The guest loader's options are comma-separated: a comma in a value is doubled.
    let bootargs = l.kernel_cmdline.replace(',', ",,");
    Ok(vec![
        "-kernel".into(),
        l.xen.into(),
        "-append".into(),
        l.xen_cmdline.into(),
        "-device".into(),
        format!(
            "guest-loader,addr={KERNEL_AT},kernel={},bootargs={bootargs}",
            no_comma(l.kernel)?
        ),
        "-device".into(),
        format!(
            "guest-loader,addr={INITRD_AT},initrd={}",
            no_comma(l.initrd)?
        ),
    ])
}

/// A domain Xen starts by itself at boot (dom0less): its kernel, ramdisk and command line,
/// placed in RAM by QEMU's generic loader and described under the device tree's `/chosen`.
pub struct Dom0lessDomain<'a> {
    /// As QEMU in its sandbox sees them, with their sizes.
    pub kernel: (&'a str, u64),
    pub ramdisk: Option<(&'a str, u64)>,
    pub bootargs: &'a str,
    pub memory_mib: u32,
}

/// Where the domain's kernel and ramdisk go (as for dom0's, see [`KERNEL_AT`]).
const DOMU_KERNEL_AT: u64 = 0x5000_0000;
const DOMU_RAMDISK_AT: u64 = 0x5400_0000;

/// The board's device tree (`dts`, as dtc decompiles QEMU's `dumpdtb`) with the domain added
/// under `/chosen`: a `xen,domain` node with one vCPU, its memory, an emulated PL011 for its
/// console (Debian's release-build Xen refuses guests' `console_io`), and its modules.
pub fn with_dom0less_domain(dts: &str, d: &Dom0lessDomain) -> Result<String> {
    let Some(at) = dts.find("\tchosen {\n") else {
        anyhow::bail!("QEMU's device tree has no /chosen node to describe the domain in");
    };
    let mut node = format!(
        "\t\tdomU1 {{\n\t\t\tcompatible = \"xen,domain\";\n\
         \t\t\t#address-cells = <0x02>;\n\t\t\t#size-cells = <0x02>;\n\
         \t\t\tmemory = <0x00 {:#x}>;\n\t\t\tcpus = <0x01>;\n\t\t\tvpl011;\n",
        u64::from(d.memory_mib) * 1024
    );
    let mut module = |kind: &str, at: u64, size: u64, args: Option<&str>| {
        node += &format!(
            "\t\t\tmodule@{at:x} {{\n\t\t\t\tcompatible = \"multiboot,{kind}\", \"multiboot,module\";\n\
             \t\t\t\treg = <{:#x} {:#x} {:#x} {:#x}>;\n",
            at >> 32,
            at & 0xffff_ffff,
            size >> 32,
            size & 0xffff_ffff
        );
        if let Some(a) = args {
            node += &format!("\t\t\t\tbootargs = \"{}\";\n", a.replace('"', "\\\""));
        }
        node += "\t\t\t};\n";
    };
    module("kernel", DOMU_KERNEL_AT, d.kernel.1, Some(d.bootargs));
    if let Some((_, size)) = d.ramdisk {
        module("ramdisk", DOMU_RAMDISK_AT, size, None);
    }
    node += "\t\t};\n";
    // After the node's properties (dtc wants them before subnodes): at its end.
    let Some(end) = dts[at..].find("\n\t};\n") else {
        anyhow::bail!("QEMU's device tree has an unterminated /chosen node");
    };
    let insert = at + end + 1;
    Ok(format!("{}{node}{}", &dts[..insert], &dts[insert..]))
}

/// QEMU's generic loader placing the domain's files where [`with_dom0less_domain`] says.
pub fn dom0less_loaders(d: &Dom0lessDomain) -> Result<Vec<String>> {
    let mut out = vec![
        "-device".into(),
        format!(
            "loader,file={},addr={DOMU_KERNEL_AT:#x},force-raw=on",
            no_comma(d.kernel.0)?
        ),
    ];
    if let Some((file, _)) = d.ramdisk {
        out.push("-device".into());
        out.push(format!(
            "loader,file={},addr={DOMU_RAMDISK_AT:#x},force-raw=on",
            no_comma(file)?
        ));
    }
    Ok(out)
}

/// A dom0less domain's console line on Xen's serial port, `(XEN) DOM1: text`: the text.
pub fn dom0less_console(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("(XEN) DOM")?;
    let (id, text) = rest.split_once(": ")?;
    id.bytes().all(|b| b.is_ascii_digit()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_goes_under_chosen() {
        let dts = "/ {\n\tchosen {\n\t\tbootargs = \"x\";\n\t};\n};\n";
        let d = Dom0lessDomain {
            kernel: ("/work/k", 0x1234),
            ramdisk: Some(("/work/r", 0x10)),
            bootargs: "console=ttyAMA0",
            memory_mib: 128,
        };
        let out = with_dom0less_domain(dts, &d).unwrap();
        assert!(
            out.contains("\t\tbootargs = \"x\";\n\t\tdomU1 {\n"),
            "{out}"
        );
        assert!(out.contains("memory = <0x00 0x20000>;"), "{out}");
        assert!(out.contains("reg = <0x0 0x50000000 0x0 0x1234>;"), "{out}");
        assert!(out.contains("compatible = \"multiboot,ramdisk\""), "{out}");
        assert!(out.ends_with("\t\t};\n\t};\n};\n"), "{out}");
        assert_eq!(dom0less_console("(XEN) DOM1: hello: x"), Some("hello: x"));
        assert_eq!(dom0less_console("(XEN) Xen version"), None);
    }
}
