//! The ESP configuration: Xen's EFI configuration file syntax (`[section]`s, `key=value`
//! lines, `#` comments) with the dom0less keywords of the Xen design proposal
//! `efi-arm-dom0less` (`domu#_kernel`, `domu#_ramdisk`, `domu#_dtb`, `domu#_property`).
//! Read strictly: every error names `file:line` and says what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file the configuration names, as written, with the line that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub name: String,
    pub line: usize,
}

/// One guest: the lines `domu<number>_*` of a section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guest {
    /// The kernel and its command line.
    pub kernel: Option<(FileRef, String)>,
    pub ramdisk: Option<FileRef>,
    /// A device-tree fragment for passthrough.
    pub dtb: Option<FileRef>,
    /// Properties of the guest's `xen,domain` node, in order, as `(name, dts value)`; an
    /// empty value is a property without one (such as `vpl011`).
    pub properties: Vec<(String, String)>,
    /// The first line that named the guest.
    pub line: usize,
}

/// A `[section]` of the file (lines before any section header belong to `global`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub line: usize,
    pub options: Option<String>,
    /// Dom0's kernel and its command line.
    pub kernel: Option<(FileRef, String)>,
    pub ramdisk: Option<FileRef>,
    pub xsm: Option<FileRef>,
    /// The board's device tree.
    pub dtb: Option<FileRef>,
    /// By the number in `domu#_`, which only links lines to a guest (it sets no domid).
    pub guests: BTreeMap<u32, Guest>,
}

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    /// `default=` of `[global]`.
    pub default: Option<String>,
    pub sections: Vec<Section>,
}

impl Config {
    /// The section Xen boots: `[global]`'s `default=`, else the only section with a kernel
    /// or a guest.
    pub fn boot_section(&self) -> anyhow::Result<&Section> {
        let at = |line: usize| format!("{}:{line}", self.path.display());
        if let Some(name) = &self.default {
            return self.sections.iter().find(|s| &s.name == name).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: default={name} names no section: add a [{name}] section or correct the name",
                    at(self.sections[0].line.max(1))
                )
            });
        }
        let bootable: Vec<&Section> = self
            .sections
            .iter()
            .filter(|s| s.kernel.is_some() || !s.guests.is_empty())
            .collect();
        match bootable.as_slice() {
            [one] => Ok(one),
            [] => anyhow::bail!(
                "{}: nothing to boot: give a kernel= (dom0) or a domu1_kernel= line",
                self.path.display()
            ),
            _ => anyhow::bail!(
                "{}: several sections could boot: name one with default= in [global]",
                self.path.display()
            ),
        }
    }
}

/// Reads the configuration at `path`; file names in it stay relative to its folder.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = fs_err::read_to_string(path)?;
    parse(path, &text)
}

/// The guest keywords and what each one sets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GuestKey {
    Kernel,
    Ramdisk,
    Dtb,
    Property,
}

pub fn parse(path: &Path, text: &str) -> anyhow::Result<Config> {
    let mut config = Config {
        path: path.to_path_buf(),
        default: None,
        sections: vec![Section {
            name: "global".into(),
            line: 1,
            ..Section::default()
        }],
    };
    // The section later lines belong to; `[global]` may head the implicit first one once.
    let (mut current, mut global_headed) = (0, false);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = format!("{}:{line}", path.display());
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(rest) = l.strip_prefix('[') {
            let Some(name) = rest
                .strip_suffix(']')
                .map(str::trim)
                .filter(|n| !n.is_empty())
            else {
                anyhow::bail!("{at}: a section header is `[name]`, not `{l}`");
            };
            if name == "global" && !global_headed {
                global_headed = true;
                current = 0;
                continue;
            }
            if config.sections.iter().any(|s| s.name == name) {
                anyhow::bail!("{at}: section [{name}] is given twice: merge the two");
            }
            config.sections.push(Section {
                name: name.to_string(),
                line,
                ..Section::default()
            });
            current = config.sections.len() - 1;
            continue;
        }
        let Some((key, value)) = l.split_once('=') else {
            anyhow::bail!("{at}: `{l}` is not `keyword=value`");
        };
        let (key, value) = (key.trim(), value.trim());
        let section = &mut config.sections[current];
        let section_name = section.name.clone();
        let file = |what: &str| -> anyhow::Result<FileRef> {
            let name = value.split_whitespace().next().unwrap_or("");
            if name.is_empty() {
                anyhow::bail!("{at}: {key}= needs {what}");
            }
            Ok(FileRef {
                name: name.to_string(),
                line,
            })
        };
        let once = |set: bool| -> anyhow::Result<()> {
            if set {
                anyhow::bail!("{at}: {key}= is given twice in [{section_name}]: keep one");
            }
            Ok(())
        };
        if let Some(rest) = key.strip_prefix("domu") {
            let (number, kind) = guest_key(&at, key, rest)?;
            let guest = section.guests.entry(number).or_insert_with(|| Guest {
                line,
                ..Guest::default()
            });
            let twice = |set: bool| -> anyhow::Result<()> {
                if set {
                    anyhow::bail!(
                        "{at}: {key}= is given twice for guest {number}: a guest has one kernel, ramdisk and dtb"
                    );
                }
                Ok(())
            };
            match kind {
                GuestKey::Kernel => {
                    twice(guest.kernel.is_some())?;
                    let f = file("a kernel file")?;
                    let cmdline = value[f.name.len()..].trim().to_string();
                    guest.kernel = Some((f, cmdline));
                }
                GuestKey::Ramdisk => {
                    twice(guest.ramdisk.is_some())?;
                    guest.ramdisk = Some(file("a ramdisk file")?);
                }
                GuestKey::Dtb => {
                    twice(guest.dtb.is_some())?;
                    guest.dtb = Some(file("a device-tree fragment")?);
                }
                GuestKey::Property => guest.properties.push(property(&at, value)?),
            }
            continue;
        }
        match key {
            "default" if section_name == "global" => {
                once(config.default.is_some())?;
                config.default = Some(value.to_string());
            }
            "options" => {
                once(section.options.is_some())?;
                section.options = Some(value.to_string());
            }
            "kernel" => {
                once(section.kernel.is_some())?;
                let f = file("a kernel file")?;
                let cmdline = value[f.name.len()..].trim().to_string();
                section.kernel = Some((f, cmdline));
            }
            "ramdisk" => {
                once(section.ramdisk.is_some())?;
                section.ramdisk = Some(file("a ramdisk file")?);
            }
            "xsm" => {
                once(section.xsm.is_some())?;
                section.xsm = Some(file("an XSM policy file")?);
            }
            "dtb" => {
                once(section.dtb.is_some())?;
                section.dtb = Some(file("a device-tree file")?);
            }
            _ => anyhow::bail!(
                "{at}: unknown keyword `{key}`: use options, kernel, ramdisk, xsm, dtb, \
                 domu<N>_kernel, domu<N>_ramdisk, domu<N>_dtb or domu<N>_property \
                 (default only in [global])"
            ),
        }
    }
    for s in &config.sections {
        for (n, g) in &s.guests {
            if g.kernel.is_none() {
                anyhow::bail!(
                    "{}:{}: guest {n} has no domu{n}_kernel= line: add one (file and command line)",
                    path.display(),
                    g.line
                );
            }
        }
    }
    Ok(config)
}

/// `1_kernel` (after `domu`): the guest's number and keyword.
fn guest_key(at: &str, key: &str, rest: &str) -> anyhow::Result<(u32, GuestKey)> {
    let Some((number, kind)) = rest.split_once('_') else {
        anyhow::bail!("{at}: unknown keyword `{key}`: guest keywords are domu<N>_kernel, _ramdisk, _dtb, _property");
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!(
            "{at}: `{key}`: the guest number `{number}` is not a number: write domu1_{kind}, domu2_{kind}, ..."
        );
    }
    let number: u32 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("{at}: `{key}`: the guest number `{number}` is too large"))?;
    let kind = match kind {
        "kernel" => GuestKey::Kernel,
        "ramdisk" => GuestKey::Ramdisk,
        "dtb" => GuestKey::Dtb,
        "property" => GuestKey::Property,
        _ => anyhow::bail!(
            "{at}: unknown keyword `{key}`: guest keywords are domu{number}_kernel, _ramdisk, _dtb, _property"
        ),
    };
    Ok((number, kind))
}

/// `name=value` of a `domu#_property=` line as a device-tree property. The names
/// `address-cells` and `size-cells` get their `#` back (a line starting with `#` is a
/// comment). The value: nothing (a property without a value), numbers (cells, `<2>`), a
/// dts literal (`<...>`, `"..."`, `[...]`, as written), or other text (a string).
fn property(at: &str, text: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = match text.split_once('=') {
        Some((n, v)) => (n.trim(), v.trim()),
        None => (text.trim(), ""),
    };
    let usage = "write domu<N>_property=name=value, such as domu1_property=cpus=2";
    if name.is_empty() {
        anyhow::bail!("{at}: the property has no name: {usage}");
    }
    if let Some(bare) = name.strip_prefix('#') {
        anyhow::bail!(
            "{at}: write `{bare}` without its `#` (it is added back; a line starting with `#` \
             is a comment): domu<N>_property={bare}=..."
        );
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ",._+?-".contains(*c)))
    {
        anyhow::bail!(
            "{at}: property name `{name}` has `{bad}`, which device trees do not allow: {usage}"
        );
    }
    if name.len() > 31 {
        anyhow::bail!("{at}: property name `{name}` is longer than 31 characters");
    }
    let name = match name {
        "address-cells" | "size-cells" => format!("#{name}"),
        n => n.to_string(),
    };
    let value = if value.is_empty() {
        String::new()
    } else if value.split_whitespace().all(is_number) {
        format!("<{value}>")
    } else if value.starts_with('<') || value.starts_with('"') || value.starts_with('[') {
        check_literal(value).map_err(|why| {
            anyhow::anyhow!("{at}: the value of property `{name}` is malformed ({why}): {usage}")
        })?;
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    };
    Ok((name, value))
}

fn is_number(w: &str) -> bool {
    match w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        Some(hex) => !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// A dts value list: `<cells>`, `"string"`, `[bytes]`, separated by commas.
fn check_literal(v: &str) -> Result<(), &'static str> {
    let mut rest = v.trim();
    loop {
        let (close, ok): (char, fn(&str) -> bool) = match rest.chars().next() {
            Some('<') => ('>', |s| s.split_whitespace().all(is_number)),
            Some('[') => (']', |s| {
                s.split_whitespace()
                    .all(|b| b.len() % 2 == 0 && b.bytes().all(|c| c.is_ascii_hexdigit()))
            }),
            Some('"') => ('"', |s| !s.contains('\\')),
            _ => return Err("expected <cells>, \"string\" or [bytes]"),
        };
        let Some(end) = rest[1..].find(close) else {
            return Err("unterminated");
        };
        if !ok(&rest[1..1 + end]) {
            return Err("bad contents");
        }
        rest = rest[end + 2..].trim_start();
        if rest.is_empty() {
            return Ok(());
        }
        rest = rest
            .strip_prefix(',')
            .ok_or("values are separated by commas")?
            .trim_start();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> anyhow::Result<Config> {
        parse(Path::new("esp.cfg"), text)
    }

    #[test]
    fn the_seed_example_shape() {
        let c = parse_str(
            "[global]\ndefault=xen\n\n[xen]\n# Xen boot arguments\n\
             options=noreboot console=dtuart dtuart=serial0 bootscrub=0\n\
             # Xen device tree\ndtb=devicetree.dtb\n# Guest 1\n\
             domu1_property=address-cells=2\ndomu1_property=size-cells=2\n\
             domu1_kernel=Image-domu1.bin console=ttyAMA0 root=/dev/ram0 rw\n\
             domu1_ramdisk=ramdisk-domu1.cpio\ndomu1_dtb=passthrough-domu1.dtb\n\
             domu1_property=cpus=1\ndomu1_property=memory=0 0x20000\n\
             # Guest 2\ndomu2_kernel=Image-domu2.bin console=ttyAMA0 root=/dev/ram0 rw\n\
             domu2_property=vpl011\ndomu2_property=xen,enhanced=\"enabled\"\n",
        )
        .unwrap();
        let s = c.boot_section().unwrap();
        assert_eq!(s.name, "xen");
        assert_eq!(s.dtb.as_ref().unwrap().name, "devicetree.dtb");
        let g1 = &s.guests[&1];
        let (k, cmdline) = g1.kernel.as_ref().unwrap();
        assert_eq!((k.name.as_str(), k.line), ("Image-domu1.bin", 12));
        assert_eq!(cmdline, "console=ttyAMA0 root=/dev/ram0 rw");
        assert_eq!(
            g1.properties,
            [
                ("#address-cells", "<2>"),
                ("#size-cells", "<2>"),
                ("cpus", "<1>"),
                ("memory", "<0 0x20000>")
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        assert_eq!(
            s.guests[&2].properties,
            [("vpl011", ""), ("xen,enhanced", "\"enabled\"")]
                .map(|(n, v)| (n.to_string(), v.to_string()))
        );
    }

    #[test]
    fn repeated_properties_are_kept_as_written() {
        let c =
            parse_str("domu7_kernel=k\ndomu7_property=cpus=1\ndomu7_property=cpus=1\n").unwrap();
        assert_eq!(c.boot_section().unwrap().guests[&7].properties.len(), 2);
    }

    #[test]
    fn errors_name_the_line_and_what_to_do() {
        let cases: &[(&str, &str)] = &[
            ("[x]\nkernal=k\n", "esp.cfg:2: unknown keyword `kernal`"),
            (
                "domu1_ramdisk=r\n",
                "esp.cfg:1: guest 1 has no domu1_kernel= line: add one",
            ),
            (
                "domu1_kernel=a\ndomu1_kernel=b\n",
                "esp.cfg:2: domu1_kernel= is given twice for guest 1",
            ),
            (
                "domu1_kernel=a\ndomu1_ramdisk=r\ndomu1_ramdisk=r\n",
                "esp.cfg:3: domu1_ramdisk= is given twice for guest 1",
            ),
            (
                "domu1_kernel=a\ndomu1_dtb=f\ndomu1_dtb=f\n",
                "esp.cfg:3: domu1_dtb= is given twice",
            ),
            (
                "domux_kernel=a\n",
                "esp.cfg:1: `domux_kernel`: the guest number `x` is not a number",
            ),
            (
                "domu_kernel=a\n",
                "esp.cfg:1: `domu_kernel`: the guest number `` is not a number",
            ),
            (
                "domu1_initrd=a\n",
                "esp.cfg:1: unknown keyword `domu1_initrd`",
            ),
            (
                "domu1_kernel=a\ndomu1_property==2\n",
                "esp.cfg:2: the property has no name",
            ),
            (
                "domu1_kernel=a\ndomu1_property=#size-cells=2\n",
                "esp.cfg:2: write `size-cells` without its `#`",
            ),
            (
                "domu1_kernel=a\ndomu1_property=cpu s=2\n",
                "esp.cfg:2: property name `cpu s` has ` `",
            ),
            (
                "domu1_kernel=a\ndomu1_property=reg=<0x1 0x2\n",
                "esp.cfg:2: the value of property `reg` is malformed (unterminated)",
            ),
            (
                "domu1_kernel=a\ndomu1_property=reg=<0x1 zz>\n",
                "esp.cfg:2: the value of property `reg` is malformed (bad contents)",
            ),
            (
                "domu1_kernel=\n",
                "esp.cfg:1: domu1_kernel= needs a kernel file",
            ),
            (
                "kernel=a\nkernel=b\n",
                "esp.cfg:2: kernel= is given twice in [global]",
            ),
            ("[a\n", "esp.cfg:1: a section header is `[name]`"),
            ("[a]\n[a]\n", "esp.cfg:2: section [a] is given twice"),
            (
                "just words\n",
                "esp.cfg:1: `just words` is not `keyword=value`",
            ),
            ("[x]\ndefault=x\n", "esp.cfg:2: unknown keyword `default`"),
        ];
        for (text, want) in cases {
            let got = parse_str(text).map(|_| ()).unwrap_err().to_string();
            assert!(
                got.starts_with(want),
                "{text:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn the_boot_section() {
        let c = parse_str("[global]\ndefault=b\n[a]\nkernel=k\n").unwrap();
        assert!(c
            .boot_section()
            .unwrap_err()
            .to_string()
            .contains("default=b names no section"));
        let c = parse_str("[a]\nkernel=k\n[b]\nkernel=k\n").unwrap();
        assert!(c
            .boot_section()
            .unwrap_err()
            .to_string()
            .contains("name one with default="));
        let c = parse_str("options=x\n").unwrap();
        assert!(c
            .boot_section()
            .unwrap_err()
            .to_string()
            .contains("nothing to boot"));
    }
}
