//! A batch of `xl` scenarios as one cpio.gz that is appended to the dom0 initramfs (Linux
//! unpacks concatenated archives in order): `/scenarios/list` names each scenario and its
//! timeout, `/scenarios/NAME/` holds its xl config and `run` script, and `/scenarios/files/`
//! holds the kernels, ramdisks and disks, each once, by content hash.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use stubdoms_archive::Tree;

use super::{marker, Scenario};
use crate::fsx;

/// Adds one scenario to the bundle tree and returns its `list` line.
pub fn add(tree: &mut Tree, s: &Scenario) -> Result<String> {
    let dir = format!("scenarios/{}", s.dir_name());
    let mut cfg = String::new();
    let q = quote;
    let _ = writeln!(cfg, "name = {}", q(&s.domain_name()));
    let guest_type = s
        .test
        .guest_type
        .map_or(s.test.variant.xl_type(), |t| t.as_str());
    let _ = writeln!(cfg, "type = {}", q(guest_type));
    if let Some(k) = &s.kernel {
        let _ = writeln!(cfg, "kernel = {}", q(&add_file(tree, k)?));
    }
    if let Some(r) = &s.ramdisk {
        let _ = writeln!(cfg, "ramdisk = {}", q(&add_file(tree, r)?));
    }
    if let Some(c) = &s.test.cmdline {
        let _ = writeln!(cfg, "cmdline = {}", q(c));
    }
    if let Some(e) = &s.test.extra {
        let _ = writeln!(cfg, "extra = {}", q(e));
    }
    let _ = writeln!(cfg, "memory = {}", s.test.memory);
    let _ = writeln!(cfg, "vcpus = {}", s.test.vcpus);
    if !s.disks.is_empty() {
        let specs: Vec<String> = s
            .disks
            .iter()
            .map(|(vdev, path)| {
                // Disks travel gzip'd (they are mostly zeros) and are unpacked into dom0's
                // /tmp by the run script: raw, a batch's disks would fill dom0's root fs.
                tree.add_file(&format!("{dir}/{vdev}.img.gz"), gzip_fast(path)?, 0o644)?;
                let target = disk_path(s, vdev);
                let cdrom = s.test.disks.iter().any(|d| d.vdev == *vdev && d.cdrom);
                let kind = if cdrom {
                    "access=ro,devtype=cdrom"
                } else {
                    "access=rw"
                };
                Ok(q(&format!("format=raw,vdev={vdev},{kind},target={target}")))
            })
            .collect::<Result<_>>()?;
        let _ = writeln!(cfg, "disk = [ {} ]", specs.join(", "));
    }
    // Keep a stopped guest until its xenstore keys are read; the run script destroys it.
    let _ = writeln!(
        cfg,
        "on_poweroff = \"preserve\"\non_crash = \"preserve\"\non_reboot = \"destroy\""
    );
    for (k, v) in &s.test.xl {
        if !crate::recipe::is_xl_key(k) {
            bail!("scenario {}: `{k}` is not an xl.cfg key", s.id);
        }
        let _ = writeln!(cfg, "{k} = {v}");
    }
    for (k, path) in &s.xl_files {
        let _ = writeln!(cfg, "{k} = {}", q(&add_file(tree, path)?));
    }
    tree.add_file(&format!("{dir}/guest.cfg"), cfg, 0o644)?;
    if let Some(check) = &s.dom0_check {
        tree.add_host_file(&format!("{dir}/dom0-check"), check, 0o755)?;
    }
    tree.add_file(&format!("{dir}/run"), run_script(s), 0o755)?;
    Ok(format!("{} {}", s.dir_name(), s.test.timeout))
}

/// Where dom0 unpacks a scenario's disk.
fn disk_path(s: &Scenario, vdev: &str) -> String {
    format!("/tmp/{}.{vdev}.img", s.dir_name())
}

fn gzip_fast(path: &Path) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    gz.write_all(&fs_err::read(path)?)?;
    Ok(gz.finish()?)
}

/// Adds a host file under `/scenarios/files/<sha256>` (each content once); returns its path.
fn add_file(tree: &mut Tree, host: &Path) -> Result<String> {
    let (sha, _) = fsx::sha256_file(host)?;
    let path = format!("scenarios/files/{sha}");
    if tree.get(&path).is_none() {
        tree.add_host_file(&path, host, 0o644)?;
    }
    Ok(format!("/{path}"))
}

/// The dom0 side of one scenario: create the guest with its console streamed as `@@G` lines
/// (and kept in `console.log`), run the dom0 check beside it (its lines as `@@C`), wait
/// until the guest stops (or the check ends), report how it stopped and the xenstore keys
/// asked for, destroy it. It polls `xl` once a second: faster polling competes with the
/// guest's own start for the one emulated CPU.
fn run_script(s: &Scenario) -> String {
    let name = s.domain_name();
    let keys: Vec<&str> = s.test.xenstore.keys().map(String::as_str).collect();
    let (check_start, check_running, check_wait) = if s.dom0_check.is_some() {
        (
            format!(
                "( DOMID=$domid NAME={name} ./dom0-check 2>&1 | awk '{{ print \"{check}\" $0; fflush() }}' ) &\nk=$!\n",
                check = marker::CHECK,
            ),
            "  kill -0 $k 2>/dev/null || break\n",
            "wait $k\n",
        )
    } else {
        (String::new(), "", "")
    };
    let mut unpack = String::new();
    let mut cleanup = String::new();
    for (vdev, _) in &s.disks {
        let target = disk_path(s, vdev);
        unpack += &format!("gunzip -c {vdev}.img.gz > {target} || exit 1\n");
        cleanup += &format!("rm -f {target}\n");
    }
    format!(
        r#"#!/bin/sh
# Generated by `cargo xtask boot-test` for {id}.
{unpack}guest-console guest.cfg | tee console.log &
c=$!
domid=
while [ -z "$domid" ]; do
  domid=$(timeout 10 xl domid {name} 2>/dev/null) && break
  domid=
  kill -0 $c 2>/dev/null || break
  sleep 1
done
if [ -z "$domid" ]; then
  wait $c
  {create_failed}
{cleanup}  exit 1
fi
{domid}
{check_start}state=
while :; do
  state=$(timeout 10 xl list {name} 2>/dev/null | awk 'NR==2 {{print $5}}')
  case "$state" in *s*|*c*) break ;; esac
  # Every xl call is bounded, so a hung xl fails the scenario with its own message; an
  # empty answer means "ask again", unless xenstore says the domain is gone.
  [ -z "$state" ] && ! xenstore-exists /local/domain/$domid 2>/dev/null && break
{check_running}  sleep 1
done
{check_wait}{state}
for k in {keys}; do
  {xenstore}
done
timeout 30 xl destroy {name} 2>/dev/null
wait $c
{cleanup}exit 0
"#,
        id = s.id,
        keys = keys.join(" "),
        create_failed = marker::echo("create-failed"),
        domid = marker::echo("domid $domid"),
        state = marker::echo("state $state"),
        xenstore = marker::echo("xenstore $k=$(xenstore-read /local/domain/$domid/$k 2>&1)"),
    )
}

/// A double-quoted xl.cfg string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use stubdoms_archive::{EntryKind, FileData, Tree};

    use super::*;

    fn text(tree: &Tree, path: &str) -> String {
        match &tree.get(path).expect(path).kind {
            EntryKind::File(f) => String::from_utf8(f.read().unwrap().into_owned()).unwrap(),
            other => panic!("{path} is {other:?}"),
        }
    }

    /// An HVM guest whose device model is the image: no `kernel` line, the xl-files as
    /// bundle paths, the dom0 check shipped and run beside the guest.
    #[test]
    fn hvm_scenario_with_xl_files_and_a_dom0_check() {
        let dir = std::env::temp_dir().join(format!("xtask-bundle-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let host = |name: &str, bytes: &[u8]| -> PathBuf {
            let p = dir.join(name);
            fs_err::write(&p, bytes).unwrap();
            p
        };
        let src = r#"
name = "demo"
summary = "s"
kind = "ioemu"
licence = "GPL-2.0-only"
[variants.x86_64-pv]
file = "rootfs"
extra-files = ["kernel"]
[[boot-test]]
name = "hvm"
variant = "x86_64-pv"
guest-type = "hvm"
xl = { serial = '"pty"' }
xl-files = { stubdomain_kernel = "artifact:demo/kernel" }
dom0-check = "tests/check.sh"
dom0-expect = ["^ok$"]
expect = ["x"]
timeout = 99
"#;
        let recipe = crate::recipe::parse(Path::new("stubdoms/demo/stubdom.toml"), src).unwrap();
        let s = Scenario {
            machine: "x86_64-xen4.17".into(),
            id: "demo/hvm".into(),
            test: recipe.boot_tests[0].clone(),
            kernel: None,
            ramdisk: None,
            disks: Vec::new(),
            xl_files: vec![("stubdomain_kernel".into(), host("kernel", b"bzImage"))],
            installed: Vec::new(),
            esp: None,
            dom0_check: Some(host("check.sh", b"#!/bin/sh\necho ok\n")),
        };
        let mut tree = Tree::new();
        assert_eq!(add(&mut tree, &s).unwrap(), "demo.hvm 99");

        let cfg = text(&tree, "scenarios/demo.hvm/guest.cfg");
        let sha = fsx::sha256_file(&dir.join("kernel")).unwrap().0;
        assert!(cfg.contains("type = \"hvm\"\n"), "{cfg}");
        assert!(!cfg.lines().any(|l| l.starts_with("kernel ")), "{cfg}");
        assert!(
            cfg.contains(&format!("stubdomain_kernel = \"/scenarios/files/{sha}\"\n")),
            "{cfg}"
        );
        assert!(cfg.contains("serial = \"pty\"\n"), "{cfg}");
        assert!(matches!(
            &tree.get(&format!("scenarios/files/{sha}")).unwrap().kind,
            EntryKind::File(FileData::Host(_))
        ));
        assert_eq!(
            tree.get("scenarios/demo.hvm/dom0-check").unwrap().mode,
            0o755
        );

        let run = text(&tree, "scenarios/demo.hvm/run");
        assert!(
            run.contains("guest-console guest.cfg | tee console.log &"),
            "{run}"
        );
        assert!(
            run.contains("DOMID=$domid NAME=demo-hvm ./dom0-check"),
            "{run}"
        );
        assert!(run.contains("\"@@C \""), "{run}");
        assert!(run.contains("kill -0 $k 2>/dev/null || break"), "{run}");
        assert!(run.contains("echo \"@@STUBDOMS domid $domid\""), "{run}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A scenario without a dom0 check runs none and keeps the variant's guest type; its
    /// disks travel with it.
    #[test]
    fn plain_scenario_runs_no_check() {
        let src = r#"
name = "demo"
summary = "s"
kind = "rust"
licence = "GPL-2.0-only"
[variants.x86_64-pvh]
file = "demo.elf"
[[boot-test]]
name = "plain"
variant = "x86_64-pvh"
expect = ["x"]
disks = [{ vdev = "hda", fs = "none" }, { vdev = "hdc", fs = "none", cdrom = true }]
timeout = 5
"#;
        let recipe = crate::recipe::parse(Path::new("stubdoms/demo/stubdom.toml"), src).unwrap();
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let s = Scenario {
            machine: "x86_64-xen4.17".into(),
            id: "demo/plain".into(),
            test: recipe.boot_tests[0].clone(),
            kernel: Some(manifest.clone()),
            ramdisk: None,
            disks: vec![("hda".into(), manifest.clone()), ("hdc".into(), manifest)],
            xl_files: Vec::new(),
            installed: Vec::new(),
            esp: None,
            dom0_check: None,
        };
        let mut tree = Tree::new();
        add(&mut tree, &s).unwrap();
        let cfg = text(&tree, "scenarios/demo.plain/guest.cfg");
        assert!(
            cfg.contains("type = \"pvh\"\nkernel = \"/scenarios/files/"),
            "{cfg}"
        );
        // Each disk unpacked into dom0's /tmp; the CD-ROM drive read-only.
        assert!(
            cfg.contains("disk = [ \"format=raw,vdev=hda,access=rw,target=/tmp/demo.plain.hda.img\", \"format=raw,vdev=hdc,access=ro,devtype=cdrom,target=/tmp/demo.plain.hdc.img\" ]\n"),
            "{cfg}"
        );
        let run = text(&tree, "scenarios/demo.plain/run");
        assert!(
            !run.contains("dom0-check") && !run.contains("kill -0 $k"),
            "{run}"
        );
        assert!(tree.get("scenarios/demo.plain/dom0-check").is_none());
    }
}
