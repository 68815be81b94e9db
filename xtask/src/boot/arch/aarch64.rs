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

/// Where Xen finds a module of a `xen,domain` node: in RAM (`reg`), or in a file on the EFI
/// system partition that Xen's EFI loader reads and then describes with `reg` itself.
pub enum ModuleAt<'a> {
    Reg { at: u64, size: u64 },
    UefiBinary(&'a str),
}

/// A `multiboot,<kind>` module node (`kind`: kernel, ramdisk, device-tree).
pub struct Module<'a> {
    pub kind: &'static str,
    pub at: ModuleAt<'a>,
    pub bootargs: Option<&'a str>,
}

/// A `xen,domain` node under `/chosen`: its properties as `(name, dts value)` (an empty
/// value: a property without one) and its modules.
pub struct DomainNode<'a> {
    pub name: String,
    pub properties: Vec<(String, String)>,
    pub modules: Vec<Module<'a>>,
}

impl DomainNode<'_> {
    /// The properties every domain here gets: two-cell addresses and sizes, its memory,
    /// `cpus` vCPUs and an emulated PL011 for its console (Debian's release-build Xen
    /// refuses guests' `console_io`).
    pub fn default_properties(memory_mib: u32, cpus: u32) -> Vec<(String, String)> {
        [
            ("compatible", "\"xen,domain\"".to_string()),
            ("#address-cells", "<0x02>".into()),
            ("#size-cells", "<0x02>".into()),
            (
                "memory",
                format!("<0x00 {:#x}>", u64::from(memory_mib) * 1024),
            ),
            ("cpus", format!("<{cpus:#04x}>")),
            ("vpl011", String::new()),
        ]
        .map(|(n, v)| (n.to_string(), v))
        .to_vec()
    }

    fn dts(&self) -> String {
        let mut node = format!("\t\t{} {{\n", self.name);
        for (name, value) in &self.properties {
            node += &if value.is_empty() {
                format!("\t\t\t{name};\n")
            } else {
                format!("\t\t\t{name} = {value};\n")
            };
        }
        for m in &self.modules {
            let unit = match m.at {
                ModuleAt::Reg { at, .. } => format!("module@{at:x}"),
                ModuleAt::UefiBinary(_) => format!("module-{}", m.kind),
            };
            node += &format!(
                "\t\t\t{unit} {{\n\t\t\t\tcompatible = \"multiboot,{}\", \"multiboot,module\";\n",
                m.kind
            );
            node += &match m.at {
                ModuleAt::Reg { at, size } => format!(
                    "\t\t\t\treg = <{:#x} {:#x} {:#x} {:#x}>;\n",
                    at >> 32,
                    at & 0xffff_ffff,
                    size >> 32,
                    size & 0xffff_ffff
                ),
                ModuleAt::UefiBinary(file) => {
                    format!("\t\t\t\txen,uefi-binary = \"{}\";\n", dts_escape(file))
                }
            };
            if let Some(a) = m.bootargs {
                node += &format!("\t\t\t\tbootargs = \"{}\";\n", dts_escape(a));
            }
            node += "\t\t\t};\n";
        }
        node + "\t\t};\n"
    }
}

/// `s` inside a dts string literal.
fn dts_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The board's device tree (`dts`, as dtc decompiles it) with `nodes` added under `/chosen`
/// and `chosen_properties` (such as `xen,uefi-cfg-load`) added to it.
pub fn with_chosen_nodes(
    dts: &str,
    chosen_properties: &[&str],
    nodes: &[DomainNode],
) -> Result<String> {
    let Some(at) = dts.find("\tchosen {\n") else {
        anyhow::bail!("the board's device tree has no /chosen node to describe the domains in");
    };
    let mut text: String = chosen_properties
        .iter()
        .map(|p| format!("\t\t{p};\n"))
        .collect();
    for n in nodes {
        text += &n.dts();
    }
    // After the node's properties (dtc wants them before subnodes): at its end.
    let Some(end) = dts[at..].find("\n\t};\n") else {
        anyhow::bail!("the board's device tree has an unterminated /chosen node");
    };
    let insert = at + end + 1;
    Ok(format!("{}{text}{}", &dts[..insert], &dts[insert..]))
}

/// The board's device tree (`dts`, as dtc decompiles QEMU's `dumpdtb`) with the domain added
/// under `/chosen`: a `xen,domain` node with one vCPU, its memory, a vpl011 and its modules
/// where [`dom0less_loaders`] puts them.
pub fn with_dom0less_domain(dts: &str, d: &Dom0lessDomain) -> Result<String> {
    let mut modules = vec![Module {
        kind: "kernel",
        at: ModuleAt::Reg {
            at: DOMU_KERNEL_AT,
            size: d.kernel.1,
        },
        bootargs: Some(d.bootargs),
    }];
    if let Some((_, size)) = d.ramdisk {
        modules.push(Module {
            kind: "ramdisk",
            at: ModuleAt::Reg {
                at: DOMU_RAMDISK_AT,
                size,
            },
            bootargs: None,
        });
    }
    let node = DomainNode {
        name: "domU1".into(),
        properties: DomainNode::default_properties(d.memory_mib, 1),
        modules,
    };
    with_chosen_nodes(dts, &[], &[node])
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

    #[test]
    fn efi_modules_name_their_files() {
        let dts = "/ {\n\tchosen {\n\t};\n};\n";
        let node = DomainNode {
            name: "domU2".into(),
            properties: vec![
                ("vpl011".into(), String::new()),
                ("cpus".into(), "<2>".into()),
            ],
            modules: vec![
                Module {
                    kind: "kernel",
                    at: ModuleAt::UefiBinary("Image"),
                    bootargs: Some("console=ttyAMA0 x=\"y\""),
                },
                Module {
                    kind: "device-tree",
                    at: ModuleAt::UefiBinary("pass.dtb"),
                    bootargs: None,
                },
            ],
        };
        let out = with_chosen_nodes(dts, &["xen,uefi-cfg-load"], &[node]).unwrap();
        assert_eq!(
            out,
            "/ {\n\tchosen {\n\t\txen,uefi-cfg-load;\n\t\tdomU2 {\n\t\t\tvpl011;\n\t\t\tcpus = <2>;\n\
             \t\t\tmodule-kernel {\n\t\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\
             \t\t\t\txen,uefi-binary = \"Image\";\n\t\t\t\tbootargs = \"console=ttyAMA0 x=\\\"y\\\"\";\n\t\t\t};\n\
             \t\t\tmodule-device-tree {\n\t\t\t\tcompatible = \"multiboot,device-tree\", \"multiboot,module\";\n\
             \t\t\t\txen,uefi-binary = \"pass.dtb\";\n\t\t\t};\n\t\t};\n\t};\n};\n"
        );
    }
}
