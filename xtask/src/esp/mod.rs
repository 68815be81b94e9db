//! `cargo xtask esp CONFIG --out ESP.img [--dtb BOARD.dtb]`: an EFI system partition that
//! the pinned arm64 Xen boots as a dom0less system, from a configuration in Xen's EFI
//! configuration syntax with the proposed `domu#_*` keywords (`config.rs`).
//!
//! Stock Xen (4.17 to 4.23-dev) ignores those keywords; what its EFI loader does read is
//! `xen,domain` nodes under the device tree's `/chosen` whose module nodes carry
//! `xen,uefi-binary = "FILE"` (it loads FILE from the folder of its own binary and fills in
//! `reg`). So the guests become such nodes in a device tree (the board's, default QEMU's
//! `virt` of the aarch64 test machine) that the generated `BOOTAA64.cfg` names with `dtb=`:
//! Xen looks for its configuration file beside itself under its own name with `.cfg`
//! (`point_tail` in xen/common/efi/boot.c), which for `EFI/BOOT/BOOTAA64.EFI` is
//! `EFI/BOOT/BOOTAA64.cfg`.

pub mod config;
mod fat;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::boot::arch::aarch64::{DomainNode, Module, ModuleAt};
use crate::boot::machine::Machine;
use crate::fsx;
use crate::workspace::Workspace;

/// The folder on the ESP that holds Xen and everything it loads.
pub const BOOT_DIR: &str = "EFI/BOOT";
/// The device tree Xen boots with, as the generated configuration names it.
const DTB_NAME: &str = "devicetree.dtb";
/// A guest's memory and vCPUs unless its properties say otherwise.
const GUEST_MEMORY_MIB: u32 = 128;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration: Xen's EFI configuration syntax with domu<N>_* lines.
    pub config: PathBuf,
    /// Where to write the FAT image (a manifest goes beside it: OUT.manifest.json).
    #[arg(long)]
    pub out: PathBuf,
    /// The board's device tree (default: QEMU's virt board of the test machine).
    #[arg(long)]
    pub dtb: Option<PathBuf>,
    /// The test machine whose Xen and board to use.
    #[arg(long, default_value = "aarch64-xen4.17")]
    pub machine: String,
    /// Use only the input cache.
    #[arg(long)]
    pub offline: bool,
}

/// An ESP image as written: its bytes and its files with their sha256.
pub struct Esp {
    pub image: Vec<u8>,
    pub files: BTreeMap<String, (String, u64)>,
}

pub fn run(ws: &Workspace, args: &Args) -> Result<()> {
    let started = std::time::Instant::now();
    let cache = crate::cache::Cache::open()?;
    let spec =
        crate::boot::machines::select(crate::boot::machines::load_all(ws)?, Some(&args.machine))?
            .remove(0);
    if spec.arch != "aarch64" {
        bail!(
            "--machine {}: an ESP is made for an aarch64 machine's Xen",
            args.machine
        );
    }
    crate::fetch::ensure(
        &cache,
        &crate::boot::machine::blobs(ws, &spec)?,
        &crate::fetch::Flags {
            offline: args.offline,
        },
    )?;
    let epoch = crate::builders::source_date_epoch()?;
    let m = crate::boot::machine::get(ws, &cache, &spec, epoch, args.offline)?;
    let work = ws.target.join("esp").join("work").join(
        args.out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "esp".into()),
    );
    let esp = build(&m, &args.config, args.dtb.as_deref(), &work, epoch)?;
    write(&esp, &args.out)?;
    crate::ui::step(&format!(
        "esp: {} ({} files, {} MiB) in {:.1} s",
        args.out.display(),
        esp.files.len(),
        esp.image.len() >> 20,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Writes the image and its manifest (`OUT.manifest.json`: every file with its sha256).
pub fn write(esp: &Esp, out: &Path) -> Result<()> {
    let files: BTreeMap<&str, serde_json::Value> = esp
        .files
        .iter()
        .map(|(p, (sha, size))| {
            (
                p.as_str(),
                serde_json::json!({ "sha256": sha, "size": size }),
            )
        })
        .collect();
    let manifest = serde_json::json!({
        "image": {
            "sha256": sha256_hex(&esp.image),
            "size": esp.image.len(),
        },
        "files": files,
    });
    fsx::write_atomic(out, &esp.image)?;
    let mut name = out.as_os_str().to_owned();
    name.push(".manifest.json");
    fsx::write_atomic(
        Path::new(&name),
        (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
    )
}

/// A sha256 as 64 lowercase hex digits, as the cache and the manifests spell it.
fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// What a configuration puts on the ESP before its device tree: the files by ESP path,
/// Xen's configuration, the guests and the board's tree it names (file, where named).
struct Plan {
    files: BTreeMap<String, Vec<u8>>,
    xen_cfg: String,
    guests: Vec<GuestPlan>,
    board: Option<(PathBuf, String)>,
}

/// A guest's node: its properties (the defaults it does not override, then its own) and
/// its files by their ESP names.
struct GuestPlan {
    number: u32,
    properties: Vec<(String, String)>,
    kernel: String,
    cmdline: String,
    ramdisk: Option<String>,
    dtb: Option<String>,
}

/// Reads the configuration and every file it names (each kernel checked).
fn plan(config_path: &Path, board_dtb: Option<&Path>) -> Result<Plan> {
    let cfg = config::load(config_path)?;
    let section = cfg.boot_section()?;
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // Each file the configuration names goes beside Xen under its own name.
    let mut add = |f: &config::FileRef, kernel: bool| -> Result<String> {
        let at = format!("{}:{}", config_path.display(), f.line);
        let host = base.join(&f.name);
        let bytes = std::fs::read(&host).map_err(|e| {
            anyhow::anyhow!(
                "{at}: cannot read {} ({}): file names are relative to the configuration's folder; correct the name or put the file there",
                f.name,
                e
            )
        })?;
        if kernel {
            check_kernel(&bytes).with_context(|| {
                format!(
                    "{at}: {} is not an arm64 Image: give the kernel's Image \
                     (arch/arm64/boot/Image, or a gzip of it), not an ELF vmlinux",
                    f.name
                )
            })?;
        }
        let name = Path::new(&f.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{at}: `{}` names no file", f.name))?;
        let path = format!("{BOOT_DIR}/{name}");
        if name.eq_ignore_ascii_case("BOOTAA64.EFI")
            || name.eq_ignore_ascii_case("BOOTAA64.cfg")
            || name.eq_ignore_ascii_case(DTB_NAME)
        {
            bail!("{at}: the file name {name} is taken by the ESP itself: rename the file");
        }
        match files.iter().find(|(p, _)| p.eq_ignore_ascii_case(&path)) {
            Some((_, b)) if *b != bytes => bail!(
                "{at}: another file of the same name {name} is already on the ESP (FAT names \
                 ignore case): rename one"
            ),
            Some(_) => {}
            None => {
                files.insert(path, bytes);
            }
        }
        Ok(name)
    };

    // Xen's own configuration: the boot section's keys, the device tree by its ESP name.
    let mut xen_cfg =
        String::from("# Written by cargo xtask esp.\n[global]\ndefault=xen\n\n[xen]\n");
    if let Some(o) = &section.options {
        xen_cfg += &format!("options={o}\n");
    }
    if let Some((k, cmdline)) = &section.kernel {
        let name = add(k, true)?;
        xen_cfg += &format!("kernel={name} {cmdline}\n").replace(" \n", "\n");
    }
    for (key, f) in [("ramdisk", &section.ramdisk), ("xsm", &section.xsm)] {
        if let Some(f) = f {
            xen_cfg += &format!("{key}={}\n", add(f, false)?);
        }
    }
    xen_cfg += &format!("dtb={DTB_NAME}\n");

    let mut guests = Vec::new();
    for (number, g) in &section.guests {
        let Some((k, cmdline)) = g.kernel.as_ref() else {
            bail!("guest domu{number} has no domu{number}_kernel line");
        };
        // The defaults first, each left out where the configuration gives its own.
        let mut properties: Vec<(String, String)> =
            DomainNode::default_properties(GUEST_MEMORY_MIB, 1)
                .into_iter()
                .filter(|(n, _)| !g.properties.iter().any(|(p, _)| p == n))
                .collect();
        properties.extend(g.properties.iter().cloned());
        guests.push(GuestPlan {
            number: *number,
            properties,
            kernel: add(k, true)?,
            cmdline: cmdline.clone(),
            ramdisk: g.ramdisk.as_ref().map(|f| add(f, false)).transpose()?,
            dtb: g.dtb.as_ref().map(|f| add(f, false)).transpose()?,
        });
    }
    let board = section
        .dtb
        .as_ref()
        .map(|f| {
            (
                base.join(&f.name),
                format!("{}:{}", config_path.display(), f.line),
            )
        })
        .or_else(|| board_dtb.map(|p| (p.to_path_buf(), "--dtb".to_string())));
    Ok(Plan {
        files,
        xen_cfg,
        guests,
        board,
    })
}

/// The ESP for configuration `config_path` on machine `m`; `work` (in the target folder,
/// where the boot tools can see it) holds the board's tree and the edited one.
pub fn build(
    m: &Machine,
    config_path: &Path,
    board_dtb: Option<&Path>,
    work: &Path,
    epoch: u64,
) -> Result<Esp> {
    let Plan {
        mut files,
        xen_cfg,
        guests,
        board: board_source,
    } = plan(config_path, board_dtb)?;
    let mut nodes = Vec::new();
    for g in &guests {
        let mut modules = vec![Module {
            kind: "kernel",
            at: ModuleAt::UefiBinary(&g.kernel),
            bootargs: Some(g.cmdline.as_str()).filter(|c| !c.is_empty()),
        }];
        if let Some(r) = &g.ramdisk {
            modules.push(Module {
                kind: "ramdisk",
                at: ModuleAt::UefiBinary(r),
                bootargs: None,
            });
        }
        if let Some(d) = &g.dtb {
            modules.push(Module {
                kind: "device-tree",
                at: ModuleAt::UefiBinary(d),
                bootargs: None,
            });
        }
        nodes.push(DomainNode {
            name: format!("domU{}", g.number),
            properties: g.properties.clone(),
            modules,
        });
    }

    // The board's tree: the section's dtb=, else --dtb, else QEMU's own.
    fs_err::create_dir_all(work)?;
    let board = work.join("board.dtb");
    let dts = match board_source {
        Some((host, at)) => {
            let bytes = std::fs::read(&host)
                .map_err(|e| anyhow::anyhow!("{at}: cannot read the board's device tree: {e}"))?;
            if bytes.get(..4) != Some(&[0xd0, 0x0d, 0xfe, 0xed]) {
                bail!(
                    "{at}: {} is not a device tree blob (no d00dfeed magic): give a .dtb",
                    host.display()
                );
            }
            fsx::write_atomic(&board, &bytes)?;
            crate::boot::decompile_dtb(m, &board)?
        }
        None => crate::boot::board_dts(m, &[], &board)?,
    };
    let edited = crate::boot::arch::aarch64::with_chosen_nodes(&without_seeds(&dts), &[], &nodes)?;
    let (dts_path, dtb_path) = (work.join("devicetree.dts"), work.join(DTB_NAME));
    fsx::write_atomic(&dts_path, edited.as_bytes())?;
    crate::boot::compile_dts(m, &dts_path, &dtb_path).context(
        "the device tree with the guests does not compile: check the domu<N>_property values",
    )?;
    files.insert(format!("{BOOT_DIR}/{DTB_NAME}"), fs_err::read(&dtb_path)?);
    files.insert(format!("{BOOT_DIR}/BOOTAA64.cfg"), xen_cfg.into_bytes());
    files.insert(format!("{BOOT_DIR}/BOOTAA64.EFI"), fs_err::read(&m.xen)?);

    let listing: BTreeMap<String, (String, u64)> = files
        .iter()
        .map(|(p, b)| (p.clone(), (sha256_hex(b), b.len() as u64)))
        .collect();
    // The volume id from the contents: fixed for the same files, different for others.
    let mut key = crate::key::Key::new("esp-volume-id");
    for (p, (sha, _)) in &listing {
        key.field(p, sha);
    }
    let volume_id = u32::from_str_radix(&key.finish()[..8], 16)?;
    Ok(Esp {
        image: fat::image(&files, volume_id, epoch)?,
        files: listing,
    })
}

/// The tree without the random seeds QEMU puts in `/chosen` of every dump (`rng-seed`,
/// `kaslr-seed`): they would make every ESP different, and guests get their own from Xen.
fn without_seeds(dts: &str) -> String {
    dts.lines()
        .filter(|l| {
            let l = l.trim_start();
            !(l.starts_with("rng-seed = ") || l.starts_with("kaslr-seed = "))
        })
        .flat_map(|l| [l, "\n"])
        .collect()
}

/// An arm64 Image as Xen loads it, or a gzip of one (Xen unpacks gzip'd kernels).
fn check_kernel(bytes: &[u8]) -> Result<()> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut image = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut image)
            .context("a gzip file that does not unpack")?;
        return crate::builders::runtime::check_arm64_image(&image);
    }
    crate::builders::runtime::check_arm64_image(bytes)
}

/// The pinned edk2 for arm64 QEMU, as the boot environment holds it.
const FIRMWARE: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";

/// A boot test with `mode = "efi"`: its configuration and files staged in `dir` under the
/// names the configuration uses, the ESP built twice (the two must be the same bytes), then
/// QEMU booting it through edk2; also the seconds the first build took. With ACPI on, Xen prints nothing after reading its
/// configuration; `splash-time=0` saves edk2's five-second wait.
pub fn scenario_command(
    m: &Machine,
    dir: &Path,
    s: &crate::boot::Scenario,
) -> Result<(std::process::Command, f64)> {
    let (cfg, files) = s
        .esp
        .as_ref()
        .context("a scenario with mode = \"efi\" needs an esp configuration")?;
    let stage = dir.join(format!(
        "{}.{}.{}.esp",
        m.spec.name, s.test.recipe, s.test.name
    ));
    fsx::remove_dir_if_exists(&stage)?;
    let src = stage.join("src");
    let cfg_name = cfg
        .file_name()
        .context("the esp configuration names no file")?;
    fsx::copy_atomic(cfg, &src.join(cfg_name))?;
    for (name, host) in files {
        fsx::copy_atomic(host, &src.join(name))?;
    }
    let epoch = crate::builders::source_date_epoch()?;
    let started = std::time::Instant::now();
    let a = build(m, &src.join(cfg_name), None, &stage.join("a"), epoch)?;
    let build_secs = started.elapsed().as_secs_f64();
    let b = build(m, &src.join(cfg_name), None, &stage.join("b"), epoch)?;
    if a.image != b.image {
        bail!(
            "{}/{}: two builds of the same ESP differ: the ESP is not reproducible",
            s.test.recipe,
            s.test.name
        );
    }
    let img = stage.join("esp.img");
    write(&a, &img)?;
    crate::ui::step(&format!(
        "esp {}/{}: {} MiB, built in {build_secs:.1} s (twice, the same bytes)",
        s.test.recipe,
        s.test.name,
        a.image.len() >> 20
    ));
    let inside = m.tools.inside(&img)?;
    if inside.contains(',') {
        bail!("{inside}: QEMU's -drive cannot take a path with a comma");
    }
    let mut cmd = crate::boot::qemu_base(m, 1024)?;
    cmd.args(["-machine", "acpi=off", "-bios", FIRMWARE])
        .args(["-boot", "menu=on,splash-time=0"])
        .args([
            "-drive",
            &format!("if=virtio,format=raw,readonly=on,file={inside}"),
        ]);
    Ok((cmd, build_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal arm64 Image: the header with its magic and a size covering the file.
    fn image() -> Vec<u8> {
        let mut i = vec![0u8; 4096];
        i[16..24].copy_from_slice(&4096u64.to_le_bytes());
        i[56..60].copy_from_slice(b"ARM\x64");
        i
    }

    fn plan_in(cfg: &str, files: &[(&str, Vec<u8>)]) -> Result<Plan> {
        let dir = std::env::temp_dir().join(format!(
            "stubdoms-esp-test-{}-{}",
            std::process::id(),
            sha256_hex(cfg.as_bytes())
        ));
        fs_err::create_dir_all(&dir)?;
        for (name, bytes) in files {
            fs_err::write(dir.join(name), bytes)?;
        }
        fs_err::write(dir.join("esp.cfg"), cfg)?;
        let out = plan(&dir.join("esp.cfg"), None);
        fs_err::remove_dir_all(&dir)?;
        out.map_err(|e| {
            anyhow::anyhow!("{}", e.to_string().replace(&*dir.to_string_lossy(), "DIR"))
        })
    }

    #[test]
    fn the_files_land_beside_xen_and_the_guests_get_defaults() {
        let p = plan_in(
            "options=noreboot\nkernel=dom0 console=hvc0\nramdisk=dom0.cpio\n\
             domu1_kernel=k.gz console=ttyAMA0\ndomu1_property=cpus=2\n",
            &[
                ("dom0", image()),
                ("dom0.cpio", b"cpio".to_vec()),
                ("k.gz", {
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
                    std::io::Write::write_all(&mut gz, &image()).unwrap();
                    gz.finish().unwrap()
                }),
            ],
        )
        .unwrap();
        assert_eq!(
            p.files.keys().collect::<Vec<_>>(),
            ["EFI/BOOT/dom0", "EFI/BOOT/dom0.cpio", "EFI/BOOT/k.gz"]
        );
        assert_eq!(
            p.xen_cfg,
            "# Written by cargo xtask esp.\n[global]\ndefault=xen\n\n[xen]\noptions=noreboot\n\
             kernel=dom0 console=hvc0\nramdisk=dom0.cpio\ndtb=devicetree.dtb\n"
        );
        let g = &p.guests[0];
        assert_eq!(
            (g.kernel.as_str(), g.cmdline.as_str()),
            ("k.gz", "console=ttyAMA0")
        );
        let names: Vec<&str> = g.properties.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "compatible",
                "#address-cells",
                "#size-cells",
                "memory",
                "vpl011",
                "cpus"
            ]
        );
    }

    #[test]
    fn file_errors_name_the_line_and_what_to_do() {
        type Files<'a> = &'a [(&'a str, Vec<u8>)];
        let cases: &[(&str, Files, &str)] = &[
            (
                "domu1_kernel=missing.bin\n",
                &[],
                "DIR/esp.cfg:1: cannot read missing.bin (No such file",
            ),
            (
                "domu1_kernel=k\ndomu1_ramdisk=r\n",
                &[("k", image())],
                "DIR/esp.cfg:2: cannot read r",
            ),
            (
                "\ndomu3_kernel=elf\n",
                &[("elf", b"\x7fELF".to_vec())],
                "DIR/esp.cfg:2: elf is not an arm64 Image: give the kernel's Image",
            ),
            (
                "kernel=vmlinux\n",
                &[("vmlinux", vec![0; 4096])],
                "DIR/esp.cfg:1: vmlinux is not an arm64 Image",
            ),
            (
                "domu1_kernel=BOOTAA64.EFI\n",
                &[("BOOTAA64.EFI", image())],
                "DIR/esp.cfg:1: the file name BOOTAA64.EFI is taken by the ESP itself",
            ),
        ];
        for (cfg, files, want) in cases {
            let got = format!("{:#}", plan_in(cfg, files).map(|_| ()).unwrap_err());
            assert!(got.starts_with(want), "{cfg:?}: got {got:?}, want {want:?}");
        }
    }
}
