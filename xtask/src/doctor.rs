//! Host tools: which each kind of work needs, whether they are here, and (on Debian) how they
//! are installed. `cargo xtask doctor` lists them; `build` and `test` install what is missing
//! on a Debian host as root, after saying what and why, and elsewhere print what to install.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::mirror::{Mirrors, RELEASE};
use crate::recipe::Kind;
use crate::ui;

/// One host tool and the Debian package that provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    pub command: &'static str,
    pub package: &'static str,
    /// Install from `<release>-backports` (QEMU must match the machine's backported qemu-utils).
    pub backports: bool,
}

const fn tool(command: &'static str, package: &'static str) -> Tool {
    Tool {
        command,
        package,
        backports: false,
    }
}

/// What needs tools beyond cargo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Kind(Kind),
    BootTest,
    Tests,
    Repro,
}

impl Need {
    pub fn describe(self) -> String {
        match self {
            Need::Kind(k) => format!("building {k} recipes"),
            Need::BootTest => "boot tests (Xen in QEMU)".into(),
            Need::Tests => "the workspace tests".into(),
            Need::Repro => "reproducibility checks (a shifted clock)".into(),
        }
    }

    pub fn tools(self) -> &'static [Tool] {
        const RUNTIME: &[Tool] = &[tool("cc", "gcc"), tool("ld", "binutils")];
        const PVGRUB: &[Tool] = &[
            tool("gcc", "gcc"),
            tool("make", "make"),
            tool("bison", "bison"),
            tool("flex", "flex"),
            tool("python3", "python3"),
            tool("patch", "patch"),
            tool("autoreconf", "autoconf"),
            tool("automake", "automake"),
            tool("autopoint", "autopoint"),
            tool("gettext", "gettext"),
            tool("pkg-config", "pkg-config"),
        ];
        // The kernel (objtool needs libelf-dev, which has no command to look for), QEMU
        // (meson, ninja, glib and pixman headers; the Xen ones come from the pinned
        // libxen-dev) and the rootfs (strip).
        const IOEMU: &[Tool] = &[
            tool("gcc", "gcc"),
            tool("make", "make"),
            tool("bison", "bison"),
            tool("flex", "flex"),
            tool("bc", "bc"),
            tool("perl", "perl"),
            tool("patch", "patch"),
            tool("python3", "python3"),
            tool("ninja", "ninja-build"),
            tool("meson", "meson"),
            tool("pkg-config", "pkg-config"),
            tool("strip", "binutils"),
            tool("glib-mkenums", "libglib2.0-dev"),
        ];
        const BOOT: &[Tool] = &[
            Tool {
                command: "qemu-system-x86_64",
                package: "qemu-system-x86",
                backports: true,
            },
            tool("mke2fs", "e2fsprogs"),
            tool("sfdisk", "fdisk"),
        ];
        const REPRO: &[Tool] = &[tool("faketime", "faketime")];
        const TESTS: &[Tool] = &[
            tool("cc", "gcc"),
            tool("cpio", "cpio"),
            tool("tar", "tar"),
            tool("gzip", "gzip"),
            tool("dpkg-deb", "dpkg"),
            tool("xz", "xz-utils"),
            tool("zstd", "zstd"),
            tool("bzip2", "bzip2"),
        ];
        match self {
            Need::Kind(Kind::Rust | Kind::C) => RUNTIME,
            Need::Kind(Kind::Pvgrub) => PVGRUB,
            Need::Kind(Kind::Ioemu) => IOEMU,
            Need::BootTest => BOOT,
            Need::Tests => TESTS,
            Need::Repro => REPRO,
        }
    }
}

pub fn have(command: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(command);
            p.is_file()
                && std::fs::metadata(&p).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// `cargo xtask doctor`: a table of every tool, what needs it and whether it is here.
pub fn report(needs: &[Need]) -> Result<()> {
    let mut missing = Vec::new();
    println!(
        "{:<22} {:<18} {:<8} needed for",
        "tool", "package", "status"
    );
    for need in needs {
        for t in need.tools() {
            let ok = have(t.command);
            println!(
                "{:<22} {:<18} {:<8} {}",
                t.command,
                t.package,
                if ok { "ok" } else { "MISSING" },
                need.describe()
            );
            if !ok && !missing.contains(t) {
                missing.push(*t);
            }
        }
    }
    if missing.is_empty() {
        println!("\nall host tools are present");
        return Ok(());
    }
    println!("\n{}", install_hint(&missing));
    bail!("{} host tool(s) missing", missing.len())
}

fn install_hint(missing: &[Tool]) -> String {
    let plain: Vec<_> = missing
        .iter()
        .filter(|t| !t.backports)
        .map(|t| t.package)
        .collect();
    let bpo: Vec<_> = missing
        .iter()
        .filter(|t| t.backports)
        .map(|t| t.package)
        .collect();
    let mut s =
        String::from("to install them on Debian: `cargo xtask doctor --install` (as root), or:\n");
    if !plain.is_empty() {
        s += &format!("  apt-get install {}\n", plain.join(" "));
    }
    if !bpo.is_empty() {
        s += &format!(
            "  apt-get install -t {RELEASE}-backports {}\n",
            bpo.join(" ")
        );
    }
    s += "on other systems, install the packages that provide: ";
    s += &missing
        .iter()
        .map(|t| t.command)
        .collect::<Vec<_>>()
        .join(", ");
    s
}

/// Makes sure the tools of `needs` are present, installing them with apt-get on a Debian
/// host when we are root; otherwise fails with the exact packages to install.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let mut missing: Vec<(Tool, Need)> = Vec::new();
    for need in needs {
        for t in need.tools() {
            if !have(t.command) && !missing.iter().any(|(m, _)| m == t) {
                missing.push((*t, *need));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<Tool> = missing.iter().map(|(t, _)| *t).collect();
    let debian = Path::new("/etc/debian_version").exists() && have("apt-get");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !debian || !root {
        bail!(
            "missing host tools: {}\n{}",
            missing
                .iter()
                .map(|(t, n)| format!("{} ({})", t.command, n.describe()))
                .collect::<Vec<_>>()
                .join(", "),
            install_hint(&tools)
        );
    }
    for (t, n) in &missing {
        ui::step(&format!(
            "installing {} with apt-get: it provides `{}`, needed for {}",
            t.package,
            t.command,
            n.describe()
        ));
    }
    install(&tools)
}

fn install(tools: &[Tool]) -> Result<()> {
    let mut plain: Vec<&str> = tools
        .iter()
        .filter(|t| !t.backports)
        .map(|t| t.package)
        .collect();
    let mut bpo: Vec<&str> = tools
        .iter()
        .filter(|t| t.backports)
        .map(|t| t.package)
        .collect();
    plain.dedup();
    bpo.dedup();
    if !bpo.is_empty() {
        add_backports()?;
    }
    apt(&["update", "-qq"])?;
    if !plain.is_empty() {
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&plain);
        apt(&args)?;
    }
    if !bpo.is_empty() {
        let suite = format!("{RELEASE}-backports");
        let mut args = vec![
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "-t",
            &suite,
        ];
        args.extend(&bpo);
        apt(&args)?;
    }
    let still: Vec<_> = tools
        .iter()
        .filter(|t| !have(t.command))
        .map(|t| t.command)
        .collect();
    if !still.is_empty() {
        bail!(
            "apt-get finished but these tools are still missing: {}",
            still.join(", ")
        );
    }
    Ok(())
}

/// Adds the backports suite of the machine's own Debian mirror, if apt does not know it.
fn add_backports() -> Result<()> {
    let file = Path::new("/etc/apt/sources.list.d/stubdoms-backports.sources");
    let suite = format!("{RELEASE}-backports");
    let configured = std::fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&suite)))
        || std::fs::read_to_string("/etc/apt/sources.list").is_ok_and(|t| t.contains(&suite));
    if configured {
        return Ok(());
    }
    let mirrors = Mirrors::discover()?;
    ui::step(&format!(
        "adding {suite} from {} to apt ({}): QEMU must come from it to match the installed qemu-utils",
        mirrors.debian,
        file.display()
    ));
    let text = format!(
        "Types: deb\nURIs: {}\nSuites: {suite}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        mirrors.debian
    );
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))
}

fn apt(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("`apt-get {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
