//! The test machines, one file each in `ci/machines/NAME.toml`: what a machine is made of
//! (its architecture, its Xen release, the pinned packages of its Xen and dom0) and how it
//! runs (the variants it boots, QEMU's machine and CPU, Xen's command line). Read strictly,
//! like recipes: an unknown key or a bad value is an error at its file:line:column.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::recipe::{from_toml, Locator};
use crate::variant::Variant;
use crate::workspace::Workspace;

/// Where the machine files live, relative to the checkout.
pub const DIR: &str = "ci/machines";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    summary: String,
    arch: Spanned<String>,
    xen: Spanned<String>,
    packages: Spanned<String>,
    variants: Spanned<Vec<Variant>>,
    qemu_machine: String,
    qemu_cpu: String,
    xen_cmdline: String,
    /// A Kconfig fragment (a file of the checkout): the hypervisor is then built from the
    /// pinned `src:xen` with Debian's configuration plus this, instead of taken from
    /// Debian's hypervisor package.
    #[serde(default)]
    xen_config: Option<Spanned<String>>,
    /// The machine's own scenarios (a file of `[[boot-test]]` tables in the checkout).
    #[serde(default)]
    selftest: Option<Spanned<String>>,
}

/// A validated machine file.
#[derive(Clone, Debug)]
pub struct Spec {
    /// `<arch>-xen<release>`, the file's name.
    pub name: String,
    pub summary: String,
    pub arch: String,
    /// The Xen release, such as `4.17`: Debian names its hypervisor package and tool folder
    /// after it (`xen-hypervisor-4.17-amd64`, `/usr/lib/xen-4.17`).
    pub xen: String,
    /// The `[[env]]` of inputs.lock the machine is assembled from.
    pub packages: String,
    pub variants: Vec<Variant>,
    pub qemu_machine: String,
    pub qemu_cpu: String,
    pub xen_cmdline: String,
    /// See `xen-config`: the fragment's path, relative to the checkout.
    pub xen_config: Option<PathBuf>,
    /// The machine's own scenarios, relative to the checkout.
    pub selftest: Option<PathBuf>,
}

impl Spec {
    /// The QEMU that emulates the machine (x86_32 guests run on a 64-bit Xen).
    pub fn qemu(&self) -> &'static str {
        super::arch::of(&self.arch).qemu
    }
}

impl Spec {
    /// Whether the machine runs the scenario: its variant, and its owner's Xen release if
    /// the owner is bound to one.
    pub fn runs(&self, t: &crate::recipe::BootTest) -> bool {
        self.variants.contains(&t.variant)
            && (t.xen_releases.is_empty() || t.xen_releases.contains(&self.xen))
    }
}

/// Parses one machine file; `has_env` says whether inputs.lock has an `[[env]]` of a name,
/// `exists` whether the checkout has a file.
pub fn parse(
    path: &Path,
    src: &str,
    has_env: &dyn Fn(&str) -> bool,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Spec> {
    let raw: Raw = from_toml(path, src)?;
    let loc = Locator::new(path, src);
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("a machine file needs a name")?
        .to_string();
    let arch = raw.arch.get_ref();
    if !["x86_64", "x86_32", "aarch64"].contains(&arch.as_str()) {
        bail!(
            "{}: arch `{arch}`: a machine is x86_64, x86_32 or aarch64",
            loc.at(raw.arch.span())
        );
    }
    let xen = raw.xen.get_ref();
    if !crate::recipe::is_xen_release(xen) {
        bail!(
            "{}: xen `{xen}`: write the Xen release as MAJOR.MINOR, such as 4.17",
            loc.at(raw.xen.span())
        );
    }
    let want = format!("{arch}-xen{xen}");
    if name != want {
        bail!(
            "{}: a machine of arch `{arch}` and xen `{xen}` is named `{want}`: rename the file to {want}.toml",
            path.display()
        );
    }
    if !has_env(raw.packages.get_ref()) {
        bail!(
            "{}: packages `{}` is no [[env]] of inputs.lock: add one there and run `cargo xtask pin`",
            loc.at(raw.packages.span()),
            raw.packages.get_ref()
        );
    }
    let variants = raw.variants.get_ref();
    if variants.is_empty() {
        bail!(
            "{}: a machine must run at least one variant",
            loc.at(raw.variants.span())
        );
    }
    if let Some(v) = variants.iter().find(|v| v.arch() != arch) {
        bail!(
            "{}: variant {v} does not run on an {arch} machine",
            loc.at(raw.variants.span())
        );
    }
    // Both name files of the checkout, by paths relative to its top.
    let file = |f: &Option<Spanned<String>>, what: &str| -> Result<Option<PathBuf>> {
        let Some(f) = f else { return Ok(None) };
        let p = Path::new(f.get_ref());
        let plain = p
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || !exists(p) {
            bail!(
                "{}: {what} `{}` is no file of the checkout (name it from the top, such as ci/machines/NAME.config)",
                loc.at(f.span()),
                p.display()
            );
        }
        Ok(Some(p.to_path_buf()))
    };
    let xen_config = file(&raw.xen_config, "xen-config")?;
    let selftest = file(&raw.selftest, "selftest")?;
    Ok(Spec {
        selftest,
        xen_config,
        name,
        summary: raw.summary,
        arch: arch.clone(),
        xen: xen.clone(),
        packages: raw.packages.into_inner(),
        variants: variants.clone(),
        qemu_machine: raw.qemu_machine,
        qemu_cpu: raw.qemu_cpu,
        xen_cmdline: raw.xen_cmdline,
    })
}

/// Every machine file, sorted by name.
pub fn load_all(ws: &Workspace) -> Result<Vec<Spec>> {
    let dir = ws.root.join(DIR);
    let mut paths: Vec<PathBuf> = fs_err::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let has_env = |n: &str| ws.lock.envs.iter().any(|e| e.name == n);
    paths
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(&ws.root).unwrap_or(p);
            let src = fs_err::read_to_string(p)?;
            parse(rel, &src, &has_env, &|f| ws.root.join(f).is_file())
        })
        .collect()
}

/// The machine named `name`, or all of them.
pub fn select(all: Vec<Spec>, name: Option<&str>) -> Result<Vec<Spec>> {
    let Some(name) = name else {
        return Ok(all);
    };
    let known: Vec<String> = all.iter().map(|m| m.name.clone()).collect();
    let picked: Vec<Spec> = all.into_iter().filter(|m| m.name == name).collect();
    if picked.is_empty() {
        bail!(
            "no machine named `{name}` (known: {}; their files are in {DIR}/)",
            known.join(", ")
        );
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"summary = "Xen 4.17 with a Debian 12 dom0"
arch = "x86_64"
xen = "4.17"
packages = "machine-x86_64-xen4.17"
variants = ["x86_64-pv", "x86_64-pvh"]
qemu-machine = "q35"
qemu-cpu = "max"
xen-cmdline = "loglvl=all"
selftest = "ci/x86_64/selftest.toml"
"#;

    fn check(name: &str, src: &str) -> std::result::Result<Spec, String> {
        let path = PathBuf::from(format!("ci/machines/{name}.toml"));
        parse(&path, src, &|e| e == "machine-x86_64-xen4.17", &|f| {
            f != Path::new("ci/machines/missing.config")
        })
        .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn good_machine_parses() {
        let m = check("x86_64-xen4.17", GOOD).unwrap();
        assert_eq!((m.arch.as_str(), m.xen.as_str()), ("x86_64", "4.17"));
        assert_eq!(m.variants, [Variant::X86_64Pv, Variant::X86_64Pvh]);
        assert_eq!(
            m.selftest.as_deref(),
            Some(Path::new("ci/x86_64/selftest.toml"))
        );
    }

    /// Each bad machine file and the start of the message it must give.
    #[test]
    fn bad_machines_name_file_line_and_column() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("x86_64-xen4.17", "qemu-cpu = \"max\"", "qemu-cpus = \"max\"", "ci/machines/x86_64-xen4.17.toml:7:1: unknown field `qemu-cpus`"),
            ("x86_64-xen4.17", "arch = \"x86_64\"", "arch = \"riscv\"", "ci/machines/x86_64-xen4.17.toml:2:8: arch `riscv`"),
            ("x86_64-xen4.17", "xen = \"4.17\"", "xen = \"4.x\"", "ci/machines/x86_64-xen4.17.toml:3:7: xen `4.x`"),
            ("x86_64-xen4.20", "", "", "ci/machines/x86_64-xen4.20.toml: a machine of arch `x86_64` and xen `4.17` is named `x86_64-xen4.17`"),
            ("x86_64-xen4.17", "packages = \"machine-x86_64-xen4.17\"", "packages = \"nope\"", "ci/machines/x86_64-xen4.17.toml:4:12: packages `nope` is no [[env]]"),
            ("x86_64-xen4.17", "[\"x86_64-pv\", \"x86_64-pvh\"]", "[\"aarch64\"]", "ci/machines/x86_64-xen4.17.toml:5:12: variant aarch64 does not run on an x86_64 machine"),
            ("x86_64-xen4.17", "[\"x86_64-pv\", \"x86_64-pvh\"]", "[\"x86_64-hvm\"]", "ci/machines/x86_64-xen4.17.toml:5:12: unknown variant `x86_64-hvm`"),
            ("x86_64-xen4.17", "[\"x86_64-pv\", \"x86_64-pvh\"]", "[]", "ci/machines/x86_64-xen4.17.toml:5:12: a machine must run at least one variant"),
            ("x86_64-xen4.17", "xen-cmdline = \"loglvl=all\"", "xen-cmdline = \"loglvl=all\"\nxen-config = \"../etc/x\"", "ci/machines/x86_64-xen4.17.toml:9:14: xen-config `../etc/x` is no file of the checkout"),
            ("x86_64-xen4.17", "xen-cmdline = \"loglvl=all\"", "xen-cmdline = \"loglvl=all\"\nxen-config = \"ci/machines/missing.config\"", "ci/machines/x86_64-xen4.17.toml:9:14: xen-config `ci/machines/missing.config` is no file of the checkout"),
        ];
        for (name, from, to, want) in cases {
            assert!(GOOD.contains(from), "case {from:?} does not apply");
            let got = check(name, &GOOD.replacen(from, to, 1)).expect_err(want);
            assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
        }
    }
}
