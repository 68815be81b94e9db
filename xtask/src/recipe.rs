//! `stubdoms/NAME/stubdom.toml`: one strict manifest per payload. Read into raw structs
//! (unknown keys are errors), then validated into [`Recipe`], with every error naming the
//! file, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::variant::Variant;

/// Which builder turns the recipe into images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A Rust stub domain on the `stubrt` runtime.
    Rust,
    /// A C stub domain on the runtime's C API.
    C,
    /// GRUB 2 built for Xen's PV/PVH platforms.
    Pvgrub,
    /// Linux + upstream QEMU device-model stub domain.
    Ioemu,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Rust => "rust",
            Kind::C => "c",
            Kind::Pvgrub => "pvgrub",
            Kind::Ioemu => "ioemu",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRecipe {
    name: Spanned<String>,
    summary: String,
    kind: Kind,
    /// SPDX expression of the image's licence.
    licence: String,
    #[serde(default)]
    inputs: Vec<Spanned<String>>,
    /// Images bound to a Xen release: release (MAJOR.MINOR, quoted) -> the build environment
    /// whose Xen libraries that release's image links against. One image per release, each
    /// boot-tested on that release's machines only and installed where its toolstack looks.
    /// Empty: one image, using only Xen's stable interfaces.
    #[serde(default)]
    xen_releases: BTreeMap<String, Spanned<String>>,
    // Not `Spanned`: a table made implicitly by `[variants.NAME]` headers carries no span.
    variants: BTreeMap<Variant, RawVariant>,
    #[serde(default, rename = "boot-test")]
    boot_tests: Vec<RawBootTest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawVariant {
    file: Spanned<String>,
    /// Further files the same build installs (e.g. the ioemu kernel beside its rootfs).
    #[serde(default)]
    extra_files: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBootTest {
    name: Spanned<String>,
    variant: Spanned<Variant>,
    #[serde(default)]
    mode: BootMode,
    #[serde(default)]
    kernel: Option<String>,
    #[serde(default = "default_memory")]
    memory: u32,
    #[serde(default = "default_vcpus")]
    vcpus: u32,
    #[serde(default)]
    cmdline: Option<String>,
    #[serde(default)]
    ramdisk: Option<String>,
    #[serde(default)]
    extra: Option<String>,
    #[serde(default)]
    xl: BTreeMap<String, String>,
    #[serde(default)]
    disks: Vec<Disk>,
    expect: Vec<Spanned<String>>,
    #[serde(default = "default_forbid")]
    forbid: Vec<Spanned<String>>,
    #[serde(default)]
    xenstore: BTreeMap<String, Spanned<String>>,
    /// xl.cfg's `type`, when the guest is not of the variant's own type (an HVM guest whose
    /// device model is the PV image under test).
    #[serde(default)]
    guest_type: Option<GuestType>,
    /// xl.cfg keys whose value is a file (same sources as disk files), e.g.
    /// `stubdomain_kernel`.
    #[serde(default)]
    xl_files: BTreeMap<String, String>,
    /// dom0 carries what HVM guests need: Debian's qemu-system-xen (libxl serves a stub
    /// domain's consoles with it) and SeaBIOS.
    #[serde(default)]
    dom0_hvm: bool,
    /// A script (in the recipe folder) run in dom0 once the guest exists, with `DOMID` and
    /// `NAME` set and the guest's console so far in `./console.log`; its output lines are
    /// matched against `dom0-expect`, in order.
    #[serde(default)]
    dom0_check: Option<Spanned<String>>,
    #[serde(default)]
    dom0_expect: Vec<Spanned<String>>,
    timeout: u64,
    /// mode = "efi": the ESP configuration (a file beside the scenarios), and the files it
    /// names, each from a source as for disk files (`"Image-domu1.bin" = "artifact"`).
    #[serde(default)]
    esp: Option<Spanned<String>>,
    #[serde(default)]
    esp_files: BTreeMap<String, String>,
    /// For the harness's own tests: the scenario must fail, with a diagnosis matching this.
    #[serde(default)]
    must_fail: Option<Spanned<String>>,
    /// Install a distribution set into dom0 first, as a layout lays it out (for scenarios
    /// that check the toolstack finds the images by itself).
    #[serde(default)]
    installed: Option<DistInstall>,
    /// Of the owner's `xen-releases`, the ones this scenario runs on (default: all); the
    /// recipe says why a release is left out.
    #[serde(default)]
    xen_releases: Option<Spanned<Vec<String>>>,
    /// A reference measurement for another boot test of the recipe (the same guest served
    /// another way): `cargo xtask bench` runs both and prints how they compare; the normal
    /// boot tests leave it out.
    #[serde(default)]
    baseline_for: Option<Spanned<String>>,
}

/// A distribution set (`images/SET.toml`) installed into the test dom0.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DistInstall {
    pub set: String,
    #[serde(default)]
    pub layout: crate::dist::Layout,
}

fn default_memory() -> u32 {
    32
}
fn default_vcpus() -> u32 {
    1
}
fn default_forbid() -> Vec<Spanned<String>> {
    ["Kernel panic", "BUG:", "panicked at"]
        .into_iter()
        .map(|s| Spanned::new(0..0, s.to_string()))
        .collect()
}

/// xl.cfg's `type` of a scenario's guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestType {
    Pv,
    Pvh,
    Hvm,
}

impl GuestType {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
            GuestType::Hvm => "hvm",
        }
    }
}

/// How a scenario starts the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// A guest created with `xl create` in the Debian dom0.
    #[default]
    Domu,
    /// The image itself booted as dom0: a second of boot, no dom0 userland (x86).
    Dom0,
    /// The image started by Xen itself at boot from device-tree nodes, with no dom0 (Arm).
    Dom0less,
    /// An EFI system partition made by `cargo xtask esp` from the scenario's `esp`
    /// configuration, booted by the pinned edk2 firmware (Arm).
    Efi,
}

/// A disk image made for a scenario without root: optional partition table, a file system,
/// and files copied in from the recipe folder, built artifacts or pinned packages.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Disk {
    pub vdev: String,
    #[serde(default = "default_disk_size")]
    pub size_mib: u32,
    #[serde(default)]
    pub table: PartitionTable,
    #[serde(default)]
    pub fs: FileSystem,
    /// The file system's UUID, for configurations that find it by UUID as installers
    /// write them (`search --fs-uuid`, `root=UUID=`); mke2fs picks one at random otherwise.
    #[serde(default)]
    pub fs_uuid: Option<FsUuid>,
    /// Path in the disk's file system -> source (see `boot::disk` for the forms).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Code for the disk's first sector, a BIOS boot sector, as an annotated hex file (see
    /// `boot::disk::boot_sector`); the 55 AA signature is added.
    #[serde(default)]
    pub boot_sector: Option<String>,
    /// A CD-ROM drive (xl `devtype=cdrom`, read-only) with the image as its medium.
    #[serde(default)]
    pub cdrom: bool,
}

/// A UUID in its usual 8-4-4-4-12 hexadecimal form, checked when the recipe is read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FsUuid(String);

impl FsUuid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for FsUuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let groups: Vec<&str> = s.split('-').collect();
        let shape = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
        if !shape
            || !groups
                .iter()
                .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(serde::de::Error::custom(format!(
                "`{s}` is not a UUID: write it as 8-4-4-4-12 hexadecimal digits, such as 5d0c2f6e-8a3b-4c1d-9e7f-0123456789ab"
            )));
        }
        Ok(FsUuid(s.to_ascii_lowercase()))
    }
}

fn default_disk_size() -> u32 {
    16
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionTable {
    #[default]
    None,
    Msdos,
    Gpt,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileSystem {
    #[default]
    Ext2,
    Ext4,
    /// Raw: the disk holds zeroes and the partition table only.
    None,
}

/// A validated recipe.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub name: String,
    pub summary: String,
    pub kind: Kind,
    pub licence: String,
    pub dir: PathBuf,
    /// The recipe file (`stubdom.toml`).
    pub path: PathBuf,
    pub inputs: Vec<String>,
    pub variants: BTreeMap<Variant, VariantOutput>,
    pub boot_tests: Vec<BootTest>,
    /// See `xen-releases`: Xen release -> build environment with its libraries; empty for
    /// images that work with every release.
    pub xen_releases: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct VariantOutput {
    /// The file name the variant installs as, e.g. `pv-grub-x86_64.gz`.
    pub file: String,
    /// Further files of the same build, each an artifact of its own in the manifest.
    pub extra_files: Vec<String>,
}

impl VariantOutput {
    /// Every file the variant installs: `file` first, then `extra_files` in recipe order.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.file.as_str()).chain(self.extra_files.iter().map(String::as_str))
    }
}

#[derive(Clone, Debug)]
pub struct BootTest {
    pub recipe: String,
    pub name: String,
    pub variant: Variant,
    pub mode: BootMode,
    pub kernel: Option<String>,
    pub memory: u32,
    pub vcpus: u32,
    pub cmdline: Option<String>,
    pub ramdisk: Option<String>,
    pub extra: Option<String>,
    pub xl: BTreeMap<String, String>,
    pub disks: Vec<Disk>,
    pub expect: Vec<regex::Regex>,
    pub forbid: Vec<regex::Regex>,
    pub xenstore: BTreeMap<String, regex::Regex>,
    pub guest_type: Option<GuestType>,
    pub xl_files: BTreeMap<String, String>,
    pub dom0_hvm: bool,
    pub dom0_check: Option<String>,
    pub dom0_expect: Vec<regex::Regex>,
    pub timeout: u64,
    pub must_fail: Option<regex::Regex>,
    /// The owner's `xen-releases`: the scenario runs on machines of those releases only (on
    /// each with that release's image); empty: on every release.
    pub xen_releases: Vec<String>,
    pub installed: Option<DistInstall>,
    /// mode = "efi": the ESP configuration and the files it names.
    pub esp: Option<String>,
    pub esp_files: BTreeMap<String, String>,
    /// A bench-only reference for the named boot test of the same recipe.
    pub baseline_for: Option<String>,
}

impl Recipe {
    pub fn output(&self, variant: Variant) -> Option<&VariantOutput> {
        self.variants.get(&variant)
    }

    /// The builds of each variant: one per Xen release in `xen-releases`, or one for all.
    pub fn xen_builds(&self) -> Vec<Option<&str>> {
        if self.xen_releases.is_empty() {
            vec![None]
        } else {
            self.xen_releases.keys().map(|r| Some(r.as_str())).collect()
        }
    }
}

/// Turns a byte span into `file:line:column`.
pub struct Locator<'a> {
    path: &'a Path,
    src: &'a str,
}

impl<'a> Locator<'a> {
    pub fn new(path: &'a Path, src: &'a str) -> Self {
        Locator { path, src }
    }

    pub fn at(&self, span: Range<usize>) -> String {
        let before = &self.src[..span.start.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}:{line}:{col}", self.path.display())
    }
}

/// Deserializes a project TOML file, a syntax or shape error named by `file:line:column`.
pub fn from_toml<T: serde::de::DeserializeOwned>(path: &Path, src: &str) -> Result<T> {
    toml::from_str(src).map_err(|e| {
        let loc = e.span().map(|s| Locator { path, src }.at(s));
        let msg = e.message().trim_end_matches('\n').to_string();
        anyhow::anyhow!(
            "{}: {msg}",
            loc.unwrap_or_else(|| path.display().to_string())
        )
    })
}

/// Parses and validates one `stubdom.toml`.
pub fn parse(path: &Path, src: &str) -> Result<Recipe> {
    let raw: RawRecipe = from_toml(path, src)?;
    let loc = Locator { path, src };
    let dir = path.parent().context("recipe path has no folder")?;

    let name = raw.name.get_ref();
    let folder = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !is_valid_name(name) {
        bail!(
            "{}: invalid name `{name}`: use lowercase letters, digits and `-`, starting with a letter",
            loc.at(raw.name.span())
        );
    }
    if name != folder {
        bail!(
            "{}: name `{name}` does not match its folder `{folder}`: rename one of them",
            loc.at(raw.name.span())
        );
    }
    if raw.variants.is_empty() {
        bail!(
            "{}: `variants` is empty: a recipe builds at least one variant",
            path.display()
        );
    }
    let mut variants = BTreeMap::new();
    let mut files = BTreeMap::new();
    for (variant, out) in raw.variants {
        for file in std::iter::once(&out.file).chain(&out.extra_files) {
            let name = file.get_ref();
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                bail!(
                    "{}: `file` must be a plain file name, not `{name}`",
                    loc.at(file.span())
                );
            }
            match files.insert(name.clone(), variant) {
                Some(other) if other == variant => bail!(
                    "{}: variant {variant} installs `{name}` twice",
                    loc.at(file.span())
                ),
                Some(other) => bail!(
                    "{}: variants {other} and {variant} both install as `{name}`",
                    loc.at(file.span())
                ),
                None => {}
            }
        }
        variants.insert(
            variant,
            VariantOutput {
                file: out.file.into_inner(),
                extra_files: out
                    .extra_files
                    .into_iter()
                    .map(|f| f.into_inner())
                    .collect(),
            },
        );
    }
    let mut inputs = Vec::new();
    for input in raw.inputs {
        if inputs.contains(input.get_ref()) {
            bail!(
                "{}: input `{}` is listed twice",
                loc.at(input.span()),
                input.get_ref()
            );
        }
        inputs.push(input.into_inner());
    }

    let mut xen_releases = BTreeMap::new();
    for (release, env) in raw.xen_releases {
        if !is_xen_release(&release) {
            bail!(
                "{}: xen-releases: `{release}` is not a Xen release: write it as MAJOR.MINOR in quotes, such as \"4.17\"",
                loc.at(env.span())
            );
        }
        xen_releases.insert(release, env.into_inner());
    }
    let releases: Vec<String> = xen_releases.keys().cloned().collect();
    let boot_tests = validate_tests(raw.boot_tests, &loc, name, &releases, &|v| {
        variants.contains_key(&v)
    })?;

    Ok(Recipe {
        name: raw.name.into_inner(),
        summary: raw.summary,
        kind: raw.kind,
        licence: raw.licence,
        dir: dir.to_path_buf(),
        path: path.to_path_buf(),
        inputs,
        variants,
        boot_tests,
        xen_releases,
    })
}

/// A Xen release as MAJOR.MINOR, such as `4.17`.
pub fn is_xen_release(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
    })
}

/// Validates `[[boot-test]]` tables; `builds` says which variants the owner provides.
fn validate_tests(
    raw: Vec<RawBootTest>,
    loc: &Locator,
    owner: &str,
    xen_releases: &[String],
    builds: &dyn Fn(Variant) -> bool,
) -> Result<Vec<BootTest>> {
    let mut boot_tests: Vec<BootTest> = Vec::new();
    // What `baseline-for` may name: the tests that are not baselines themselves.
    let measured: Vec<String> = raw
        .iter()
        .filter(|t| t.baseline_for.is_none())
        .map(|t| t.name.get_ref().clone())
        .collect();
    for t in raw {
        let test_name = t.name.get_ref();
        if let Some(b) = &t.baseline_for {
            if !measured.contains(b.get_ref()) {
                bail!(
                    "{}: boot-test `{test_name}`: baseline-for names `{}`, which is not another (non-baseline) boot test of {owner}",
                    loc.at(b.span()),
                    b.get_ref()
                );
            }
        }
        if !is_valid_name(test_name) {
            bail!(
                "{}: invalid boot-test name `{test_name}`",
                loc.at(t.name.span())
            );
        }
        if boot_tests.iter().any(|b: &BootTest| &b.name == test_name) {
            bail!(
                "{}: duplicate boot-test name `{test_name}`",
                loc.at(t.name.span())
            );
        }
        let releases = match &t.xen_releases {
            None => xen_releases.to_vec(),
            Some(list) => {
                if let Some(bad) = list.get_ref().iter().find(|r| !xen_releases.contains(r)) {
                    bail!(
                        "{}: boot-test `{test_name}`: xen-releases names {bad}, which the recipe's `xen-releases` does not build ({})",
                        loc.at(list.span()),
                        if xen_releases.is_empty() { "none".to_string() } else { xen_releases.join(", ") }
                    );
                }
                list.get_ref().clone()
            }
        };
        let variant = *t.variant.get_ref();
        if !builds(variant) {
            bail!(
                "{}: boot-test `{test_name}` uses variant {variant}, which this recipe does not build",
                loc.at(t.variant.span())
            );
        }
        if t.expect.is_empty() {
            bail!(
                "{}: boot-test `{test_name}` expects no console line: a test must check something",
                loc.at(t.name.span())
            );
        }
        if t.timeout == 0 || t.timeout > 1800 {
            bail!(
                "{}: boot-test `{test_name}`: timeout must be 1..=1800 seconds",
                loc.at(t.name.span())
            );
        }
        let re = |s: &Spanned<String>| {
            regex::Regex::new(s.get_ref())
                .map_err(|e| anyhow::anyhow!("{}: bad regular expression: {e}", loc.at(s.span())))
        };
        let expect = t.expect.iter().map(re).collect::<Result<_>>()?;
        let forbid = t.forbid.iter().map(re).collect::<Result<_>>()?;
        if let Some((k, v)) = t.xenstore.iter().find(|(k, _)| {
            k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        }) {
            bail!(
                "{}: xenstore key `{k}` may hold only letters, digits and _-./",
                loc.at(v.span())
            );
        }
        let xenstore = t
            .xenstore
            .iter()
            .map(|(k, v)| Ok((k.clone(), re(v)?)))
            .collect::<Result<_>>()?;
        if let Some(k) = t.xl_files.keys().find(|k| !is_xl_key(k)) {
            bail!(
                "{}: boot-test `{test_name}`: `{k}` in xl-files is not an xl.cfg key",
                loc.at(t.name.span())
            );
        }
        match (&t.dom0_check, t.dom0_expect.is_empty()) {
            (Some(c), true) => bail!(
                "{}: boot-test `{test_name}` runs a dom0 check but expects none of its lines: add `dom0-expect`",
                loc.at(c.span())
            ),
            (None, false) => bail!(
                "{}: boot-test `{test_name}` has `dom0-expect` but no `dom0-check` script",
                loc.at(t.name.span())
            ),
            _ => {}
        }
        let mode = match t.mode {
            BootMode::Domu => None,
            BootMode::Dom0 => Some("dom0"),
            BootMode::Dom0less => Some("dom0less"),
            BootMode::Efi => Some("efi"),
        };
        if let Some(mode) = mode {
            if t.dom0_check.is_some()
                || t.guest_type.is_some()
                || !t.xl_files.is_empty()
                || t.dom0_hvm
                || !t.disks.is_empty()
                || !t.xenstore.is_empty()
            {
                bail!(
                    "{}: boot-test `{test_name}`: guest-type, xl-files, dom0-hvm, dom0-check, disks and xenstore are for xl guests, not mode = \"{mode}\"",
                    loc.at(t.name.span())
                );
            }
        }
        match (&t.esp, t.mode == BootMode::Efi) {
            (None, true) => bail!(
                "{}: boot-test `{test_name}`: mode = \"efi\" needs `esp`, the ESP configuration",
                loc.at(t.name.span())
            ),
            (Some(e), false) => bail!(
                "{}: boot-test `{test_name}`: `esp` is for mode = \"efi\"",
                loc.at(e.span())
            ),
            _ => {}
        }
        if !t.esp_files.is_empty() && t.mode != BootMode::Efi {
            bail!(
                "{}: boot-test `{test_name}`: `esp-files` is for mode = \"efi\"",
                loc.at(t.name.span())
            );
        }
        let dom0less_arch =
            matches!(t.mode, BootMode::Dom0less | BootMode::Efi) && variant != Variant::Aarch64;
        if dom0less_arch || (t.mode == BootMode::Dom0 && variant == Variant::Aarch64) {
            bail!(
                "{}: boot-test `{test_name}`: mode = \"dom0less\" and \"efi\" are for aarch64 and mode = \"dom0\" for x86 (variant {variant})",
                loc.at(t.name.span())
            );
        }
        let dom0_expect = t.dom0_expect.iter().map(re).collect::<Result<_>>()?;
        boot_tests.push(BootTest {
            recipe: owner.to_string(),
            name: test_name.clone(),
            variant,
            mode: t.mode,
            kernel: t.kernel,
            memory: t.memory,
            vcpus: t.vcpus,
            cmdline: t.cmdline,
            ramdisk: t.ramdisk,
            extra: t.extra,
            xl: t.xl,
            disks: t.disks,
            expect,
            forbid,
            xenstore,
            guest_type: t.guest_type,
            xl_files: t.xl_files,
            dom0_hvm: t.dom0_hvm,
            dom0_check: t.dom0_check.map(Spanned::into_inner),
            dom0_expect,
            timeout: t.timeout,
            must_fail: t.must_fail.as_ref().map(re).transpose()?,
            xen_releases: releases,
            installed: t.installed,
            esp: t.esp.map(Spanned::into_inner),
            esp_files: t.esp_files,
            baseline_for: t.baseline_for.map(Spanned::into_inner),
        });
    }
    Ok(boot_tests)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenarios {
    #[serde(rename = "boot-test")]
    boot_tests: Vec<RawBootTest>,
}

/// A file of `[[boot-test]]` tables only, owned by no recipe (the boot machine's self-test):
/// each must name its `kernel`.
pub fn parse_scenarios(path: &Path, src: &str, owner: &str) -> Result<Vec<BootTest>> {
    let raw: RawScenarios = from_toml(path, src)?;
    let loc = Locator { path, src };
    for t in &raw.boot_tests {
        if t.kernel.is_none() && t.mode != BootMode::Efi {
            bail!(
                "{}: boot-test `{}` needs a `kernel`",
                loc.at(t.name.span()),
                t.name.get_ref()
            );
        }
    }
    validate_tests(raw.boot_tests, &loc, owner, &[], &|_| true)
}

/// An xl.cfg key: letters, digits and `_`.
pub fn is_xl_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Names of recipes, boot tests and new stub domains: `[a-z][a-z0-9-]*`, at most 48 bytes.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 48
        && !name.ends_with('-')
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// Loads every `stubdoms/*/stubdom.toml`, sorted by name.
pub fn load_all(root: &Path) -> Result<Vec<Recipe>> {
    let dir = root.join("stubdoms");
    let mut paths = Vec::new();
    for entry in fs_err::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path().join("stubdom.toml");
        if path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut recipes: Vec<Recipe> = Vec::new();
    for path in paths {
        let src =
            fs_err::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let recipe = parse(rel, &src)?;
        if let Some(other) = recipes.iter().find(|r| r.name == recipe.name) {
            bail!(
                "{}: recipe name `{}` is already used by {}",
                rel.display(),
                recipe.name,
                other.path.display()
            );
        }
        recipes.push(Recipe {
            dir: root.join(&recipe.dir),
            ..recipe
        });
    }
    Ok(recipes)
}

/// Picks the recipes named on the command line (all when none is named).
/// Refuses a Xen release no recipe builds images for (`--xen-release`), naming those that do.
pub fn check_xen_release(all: &[Recipe], release: &str) -> Result<()> {
    let known: std::collections::BTreeSet<&str> = all
        .iter()
        .flat_map(|r| r.xen_releases.keys().map(String::as_str))
        .collect();
    if !known.contains(release) {
        bail!(
            "no recipe builds images for Xen {release}; recipes' `xen-releases` name: {}",
            known.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

pub fn select<'a>(all: &'a [Recipe], names: &[String]) -> Result<Vec<&'a Recipe>> {
    if names.is_empty() {
        return Ok(all.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            all.iter().find(|r| &r.name == n).ok_or_else(|| {
                let known: Vec<_> = all.iter().map(|r| r.name.as_str()).collect();
                anyhow::anyhow!("no recipe named `{n}` (known: {})", known.join(", "))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "demo"
summary = "A demo"
kind = "rust"
licence = "GPL-2.0-only"
inputs = ["libxen-dev"]

[variants.x86_64-pv]
file = "demo.elf"

[[boot-test]]
name = "greets"
variant = "x86_64-pv"
expect = ["^hello"]
timeout = 30
"#;

    fn check(src: &str) -> std::result::Result<Recipe, String> {
        parse(Path::new("stubdoms/demo/stubdom.toml"), src).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn good_recipe_parses() {
        let r = check(GOOD).unwrap();
        assert_eq!(r.name, "demo");
        assert_eq!(r.kind, Kind::Rust);
        assert_eq!(r.variants[&Variant::X86_64Pv].file, "demo.elf");
        assert_eq!(r.boot_tests[0].memory, 32);
        assert_eq!(r.boot_tests[0].forbid.len(), 3);
    }

    #[test]
    fn disk_uuids_are_read_in_lower_case() {
        let src = GOOD.replace(
            "timeout = 30",
            "timeout = 30\ndisks = [{ vdev = \"xvda\", fs-uuid = \"5D0C2F6E-8A3B-4C1D-9E7F-0123456789AB\" }]",
        );
        let r = check(&src).unwrap();
        let uuid = r.boot_tests[0].disks[0]
            .fs_uuid
            .as_ref()
            .map(FsUuid::as_str);
        assert_eq!(uuid, Some("5d0c2f6e-8a3b-4c1d-9e7f-0123456789ab"));
    }

    /// Each bad recipe and the start of the message it must give (file:line:column first).
    #[test]
    fn bad_recipes_name_file_line_and_column() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "colour = \"red\"\n",
                "",
                "stubdoms/demo/stubdom.toml:2:1: unknown field `colour`",
            ),
            (
                "kind = \"rust\"",
                "kind = \"cobol\"",
                "stubdoms/demo/stubdom.toml:4:8: unknown variant `cobol`",
            ),
            (
                "[variants.x86_64-pv]",
                "[variants.x86_64-hvm]",
                "stubdoms/demo/stubdom.toml:8:11: unknown variant `x86_64-hvm`",
            ),
            (
                "name = \"demo\"",
                "name = \"other\"",
                "stubdoms/demo/stubdom.toml:2:8: name `other` does not match its folder `demo`",
            ),
            (
                "summary = \"A demo\"\n",
                "",
                "stubdoms/demo/stubdom.toml:1:1: missing field `summary`",
            ),
            (
                "inputs = [\"libxen-dev\"]",
                "inputs = [\"a\", \"a\"]",
                "stubdoms/demo/stubdom.toml:6:16: input `a` is listed twice",
            ),
            (
                "expect = [\"^hello\"]",
                "expect = [\"(\"]",
                "stubdoms/demo/stubdom.toml:14:11: bad regular expression",
            ),
            (
                "variant = \"x86_64-pv\"",
                "variant = \"aarch64\"",
                "stubdoms/demo/stubdom.toml:13:11: boot-test `greets` uses variant aarch64",
            ),
            (
                "timeout = 30",
                "timeout = 0",
                "stubdoms/demo/stubdom.toml:12:8: boot-test `greets`: timeout",
            ),
            (
                "expect = [\"^hello\"]",
                "expect = []",
                "stubdoms/demo/stubdom.toml:12:8: boot-test `greets` expects no console line",
            ),
            (
                "inputs = [\"libxen-dev\"]",
                "inputs = [\"libxen-dev\"]\nxen-releases = { \"4\" = \"bookworm-build\" }",
                "stubdoms/demo/stubdom.toml:7:24: xen-releases: `4` is not a Xen release: write it as MAJOR.MINOR in quotes",
            ),
            (
                "inputs = [\"libxen-dev\"]",
                "inputs = [\"libxen-dev\"]\nxen-releases = { 4.17 = \"bookworm-build\" }",
                "stubdoms/demo/stubdom.toml:7:",
            ),
            (
                "timeout = 30",
                "timeout = 30\nxen-releases = [\"4.17\"]",
                "stubdoms/demo/stubdom.toml:16:16: boot-test `greets`: xen-releases names 4.17, which the recipe's `xen-releases` does not build (none)",
            ),
            (
                "timeout = 30",
                "timeout = 30\ndisks = [{ vdev = \"xvda\", fs-uuid = \"5d0c2f6e-8a3b\" }]",
                "stubdoms/demo/stubdom.toml:16:37: `5d0c2f6e-8a3b` is not a UUID",
            ),
            (
                "timeout = 30",
                "timeout = 30\nmode = \"efi\"",
                "stubdoms/demo/stubdom.toml:12:8: boot-test `greets`: mode = \"efi\" needs `esp`",
            ),
            (
                "timeout = 30",
                "timeout = 30\nesp = \"efi/x.cfg\"",
                "stubdoms/demo/stubdom.toml:16:7: boot-test `greets`: `esp` is for mode = \"efi\"",
            ),
            (
                "timeout = 30",
                "timeout = 30\nesp-files = { \"k\" = \"artifact\" }",
                "stubdoms/demo/stubdom.toml:12:8: boot-test `greets`: `esp-files` is for mode = \"efi\"",
            ),
            (
                "timeout = 30",
                "timeout = 30\nmode = \"efi\"\nesp = \"efi/x.cfg\"",
                "stubdoms/demo/stubdom.toml:12:8: boot-test `greets`: mode = \"dom0less\" and \"efi\" are for aarch64",
            ),
        ];
        for (from, to, want) in cases {
            let src = if from.ends_with('\n') && to.is_empty() && from.starts_with("colour") {
                GOOD.replacen("name =", &format!("{from}name ="), 1)
            } else {
                assert!(GOOD.contains(from), "case {from:?} does not apply");
                GOOD.replacen(from, to, 1)
            };
            let got = check(&src).expect_err(want);
            assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
        }
    }

    #[test]
    fn extra_files_are_listed_after_the_main_file() {
        let src = GOOD.replace(
            "file = \"demo.elf\"",
            "file = \"demo-rootfs\"\nextra-files = [\"demo-kernel\"]",
        );
        let r = check(&src).unwrap();
        let files: Vec<&str> = r.variants[&Variant::X86_64Pv].files().collect();
        assert_eq!(files, ["demo-rootfs", "demo-kernel"]);
        let plain = check(GOOD).unwrap();
        let files: Vec<&str> = plain.variants[&Variant::X86_64Pv].files().collect();
        assert_eq!(files, ["demo.elf"]);
    }

    #[test]
    fn bad_extra_files() {
        let cases: &[(&str, &str)] = &[
            (
                "extra-files = [\"demo.elf\"]",
                "stubdoms/demo/stubdom.toml:10:16: variant x86_64-pv installs `demo.elf` twice",
            ),
            (
                "extra-files = [\"boot/kernel\"]",
                "stubdoms/demo/stubdom.toml:10:16: `file` must be a plain file name, not `boot/kernel`",
            ),
            (
                "extra-files = [\"k\"]\n[variants.x86_64-pvh]\nfile = \"k\"",
                "stubdoms/demo/stubdom.toml:12:8: variants x86_64-pv and x86_64-pvh both install as `k`",
            ),
        ];
        for (extra, want) in cases {
            let src = GOOD.replace(
                "file = \"demo.elf\"",
                &format!("file = \"demo.elf\"\n{extra}"),
            );
            let got = check(&src).expect_err(want);
            assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
        }
    }

    #[test]
    fn hvm_scenario_with_a_dom0_check() {
        let src = GOOD.replace(
            "timeout = 30",
            "guest-type = \"hvm\"\ndom0-hvm = true\nxl-files = { stubdomain_kernel = \"artifact:demo/demo.elf\" }\ndom0-check = \"tests/check.sh\"\ndom0-expect = [\"^ok$\"]\ntimeout = 30",
        );
        let t = &check(&src).unwrap().boot_tests[0];
        assert_eq!(t.guest_type, Some(GuestType::Hvm));
        assert!(t.dom0_hvm);
        assert_eq!(t.xl_files["stubdomain_kernel"], "artifact:demo/demo.elf");
        assert_eq!(t.dom0_check.as_deref(), Some("tests/check.sh"));
        assert!(t.dom0_expect[0].is_match("ok"));
        let plain = &check(GOOD).unwrap().boot_tests[0];
        assert_eq!((plain.guest_type, plain.dom0_hvm), (None, false));
    }

    #[test]
    fn a_baseline_names_another_boot_test() {
        let with = |extra: &str| {
            format!("{GOOD}\n[[boot-test]]\nname = \"ref\"\nvariant = \"x86_64-pv\"\nexpect = [\"^hello\"]\ntimeout = 30\n{extra}\n")
        };
        let r = check(&with("baseline-for = \"greets\"")).unwrap();
        assert_eq!(r.boot_tests[0].baseline_for, None);
        assert_eq!(r.boot_tests[1].baseline_for.as_deref(), Some("greets"));
        for bad in ["baseline-for = \"nope\"", "baseline-for = \"ref\""] {
            let e = check(&with(bad)).unwrap_err();
            assert!(
                e.starts_with(
                    "stubdoms/demo/stubdom.toml:22:16: boot-test `ref`: baseline-for names"
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn a_cdrom_disk() {
        let src = GOOD.replace(
            "timeout = 30",
            "disks = [{ vdev = \"hdc\", size-mib = 1, fs = \"none\", cdrom = true }]\ntimeout = 30",
        );
        let r = check(&src).unwrap();
        assert!(r.boot_tests[0].disks[0].cdrom);
    }

    #[test]
    fn bad_dom0_checks() {
        let cases: &[(&str, &str)] = &[
            (
                "dom0-check = \"c.sh\"",
                "stubdoms/demo/stubdom.toml:16:14: boot-test `greets` runs a dom0 check but expects none",
            ),
            (
                "dom0-expect = [\"x\"]",
                "stubdoms/demo/stubdom.toml:12:8: boot-test `greets` has `dom0-expect` but no `dom0-check`",
            ),
            (
                "xl-files = { \"a-b\" = \"artifact\" }",
                "stubdoms/demo/stubdom.toml:12:8: boot-test `greets`: `a-b` in xl-files is not an xl.cfg key",
            ),
            (
                "guest-type = \"hvm\"\nmode = \"dom0\"",
                "stubdoms/demo/stubdom.toml:12:8: boot-test `greets`: guest-type, xl-files",
            ),
            (
                "guest-type = \"hvm2\"",
                "stubdoms/demo/stubdom.toml:16:14: unknown variant `hvm2`",
            ),
        ];
        for (extra, want) in cases {
            let src = GOOD.replace("timeout = 30", &format!("timeout = 30\n{extra}"));
            let got = check(&src).expect_err(want);
            assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "rust-stubdom", "x2"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "A", "1x", "a_b", "a-", "a/b", "a.b", &"a".repeat(49)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
