//! Checks the packages `dist` writes with the tools packagers use, each run from the pinned
//! `trixie-check` environment (Debian 13's lintian and dpkg), never from the host:
//! lintian over every .deb in one run (it is slow to start), with errors and warnings both
//! failing (a set explains each tag it overrides in its `lintian-overrides`); then each .deb
//! installed with `dpkg --root` into a scratch folder, where its images must land where
//! libxl looks for them, with the bytes that were built; then every SBOM validated by
//! `pyspdxtools` (spdx-tools from PyPI, pinned in `ci/spdx-tools.toml`: the driver fetches
//! the wheels into the verified cache, and pip installs them into a virtual environment
//! without network, as every step runs).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::buildenv::Root;
use crate::cache::Cache;
use crate::fsx;
use crate::ui;
use crate::workspace::Workspace;

/// The environment the checking tools come from.
pub const ENV: &str = "trixie-check";

/// Where Debian's libxl looks for what each package installs, independently of how `dist`
/// lays packages out: (package, files), a package of another architecture than amd64
/// spelt `package:arch` as dpkg does. `{r}` is the package's Xen release: Debian builds
/// each release's libxl with its firmware folder (`libxl__xenfirmwaredir_path`) in
/// `/usr/lib/xen-<release>/boot`, where libxl opens `qemu-stubdom-linux-kernel` and
/// `-rootfs` (libxl_dm.c); PV-GRUB and the examples are named by path in guest
/// configurations (images/examples/*.cfg), `/usr/lib/xen/boot` as upstream installs it.
const WHERE_LIBXL_LOOKS: &[(&str, &[&str])] = &[
    (
        "xen-ioemu-stubdom-{r}",
        &[
            "usr/lib/xen-{r}/boot/qemu-stubdom-linux-kernel",
            "usr/lib/xen-{r}/boot/qemu-stubdom-linux-rootfs",
        ],
    ),
    (
        "xen-pvgrub",
        &[
            "usr/lib/xen/boot/pv-grub-x86_64.gz",
            "usr/lib/xen/boot/pv-grub-x86_32.gz",
            "usr/lib/xen/boot/pvh-grub.gz",
        ],
    ),
    (
        "xen-stubdom-examples",
        &[
            "usr/lib/xen/boot/rust-stubdom-x86_64-pv.elf",
            "usr/lib/xen/boot/rust-stubdom-x86_64-pvh.elf",
        ],
    ),
    (
        "xen-stubdom-examples:arm64",
        &[
            "usr/lib/xen/boot/rust-stubdom-aarch64.Image",
            "usr/lib/xen/boot/c-stubdom-aarch64.Image",
        ],
    ),
];

/// Writes every set's packages (building what is missing) and checks them, and that each
/// set's corresponding source is pinned; returns how many checks passed.
pub fn check(ws: &Workspace, cache: &Cache) -> Result<usize> {
    ui::step("packages: dist, then lintian, dpkg --root and pyspdxtools from trixie-check");
    let written = super::run(ws, &[], &super::Flags::default())?;
    let pinned = super::sources::check_pinned(ws, &[])?;
    Ok(pinned + check_written(ws, cache, &written, false)?)
}

/// Checks the packages `dist` wrote (`written`); returns how many checks passed.
pub fn check_written(
    ws: &Workspace,
    cache: &Cache,
    written: &[PathBuf],
    offline: bool,
) -> Result<usize> {
    let debs: Vec<PathBuf> = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .cloned()
        .collect();
    if debs.is_empty() {
        bail!("dist wrote no .deb");
    }
    let root = crate::buildenv::fetched_root(ws, cache, ENV, offline)?;
    let dist_dir = ws.target.join("dist");
    let mut passed = 0;
    for deb in &debs {
        dpkg_install(ws, &root, &dist_dir, deb)
            .with_context(|| format!("installing {} with dpkg --root", deb.display()))?;
        passed += 1;
    }
    let sboms: Vec<PathBuf> = written
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".spdx.json"))
        .cloned()
        .collect();
    let venv = spdx_validator(ws, cache, &root, offline)?;
    for sbom in &sboms {
        validate_sbom(&root, &venv, &dist_dir, sbom)?;
        passed += 1;
    }
    let rpms: Vec<PathBuf> = written
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rpm"))
        .cloned()
        .collect();
    if !rpms.is_empty() {
        rpm_checks(ws, &root, &dist_dir, &rpms)?;
        passed += 2;
    }
    // Last: the slowest.
    lintian(&root, &dist_dir, &debs)?;
    passed += 1;
    Ok(passed)
}

/// `rpm -K` (the digests rpm checks before it installs anything) and `rpmlint` over all
/// `rpms` at once, with the sets' `rpmlint-filters`; any error or warning left fails.
fn rpm_checks(ws: &Workspace, root: &Root, dist_dir: &Path, rpms: &[PathBuf]) -> Result<()> {
    let files: Vec<String> = rpms.iter().map(|r| file_name(r)).collect::<Result<_>>()?;
    let names: Vec<String> = files.iter().map(|n| format!("/work/{n}")).collect();
    let rc_dir = ws.target.join("dist-check/rpmlint");
    fs_err::create_dir_all(&rc_dir)?;
    crate::fsx::write_atomic(
        &rc_dir.join("rpmlintrc"),
        super::rpmlintrc(&ws.root, &files)?.as_bytes(),
    )?;
    for (program, args) in [
        ("rpm", vec!["--dbpath", "/tmp/rpmdb", "-K", "--nosignature"]),
        (
            "rpmlint",
            vec!["--info", "--strict", "--rpmlintrc", "/build/rpmlintrc"],
        ),
    ] {
        let out = root
            .step()
            .ro(dist_dir, "/work")
            .ro(&rc_dir, "/build")
            .cwd("/tmp")
            .command(program)?
            .args(&args)
            .args(&names)
            .output()
            .with_context(|| format!("running {program} in {ENV}"))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            bail!(
                "`{program} {}` found problems in the .rpm files ({}){}",
                args.join(" "),
                out.status,
                stderr_tail(&out.stderr)
            );
        }
    }
    Ok(())
}

/// The pins of `ci/spdx-tools.toml`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wheels {
    wheel: Vec<Wheel>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wheel {
    name: String,
    version: String,
    url: String,
    size: u64,
    sha256: String,
}

/// A virtual environment with pyspdxtools (made once per pin set, in `target/dist-check/`):
/// the pinned wheels from the verified cache, installed by the environment's pip with no
/// index and no network. Returns the host folder mounted at `/build`, holding `venv/`.
fn spdx_validator(ws: &Workspace, cache: &Cache, root: &Root, offline: bool) -> Result<PathBuf> {
    let pins_path = ws.root.join("ci/spdx-tools.toml");
    let text = fs_err::read_to_string(&pins_path)?;
    let pins: Wheels = crate::recipe::from_toml(Path::new("ci/spdx-tools.toml"), &text)?;
    let stamp_text = format!("{}{}", text, root.key);
    let home = ws.target.join("dist-check/spdx-tools");
    let stamp = home.join("stamp");
    if fs_err::read_to_string(&stamp).ok().as_deref() == Some(stamp_text.as_str()) {
        return Ok(home);
    }
    if home.exists() {
        fs_err::remove_dir_all(&home)?;
    }
    let wheels = home.join("wheels");
    fs_err::create_dir_all(&wheels)?;
    for w in &pins.wheel {
        let label = format!("wheel {} {}", w.name, w.version);
        let blob = crate::fetch::ensure_url(
            cache,
            &label,
            &w.url,
            w.size,
            &w.sha256,
            &crate::fetch::Flags { offline },
        )?;
        let file = w
            .url
            .rsplit('/')
            .next()
            .filter(|f| f.ends_with(".whl"))
            .with_context(|| {
                format!("ci/spdx-tools.toml: {label}: the url must end in the wheel's file name")
            })?;
        fs_err::copy(&blob, wheels.join(file))?;
    }
    let run = |program: &str, args: &[&str]| -> Result<()> {
        let out = root
            .step()
            .rw(&home, "/build")
            .cwd("/build")
            .command(program)?
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {ENV}"))?;
        if !out.status.success() {
            bail!(
                "`{program} {}` in {ENV} failed ({}){}",
                args.join(" "),
                out.status,
                stderr_tail(&out.stderr)
            );
        }
        Ok(())
    };
    ui::step("pyspdxtools: a virtual environment from the pinned wheels");
    // Without pip: Debian's pip needs the CA bundle that ca-certificates' maintainer script
    // would make, which the root lacks. A wheel is a zip of what goes into site-packages, so
    // unpacking the pinned wheels there installs them (pyspdxtools runs as a module).
    run("python3", &["-m", "venv", "--without-pip", "/build/venv"])?;
    let script = "site=$(/build/venv/bin/python3 -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])') && for w in /build/wheels/*.whl; do unzip -q -o \"$w\" -d \"$site\" || exit 1; done && /build/venv/bin/python3 -c 'import spdx_tools'";
    run("sh", &["-c", script])?;
    fs_err::write(&stamp, stamp_text)?;
    Ok(home)
}

/// `pyspdxtools -i` on one SBOM: parses and validates it against SPDX 2.3.
fn validate_sbom(root: &Root, venv: &Path, dist_dir: &Path, sbom: &Path) -> Result<()> {
    let name = file_name(sbom)?;
    let out = root
        .step()
        .ro(venv, "/build")
        .ro(dist_dir, "/work")
        .cwd("/tmp")
        .command("/build/venv/bin/python3")?
        .args([
            "-c",
            "import sys; from spdx_tools.spdx.clitools.pyspdxtools import main; sys.argv[0] = 'pyspdxtools'; main()",
            "-i",
            &format!("/work/{name}"),
        ])
        .output()
        .context("running pyspdxtools")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "pyspdxtools finds {} invalid ({}):\n{}",
            sbom.display(),
            out.status,
            said.trim_end()
        );
    }
    println!("{name}: valid SPDX 2.3 (pyspdxtools)");
    Ok(())
}

fn file_name(p: &Path) -> Result<String> {
    Ok(p.file_name()
        .with_context(|| format!("{} has no file name", p.display()))?
        .to_string_lossy()
        .into_owned())
}

/// lintian over all `debs` at once; any error or warning not overridden fails.
fn lintian(root: &Root, dist_dir: &Path, debs: &[PathBuf]) -> Result<()> {
    let mut args = vec![
        "--fail-on".to_string(),
        "error,warning".to_string(),
        "--tag-display-limit".to_string(),
        "0".to_string(),
        // The root has no /etc/dpkg/origins/default for lintian to find its vendor by.
        "--profile".to_string(),
        "debian".to_string(),
        "--display-info".to_string(),
        "--show-overrides".to_string(),
    ];
    for d in debs {
        args.push(format!("/work/{}", file_name(d)?));
    }
    let out = root
        .step()
        .ro(dist_dir, "/work")
        .cwd("/tmp")
        .command("lintian")?
        .args(&args)
        .output()
        .context("running lintian in trixie-check")?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() {
        bail!(
            "lintian found errors or warnings in the .deb files ({}): fix them, or override a tag in the set's `lintian-overrides` with the reason{}",
            out.status,
            stderr_tail(&out.stderr)
        );
    }
    Ok(())
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(
        "; its last messages:\n{}",
        lines[lines.len().saturating_sub(15)..].join("\n")
    )
}

/// Installs `deb` with `dpkg --root` into an empty scratch system and checks that dpkg
/// records it as installed and that the files libxl opens are there, as built.
fn dpkg_install(ws: &Workspace, root: &Root, dist_dir: &Path, deb: &Path) -> Result<()> {
    let control = stubdoms_archive::deb::read_control(deb)?;
    let scratch = ws.target.join("dist-check").join(&control.package);
    if scratch.exists() {
        fs_err::remove_dir_all(&scratch)?;
    }
    let admin = scratch.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        fs_err::create_dir_all(admin.join(d))?;
    }
    fs_err::write(admin.join("status"), "")?;
    fs_err::write(admin.join("available"), "")?;
    let name = file_name(deb)?;
    // A package for arm64 hosts installs into the scratch root all the same: its images are
    // data for the arm64 host's Xen, nothing here runs them.
    let arch = control.architecture.clone().unwrap_or_default();
    let foreign = arch != "amd64";
    let run = |args: &[&str]| -> Result<String> {
        let out = root
            .step()
            .ro(dist_dir, "/work")
            .rw(&scratch, "/build")
            .cwd("/tmp")
            .command("dpkg")?
            // The check root has no diff or ldconfig (essential packages its pins lack); a
            // scratch install with no maintainer scripts needs neither.
            .args([
                "--root",
                "/build",
                "--force-not-root",
                "--force-bad-path",
                "--log",
                "/dev/null",
            ])
            .args(foreign.then_some("--force-architecture"))
            .args(args)
            .output()
            .context("running dpkg in trixie-check")?;
        if !out.status.success() {
            bail!(
                "`dpkg --root {}` failed ({}){}",
                args.join(" "),
                out.status,
                stderr_tail(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    run(&["--install", &format!("/work/{name}")])?;
    let status = run(&["--status", &control.package])?;
    if !status.contains("Status: install ok installed") {
        bail!(
            "dpkg does not record {} as installed:\n{status}",
            control.package
        );
    }
    let listed = run(&["--listfiles", &control.package])?;
    let expected = expected_files(&if foreign {
        format!("{}:{arch}", control.package)
    } else {
        control.package.clone()
    })?;
    for rel in &expected {
        if !listed.lines().any(|l| l == format!("/{rel}")) {
            bail!(
                "{} does not install /{rel}, where libxl looks for it (dpkg -L lists:\n{listed})",
                control.package
            );
        }
        let installed = scratch.join(rel);
        let built = built_file(ws, &control.package, rel)?;
        let (got, _) = fsx::sha256_file(&installed)?;
        let (want, _) = fsx::sha256_file(&built)?;
        if got != want {
            bail!(
                "/{rel} as dpkg installed it differs from the built {}",
                built.display()
            );
        }
    }
    println!(
        "{}: installed with dpkg --root, {} file(s) where libxl looks",
        control.package,
        expected.len()
    );
    fs_err::remove_dir_all(&scratch)?;
    Ok(())
}

/// The files [`WHERE_LIBXL_LOOKS`] expects of a package.
fn expected_files(package: &str) -> Result<Vec<String>> {
    for (pattern, files) in WHERE_LIBXL_LOOKS {
        let release = match pattern.split_once("{r}") {
            Some((head, "")) => package.strip_prefix(head),
            _ => (package == *pattern).then_some(""),
        };
        if let Some(r) = release {
            return Ok(files.iter().map(|f| f.replace("{r}", r)).collect());
        }
    }
    bail!("{package}: check.rs does not know where libxl looks for this package's files (add it to WHERE_LIBXL_LOOKS)")
}

/// The built file under `target/images/` behind an installed path.
fn built_file(ws: &Workspace, package: &str, rel: &str) -> Result<PathBuf> {
    let name = file_name(Path::new(rel))?;
    let images = ws.target.join("images");
    let manifest = crate::builders::Manifest::load(&images)?;
    let release = rel
        .strip_prefix("usr/lib/xen-")
        .and_then(|r| r.split_once('/'))
        .map(|(r, _)| r.to_string());
    manifest
        .artifacts
        .iter()
        .find(|a| a.file == name && a.xen_release == release)
        .map(|a| images.join(a.rel_path()))
        .with_context(|| format!("{package}: no built file for /{rel} in the manifest"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn expected_files_by_package() {
        assert_eq!(
            super::expected_files("xen-ioemu-stubdom-4.17").unwrap(),
            [
                "usr/lib/xen-4.17/boot/qemu-stubdom-linux-kernel",
                "usr/lib/xen-4.17/boot/qemu-stubdom-linux-rootfs"
            ]
        );
        assert_eq!(super::expected_files("xen-pvgrub").unwrap().len(), 3);
        assert_eq!(
            super::expected_files("xen-stubdom-examples:arm64").unwrap()[0],
            "usr/lib/xen/boot/rust-stubdom-aarch64.Image"
        );
        assert!(super::expected_files("xen-pvgrubx").is_err());
    }
}
