//! `cargo xtask dist [SET...]`: distribution packages. A distribution set (`images/NAME.toml`)
//! says which artifacts a package holds and under which names; `dist` writes, per package
//! of a set (one, or one per Xen release for a `per-xen-release` set), into `target/dist/`:
//! a `.deb` in Debian's layout ([`deb`], [`debian`]), a tarball in `--layout`
//! (deterministic, owner 0:0, installable with `tar -C / -xzf`), a manifest (every file with
//! its sha256, the pinned inputs behind it with their sha256 and licence, the toolchain),
//! and `SHA256SUMS` over everything. [`check`] checks the packages with the tools
//! packagers use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use stubdoms_archive::Tree;

use crate::builders::{self, Manifest};
use crate::fsx;
use crate::recipe;

mod check;
mod deb;
mod debian;
mod held;
mod rpm;
mod sbom;
pub mod sources;

pub use check::check;

/// `cargo xtask dist`: [`run`] (and [`sources::write`] with `--sources`), then with
/// `--check` [`check::check_written`] (and [`sources::rebuild`] from each source set).
pub fn command(ws: &Workspace, names: &[String], flags: &Flags) -> Result<()> {
    let written = run(ws, names, flags)?;
    let source_sets = if flags.sources {
        sources::write(ws, names, flags)?
    } else {
        Vec::new()
    };
    for dir in &source_sets {
        println!("{}", dir.display());
    }
    if flags.check {
        let cache = crate::cache::Cache::open()?;
        let passed = sources::check_pinned(ws, names)?
            + check::check_written(ws, &cache, &written, flags.offline)?;
        println!("package checks: {passed} passed");
        for dir in &source_sets {
            let passed = sources::rebuild(ws, dir)?;
            println!("{}: offline rebuild, {passed} checks passed", dir.display());
        }
    }
    Ok(())
}
use crate::variant::Variant;
use crate::workspace::Workspace;

/// Where a distribution's toolstack looks for stub-domain images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Upstream Xen's default, `/usr/lib/xen/boot`.
    #[default]
    Upstream,
    /// Debian: images bound to a Xen release in `/usr/lib/xen-<release>/boot`, where that
    /// release's libxl looks; the others in `/usr/lib/xen/boot`.
    Debian,
    /// Fedora: `/usr/libexec/xen/boot`.
    Fedora,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Upstream => "upstream",
            Layout::Debian => "debian",
            Layout::Fedora => "fedora",
        })
    }
}

#[derive(clap::Args, Default)]
pub struct Flags {
    /// Where the images go: upstream (/usr/lib/xen/boot), debian (release-bound images in
    /// /usr/lib/xen-<release>/boot) or fedora (/usr/libexec/xen/boot).
    #[arg(long, value_enum, default_value_t)]
    pub layout: Layout,
    /// Of the images built per Xen release, only this release's. The upstream and fedora
    /// layouts have one folder for every release, so a set with images for several needs it.
    #[arg(long)]
    pub xen_release: Option<String>,
    /// Overrides the set's install prefix (default `/usr`).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Overrides the set's library folder under the prefix (`lib`; `libexec` for
    /// distributions that use `/usr/libexec/xen/boot`).
    #[arg(long)]
    pub libexecdir: Option<String>,
    /// The packages' maintainer, `Name <address>` (default: `$DEBFULLNAME <$DEBEMAIL>`, as
    /// Debian's packaging tools take it, when both are set or DEBEMAIL is `Name <address>`;
    /// else the set's `maintainer`).
    #[arg(long)]
    pub maintainer: Option<String>,
    /// Then check the packages: lintian over the .deb files, a `dpkg --root` install of
    /// each, pyspdxtools over the SBOMs (all from the pinned trixie-check environment), that
    /// every source package of each set's corresponding source is pinned; with `--sources`,
    /// also rebuild each set's images offline from its source set alone.
    #[arg(long)]
    pub check: bool,
    /// Also write each set's corresponding source to `target/dist/sources/<set>-<version>/`:
    /// the project's source, the Debian source packages of what the images are built from
    /// and hold, the crates, and every input the builds read, to rebuild them offline.
    #[arg(long)]
    pub sources: bool,
    /// Use only the input cache.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Set {
    name: String,
    version: String,
    /// One line: the packages' synopsis.
    summary: String,
    /// A paragraph or more: the packages' extended description.
    description: String,
    /// Who answers for the packages, `Name <address>` (`dist --maintainer` overrides it).
    maintainer: String,
    /// The project's web page, when it has one (the packages' `Homepage`).
    #[serde(default)]
    homepage: Option<String>,
    /// One package per Xen release, named `<name>-<release>`, each with that release's
    /// images (for images bound to a release, such as the ioemu stub domain's).
    #[serde(default)]
    per_xen_release: bool,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default = "default_libexecdir")]
    libexecdir: String,
    #[serde(rename = "file")]
    files: Vec<SetFile>,
    /// Files of the repository installed under `share/doc/<set>/`.
    #[serde(default)]
    docs: Vec<String>,
    /// SPDX identifier -> where its text comes from (`deb:PACKAGE:/path`).
    licence_texts: BTreeMap<String, String>,
    /// Lintian tags the .deb overrides (written to its lintian overrides file) -> why.
    #[serde(default)]
    lintian_overrides: BTreeMap<String, String>,
    /// rpmlint checks the .rpm is let off (`cargo xtask test` passes them as filters) -> why.
    #[serde(default)]
    rpmlint_filters: BTreeMap<String, String>,
}

/// The rpmlint filters of the sets of the packages `rpms` (file names), as `rpmlintrc`
/// lines: each check is let off only for that set's packages. rpmlint fails on a filter
/// that matches nothing, so other sets' filters are left out.
fn rpmlintrc(root: &Path, rpms: &[String]) -> Result<String> {
    let mut out = String::new();
    for (path, set) in load_sets(root, &[])? {
        let prefix = format!("{}-", set.name);
        if !rpms.iter().any(|r| r.starts_with(&prefix)) {
            continue;
        }
        for (check, why) in &set.rpmlint_filters {
            if !check
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "{}: rpmlint-filters: `{check}` is not an rpmlint check name",
                    path.display()
                );
            }
            out += &format!(
                "# {}\n",
                why.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            out += &format!("addFilter(r\"^{}[^ ]*: [EW]: {check}( |$)\")\n", set.name);
        }
    }
    Ok(out)
}

fn default_prefix() -> String {
    "/usr".into()
}
fn default_libexecdir() -> String {
    "lib".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SetFile {
    recipe: String,
    variant: Variant,
    /// Which of the build's files (default: the variant's main `file`).
    #[serde(default)]
    file: Option<String>,
    /// The installed name (default: the artifact's own file name).
    #[serde(default)]
    install_as: Option<String>,
    /// Which of the recipe's inputs the file is generated from, for its SBOM and licence
    /// (default: all of them).
    #[serde(default)]
    from: Option<Vec<String>>,
    /// For an archive image (a rootfs): the files in it its build makes. Every other file
    /// must be byte for byte a file of a pinned package ([`held`]), or `dist` fails.
    #[serde(default)]
    built: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct DistManifest {
    set: String,
    version: String,
    arch: String,
    summary: String,
    layout: Layout,
    /// The folder of the images not bound to a Xen release.
    install_dir: String,
    source_date_epoch: u64,
    files: Vec<DistFile>,
    /// The build environments the set's images were built in (every package, pinned).
    build_environments: BTreeMap<String, crate::builders::manifest::Environment>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct DistFile {
    path: String,
    sha256: String,
    size: u64,
    recipe: String,
    variant: Variant,
    licence: String,
    /// The one Xen release the image works with, when it is bound to one.
    xen_release: Option<String>,
    /// The Xen releases it is boot-tested with.
    xen: Vec<String>,
    /// The pinned inputs it is generated from.
    inputs: Vec<DistInput>,
    /// For an archive image (a rootfs): the pinned packages whose files it holds as they
    /// are, and its files that are in none of them (built).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    holds: Vec<DistInput>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    built: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct DistInput {
    input: String,
    sha256: String,
    licence: String,
}

pub fn run(ws: &Workspace, names: &[String], flags: &Flags) -> Result<Vec<PathBuf>> {
    let sets = load_sets(&ws.root, names)?;
    let mut recipes: Vec<String> = Vec::new();
    for (_, set) in &sets {
        for f in &set.files {
            if !recipes.contains(&f.recipe) {
                recipes.push(f.recipe.clone());
            }
        }
    }
    recipe::select(&ws.recipes, &recipes)?;
    builders::run(
        ws,
        &recipes,
        &builders::Flags {
            variant: None,
            xen_release: None,
            offline: flags.offline,
            fresh: false,
        },
    )?;
    let images = ws.target.join("images");
    let manifest = Manifest::load(&images)?;
    let out_dir = ws.target.join("dist");
    fs_err::create_dir_all(&out_dir)?;
    let mut written = Vec::new();
    for (path, set) in &sets {
        for pkg in set_packages(ws, path, set, flags)? {
            written.extend(
                package(ws, &manifest, path, set, &pkg, flags, &out_dir)
                    .with_context(|| format!("packaging {} ({})", path.display(), pkg.name))?,
            );
        }
    }
    // SHA256SUMS covers every package and manifest in the folder, not only this run's.
    let mut sums = String::new();
    let mut entries: Vec<PathBuf> = fs_err::read_dir(&out_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            PACKAGE_SUFFIXES.iter().any(|s| n.ends_with(s))
        })
        .collect();
    entries.sort();
    for p in entries {
        let (sha, _) = fsx::sha256_file(&p)?;
        let name = p
            .file_name()
            .context("file name")?
            .to_string_lossy()
            .into_owned();
        sums += &format!("{sha}  {name}\n");
    }
    fsx::write_atomic(&out_dir.join("SHA256SUMS"), sums.as_bytes())?;
    for w in &written {
        println!("{}", w.display());
    }
    println!("{}", out_dir.join("SHA256SUMS").display());
    Ok(written)
}

/// What `dist` writes, by file name ending: what SHA256SUMS covers.
const PACKAGE_SUFFIXES: &[&str] = &[".tar.gz", ".manifest.json", ".deb", ".rpm", ".spdx.json"];

/// One package of a set: its name, the host architecture its images are for, and the Xen
/// release, if one.
struct Package {
    name: String,
    /// `x86_64` or `aarch64` ([`host_arch`]).
    arch: &'static str,
    xen: Option<String>,
    maintainer: String,
}

/// The packages of a set: one per host architecture of its files (and per Xen release).
fn set_packages(ws: &Workspace, path: &Path, set: &Set, flags: &Flags) -> Result<Vec<Package>> {
    let arches: std::collections::BTreeSet<&'static str> =
        set.files.iter().map(|f| host_arch(f.variant)).collect();
    let releases = packages_of(ws, path, set, flags.xen_release.as_deref())?;
    Ok(arches
        .into_iter()
        .flat_map(|a| releases.iter().map(move |x| (a, x)))
        .map(|(arch, xen)| Package::new(set, arch, xen.as_deref(), flags))
        .collect())
}

/// The architecture of the Xen hosts that run a variant's images: 32-bit PV guests run
/// on x86_64 hosts.
fn host_arch(v: Variant) -> &'static str {
    match v {
        Variant::Aarch64 => "aarch64",
        Variant::X86_64Pv | Variant::X86_64Pvh | Variant::X86_32Pv => "x86_64",
    }
}

impl Package {
    fn new(set: &Set, arch: &'static str, xen: Option<&str>, flags: &Flags) -> Package {
        let name = match (set.per_xen_release, xen) {
            (true, Some(r)) => format!("{}-{r}", set.name),
            _ => set.name.clone(),
        };
        Package {
            name,
            arch,
            xen: xen.map(str::to_string),
            maintainer: flags
                .maintainer
                .clone()
                .or_else(|| {
                    maintainer_from(
                        std::env::var("DEBFULLNAME").ok(),
                        std::env::var("DEBEMAIL").ok(),
                    )
                })
                .unwrap_or_else(|| set.maintainer.clone()),
        }
    }
}

/// The maintainer Debian's tools (dch, debmake) take from the environment: `DEBEMAIL`,
/// either `Name <address>` itself or an address that `DEBFULLNAME` names (a field needs
/// both).
fn maintainer_from(full_name: Option<String>, email: Option<String>) -> Option<String> {
    let email = email.filter(|e| !e.trim().is_empty())?;
    let email = email.trim();
    if email.contains('<') {
        return Some(email.to_string());
    }
    let name = full_name.filter(|n| !n.trim().is_empty())?;
    Some(format!("{} <{email}>", name.trim()))
}

/// The Xen releases a set is packaged for: every release its recipes build for a
/// `per-xen-release` set (only `only`, if given), else the one given (or none).
fn packages_of(
    ws: &Workspace,
    path: &Path,
    set: &Set,
    only: Option<&str>,
) -> Result<Vec<Option<String>>> {
    if !set.per_xen_release {
        return Ok(vec![only.map(str::to_string)]);
    }
    let mut releases = std::collections::BTreeSet::new();
    for f in &set.files {
        let recipe = ws
            .recipes
            .iter()
            .find(|r| r.name == f.recipe)
            .with_context(|| format!("{}: no recipe `{}`", path.display(), f.recipe))?;
        if recipe.xen_releases.is_empty() {
            bail!(
                "{}: per-xen-release is set, but {} is not built per Xen release (its recipe has no `xen-releases`)",
                path.display(),
                f.recipe
            );
        }
        releases.extend(recipe.xen_releases.keys().cloned());
    }
    if let Some(r) = only {
        if !releases.contains(r) {
            bail!(
                "{}: not built for Xen {r} (releases: {})",
                path.display(),
                releases.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        return Ok(vec![Some(r.to_string())]);
    }
    Ok(releases.into_iter().map(Some).collect())
}

fn load_sets(root: &Path, names: &[String]) -> Result<Vec<(PathBuf, Set)>> {
    let dir = root.join("images");
    let mut paths: Vec<PathBuf> = fs_err::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut sets = Vec::new();
    for path in paths {
        let text = fs_err::read_to_string(&path)?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let set: Set = recipe::from_toml(&rel, &text)?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        if stem.as_deref() != Some(set.name.as_str()) {
            bail!(
                "{}: name `{}` does not match the file name",
                rel.display(),
                set.name
            );
        }
        if names.is_empty() || names.contains(&set.name) {
            sets.push((rel, set));
        }
    }
    for n in names {
        if !sets.iter().any(|(_, s)| &s.name == n) {
            bail!("no distribution set `{n}` in images/");
        }
    }
    if sets.is_empty() {
        bail!("no distribution set in images/");
    }
    Ok(sets)
}

/// Where the image files of a set go: a distribution's libxl looks in one place, and
/// Debian's in a folder per Xen release.
struct Dirs {
    /// `<prefix>/<libexecdir>/xen/boot`, relative to `/`.
    boot: String,
    /// Debian: images bound to Xen release R go to `<prefix>/lib/xen-R/boot`.
    per_release: bool,
    prefix: String,
}

impl Dirs {
    fn new(
        set: &Set,
        layout: Layout,
        prefix: Option<&str>,
        libexecdir: Option<&str>,
    ) -> Result<Dirs> {
        let prefix = prefix.unwrap_or(&set.prefix);
        let libexecdir = libexecdir.unwrap_or(match layout {
            Layout::Fedora => "libexec",
            Layout::Upstream | Layout::Debian => &set.libexecdir,
        });
        for (what, v) in [("prefix", prefix), ("libexecdir", libexecdir)] {
            if v.split('/').any(|c| c == "..") || v.contains(char::is_whitespace) {
                bail!("--{what} `{v}` must be a plain path without `..`");
            }
        }
        let prefix = prefix.trim_matches('/').to_string();
        Ok(Dirs {
            boot: format!("{prefix}/{}/xen/boot", libexecdir.trim_matches('/'))
                .trim_start_matches('/')
                .to_string(),
            per_release: layout == Layout::Debian,
            prefix,
        })
    }

    /// The folder (relative to `/`) an image built for Xen release `xen` (None: for every
    /// release) installs into.
    fn of(&self, xen: Option<&str>) -> String {
        match (xen, self.per_release) {
            (Some(r), true) => format!("{}/lib/xen-{r}/boot", self.prefix)
                .trim_start_matches('/')
                .to_string(),
            _ => self.boot.clone(),
        }
    }
}

/// One image file of a set, where it installs (relative to `/`).
struct Installed<'a> {
    dest: String,
    host: PathBuf,
    recipe: &'a recipe::Recipe,
    art: &'a crate::builders::manifest::Artifact,
    /// The recipe inputs it is generated from (the set file's `from`, or all).
    from: Vec<String>,
    /// The set file's `built`.
    built: Option<Vec<String>>,
}

/// The set's image files for hosts of `arch` as `dirs` lays them out, each checked against
/// the manifest: of an image built per Xen release, every release's (only `xen`'s if
/// given).
fn images<'a>(
    ws: &'a Workspace,
    manifest: &'a Manifest,
    path: &Path,
    set: &Set,
    dirs: &Dirs,
    arch: &str,
    xen: Option<&str>,
) -> Result<Vec<Installed<'a>>> {
    let mut out: Vec<Installed> = Vec::new();
    for f in set.files.iter().filter(|f| host_arch(f.variant) == arch) {
        let recipe = ws
            .recipes
            .iter()
            .find(|r| r.name == f.recipe)
            .with_context(|| format!("{}: no recipe `{}`", path.display(), f.recipe))?;
        let main = recipe.output(f.variant).with_context(|| {
            format!(
                "{}: {} does not build {}",
                path.display(),
                f.recipe,
                f.variant
            )
        })?;
        let want = f.file.as_deref().unwrap_or(&main.file);
        let name = f.install_as.clone().unwrap_or_else(|| want.to_string());
        let from = match &f.from {
            Some(from) => {
                if let Some(bad) = from.iter().find(|i| !recipe.inputs.contains(i)) {
                    bail!(
                        "{}: {want} is said to be generated `from` {bad}, which is not among {}'s inputs ({})",
                        path.display(),
                        f.recipe,
                        recipe.inputs.join(", ")
                    );
                }
                from.clone()
            }
            None => recipe.inputs.clone(),
        };
        if name.contains('/') || name.is_empty() {
            bail!(
                "{}: install-as `{name}` must be a plain file name",
                path.display()
            );
        }
        if let Some(r) =
            xen.filter(|r| !recipe.xen_releases.is_empty() && !recipe.xen_releases.contains_key(*r))
        {
            bail!(
                "{}: {} is not built for Xen {r} (its recipe builds {})",
                path.display(),
                f.recipe,
                recipe
                    .xen_releases
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let wanted = |b: &Option<&str>| b.is_none() || xen.is_none() || *b == xen;
        for build in recipe.xen_builds().into_iter().filter(wanted) {
            let art = manifest
                .artifact(&f.recipe, f.variant, build, want)
                .with_context(|| {
                    format!(
                        "{}: no built {} {} file `{want}`{}",
                        path.display(),
                        f.recipe,
                        f.variant,
                        build.map_or(String::new(), |r| format!(" for Xen {r}"))
                    )
                })?;
            let dest = format!("{}/{name}", dirs.of(build));
            if let Some(other) = out.iter().find(|i| i.dest == dest) {
                let hint = match (build, &other.art.xen_release) {
                    (Some(a), Some(b)) if !dirs.per_release => format!(
                        ": {} is built for Xen {b} and {a}, and this layout has one folder for every release; pick one with --xen-release",
                        f.recipe
                    ),
                    _ => String::new(),
                };
                bail!("{}: two files install as /{dest}{hint}", path.display());
            }
            out.push(Installed {
                dest,
                host: ws.target.join("images").join(art.rel_path()),
                recipe,
                art,
                from: from.clone(),
                built: f.built.clone(),
            });
        }
    }
    Ok(out)
}

/// The image files of distribution set `name` as `layout` installs them for a host of Xen
/// release `xen` that boots `variant`: (path relative to `/`, built file). For boot
/// scenarios that install a set into the test dom0; the images must be built.
pub fn installed_images(
    ws: &Workspace,
    name: &str,
    layout: Layout,
    variant: Variant,
    xen: &str,
) -> Result<Vec<(String, PathBuf)>> {
    let arch = host_arch(variant);
    let sets = load_sets(&ws.root, &[name.to_string()])?;
    let (path, set) = sets.first().context("no such set")?;
    let manifest = Manifest::load(&ws.target.join("images"))?;
    let dirs = Dirs::new(set, layout, None, None)?;
    Ok(images(ws, &manifest, path, set, &dirs, arch, Some(xen))?
        .into_iter()
        .map(|i| (i.dest, i.host))
        .collect())
}

/// The recipes whose images distribution set `name` holds.
pub fn set_recipes(ws: &Workspace, name: &str) -> Result<Vec<String>> {
    let sets = load_sets(&ws.root, &[name.to_string()])?;
    let mut out: Vec<String> = Vec::new();
    for f in sets.iter().flat_map(|(_, s)| &s.files) {
        if !out.contains(&f.recipe) {
            out.push(f.recipe.clone());
        }
    }
    Ok(out)
}

/// Writes every form of one package: the tarball in `flags.layout`, its manifest, the .deb
/// in Debian's layout. Returns the files written.
fn package(
    ws: &Workspace,
    manifest: &Manifest,
    path: &Path,
    set: &Set,
    pkg: &Package,
    flags: &Flags,
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    let dirs = Dirs::new(
        set,
        flags.layout,
        flags.prefix.as_deref(),
        flags.libexecdir.as_deref(),
    )?;
    let contents = Contents::gather(ws, manifest, path, set, &dirs, pkg)?;
    let doc_rel = format!("{}/share/doc/{}", dirs.prefix, pkg.name)
        .trim_start_matches('/')
        .to_string();
    let mut tree = Tree::new();
    contents.add_images(&mut tree)?;
    add_docs(ws, path, set, &doc_rel, &mut tree)?;
    // The licence text of every GPL-family component, named by its SPDX identifier.
    for spdx in contents.licences.iter().flat_map(|l| spdx_ids(l)) {
        let src = set
            .licence_texts
            .get(&spdx)
            .with_context(|| format!("{}: no `licence-texts` entry for {spdx}", path.display()))?;
        let host = licence_text(ws, src)?;
        tree.add_host_file(&format!("{doc_rel}/licences/{spdx}"), &host, 0o644)?;
    }
    let dm = DistManifest {
        set: pkg.name.clone(),
        version: set.version.clone(),
        arch: pkg.arch.to_string(),
        summary: set.summary.clone(),
        layout: flags.layout,
        install_dir: format!("/{}", dirs.boot),
        source_date_epoch: manifest.source_date_epoch,
        files: contents.files,
        build_environments: manifest
            .environments
            .iter()
            .filter(|(name, _)| contents.envs.contains(*name))
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect(),
    };
    let man_text = serde_json::to_string_pretty(&dm)? + "\n";
    tree.add_file(&format!("{doc_rel}/manifest.json"), man_text.clone(), 0o644)?;
    let mut stem = match flags.layout {
        Layout::Upstream => format!("{}-{}-{}", pkg.name, set.version, pkg.arch),
        other => format!("{}-{}-{}-{other}", pkg.name, set.version, pkg.arch),
    };
    // Packages of one set for different Xen releases must not overwrite each other.
    if let (Some(r), false) = (&pkg.xen, set.per_xen_release) {
        stem += &format!("-xen{r}");
    }
    let tarball = out_dir.join(format!("{stem}.tar.gz"));
    let bytes = tree.to_bytes(stubdoms_archive::Format::TarGz, manifest.source_date_epoch)?;
    fsx::write_atomic(&tarball, &bytes)?;
    let man_path = out_dir.join(format!("{stem}.manifest.json"));
    fsx::write_atomic(&man_path, man_text.as_bytes())?;
    let mut written = vec![tarball, man_path];
    let job = PackageJob {
        ws,
        manifest,
        path,
        set,
        pkg,
        out_dir,
    };
    written.extend(write_deb(&job, &man_text)?);
    written.push(write_rpm(&job, &man_text)?);
    Ok(written)
}

/// What the .deb and .rpm of one package are written from.
#[derive(Clone, Copy)]
struct PackageJob<'a> {
    ws: &'a Workspace,
    manifest: &'a Manifest,
    /// The set's file, for messages.
    path: &'a Path,
    set: &'a Set,
    pkg: &'a Package,
    out_dir: &'a Path,
}

/// Where a package's docs go in the .deb and the .rpm.
fn doc_dir(pkg: &Package) -> String {
    format!("usr/share/doc/{}", pkg.name)
}

impl PackageJob<'_> {
    /// The package's files in `layout` (for the .deb or the .rpm): its images, its docs in
    /// `usr/share/doc/<package>/` and the manifest there; and what they were gathered from.
    fn contents(&self, layout: Layout, man_text: &str) -> Result<(Contents, Tree)> {
        let dirs = Dirs::new(self.set, layout, None, None)?;
        let contents =
            Contents::gather(self.ws, self.manifest, self.path, self.set, &dirs, self.pkg)?;
        let doc_rel = doc_dir(self.pkg);
        let mut data = Tree::new();
        contents.add_images(&mut data)?;
        add_docs(self.ws, self.path, self.set, &doc_rel, &mut data)?;
        data.add_file(&format!("{doc_rel}/manifest.json"), man_text, 0o644)?;
        Ok((contents, data))
    }
}

/// Debian's name of a set's architecture.
fn deb_arch(arch: &str) -> Result<&'static str> {
    Ok(match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => bail!("no Debian architecture known for `{other}` (x86_64, aarch64)"),
    })
}

/// The Debian package names of the Xen releases `xen` (the toolstack's package, whose libxl
/// starts the images).
fn xen_utils(xen: &[String]) -> String {
    xen.iter()
        .map(|r| format!("xen-utils-{r}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The .deb of a package, in Debian's layout (`<name>_<version>_<arch>.deb`), and its SBOM
/// (`<name>-<version>-<arch>.spdx.json`).
fn write_deb(job: &PackageJob, man_text: &str) -> Result<Vec<PathBuf>> {
    let PackageJob {
        manifest,
        path,
        set,
        pkg,
        out_dir,
        ..
    } = *job;
    let (contents, mut data) = job.contents(Layout::Debian, man_text)?;
    let doc_rel = doc_dir(pkg);
    let per_image: Vec<(String, String)> = contents
        .files
        .iter()
        .map(|f| {
            (
                f.path.trim_start_matches('/').to_string(),
                f.licence.clone(),
            )
        })
        .collect();
    data.add_file(
        &format!("{doc_rel}/copyright"),
        debian::copyright(
            set.homepage
                .as_deref()
                .unwrap_or("the stubdoms source set (`cargo xtask dist --sources`)"),
            &per_image,
        ),
        0o644,
    )?;
    let changelog = debian::changelog(
        &pkg.name,
        &set.version,
        &pkg.maintainer,
        manifest.source_date_epoch,
    );
    data.add_file(
        &format!("{doc_rel}/changelog.gz"),
        stubdoms_archive::gzip::compress(changelog.as_bytes())?,
        0o644,
    )?;
    if !set.lintian_overrides.is_empty() {
        data.add_file(
            &format!("usr/share/lintian/overrides/{}", pkg.name),
            debian::lintian_overrides(&pkg.name, &set.lintian_overrides),
            0o644,
        )?;
    }
    let mut tested: Vec<String> = contents.files.iter().flat_map(|f| f.xen.clone()).collect();
    tested.sort();
    tested.dedup();
    let mut relations = Vec::new();
    match &pkg.xen {
        // Bound to one release: meant for that release's toolstack only.
        Some(r) => {
            relations.push(("Recommends".to_string(), xen_utils(std::slice::from_ref(r))));
            relations.push(("Enhances".to_string(), xen_utils(std::slice::from_ref(r))));
        }
        None if !tested.is_empty() => {
            relations.push(("Recommends".to_string(), xen_utils(&tested)));
        }
        None => {}
    }
    let control = deb::Control {
        package: pkg.name.clone(),
        version: set.version.clone(),
        architecture: deb_arch(pkg.arch)?.to_string(),
        maintainer: pkg.maintainer.clone(),
        section: "admin".into(),
        priority: "optional".into(),
        homepage: set.homepage.clone(),
        relations,
        summary: match &pkg.xen {
            Some(r) => format!("{} {r}", set.summary),
            None => set.summary.clone(),
        },
        description: set.description.clone(),
    };
    let bytes = deb::write(&control, &data, manifest.source_date_epoch)
        .with_context(|| format!("{}: writing the .deb of {}", path.display(), pkg.name))?;
    let out = out_dir.join(format!(
        "{}_{}_{}.deb",
        pkg.name, set.version, control.architecture
    ));
    fsx::write_atomic(&out, &bytes)?;
    // The SBOM describes the package as the .deb installs it.
    let cache = crate::cache::Cache::open()?;
    let images: Vec<sbom::Image> = contents
        .files
        .iter()
        .zip(&contents.inputs)
        .zip(&contents.held)
        .map(|((f, inputs), held)| {
            Ok(sbom::Image {
                path: f.path.trim_start_matches('/').to_string(),
                sha256: f.sha256.clone(),
                recipe_licence: f.licence.clone(),
                inputs: inputs.clone(),
                held: held.packages.clone(),
                copyrights: held.copyrights.clone(),
                sources: sbom::corresponding_sources(
                    &cache,
                    &job.ws.lock,
                    inputs.iter().chain(&held.packages),
                )?,
            })
        })
        .collect::<Result<_>>()?;
    let doc = sbom::document(
        &cache,
        &pkg.name,
        &set.version,
        &pkg.maintainer,
        &data,
        &images,
        manifest.source_date_epoch,
    )?;
    let sbom_path = out_dir.join(format!(
        "{}-{}-{}.spdx.json",
        pkg.name, set.version, pkg.arch
    ));
    fsx::write_atomic(
        &sbom_path,
        (serde_json::to_string_pretty(&doc)? + "\n").as_bytes(),
    )?;
    Ok(vec![out, sbom_path])
}

/// The .rpm of a package, in Fedora's layout (`/usr/libexec/xen/boot`):
/// `<name>-<version>-1.<arch>.rpm`.
fn write_rpm(job: &PackageJob, man_text: &str) -> Result<PathBuf> {
    let PackageJob {
        ws,
        manifest,
        path,
        set,
        pkg,
        out_dir,
    } = *job;
    let (contents, mut data) = job.contents(Layout::Fedora, man_text)?;
    let doc_rel = doc_dir(pkg);
    let licence_rel = format!("usr/share/licenses/{}", pkg.name);
    for spdx in contents.licences.iter().flat_map(|l| spdx_ids(l)) {
        let src = set
            .licence_texts
            .get(&spdx)
            .with_context(|| format!("{}: no `licence-texts` entry for {spdx}", path.display()))?;
        data.add_host_file(
            &format!("{licence_rel}/{spdx}"),
            &licence_text(ws, src)?,
            0o644,
        )?;
    }
    // Fedora's toolstack package; a release-bound image wants that release exactly.
    let (recommends, conflicts) = match &pkg.xen {
        Some(r) => (
            vec![(
                "xen-runtime".to_string(),
                rpm::SENSE_GREATER | rpm::SENSE_EQUAL,
                r.clone(),
            )],
            vec![(
                "xen-runtime".to_string(),
                rpm::SENSE_GREATER | rpm::SENSE_EQUAL,
                next_release(r)?,
            )],
        ),
        None => (
            vec![("xen-runtime".to_string(), 0, String::new())],
            Vec::new(),
        ),
    };
    let spec = rpm::Spec {
        name: pkg.name.clone(),
        version: set.version.clone(),
        release: "1".into(),
        arch: pkg.arch.to_string(),
        summary: match &pkg.xen {
            Some(r) => format!("{} {r}", set.summary),
            None => set.summary.clone(),
        },
        description: set.description.clone(),
        licence: contents
            .licences
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(" AND "),
        url: set.homepage.clone(),
        packager: pkg.maintainer.clone(),
        recommends,
        conflicts,
        owned_dirs: vec![doc_rel, licence_rel],
        changelog: "- Built with cargo xtask dist from the stubdoms sources of this version."
            .into(),
    };
    let bytes = rpm::write(&spec, &data, manifest.source_date_epoch)
        .with_context(|| format!("{}: writing the .rpm of {}", path.display(), pkg.name))?;
    let out = out_dir.join(format!(
        "{}-{}-{}.{}.rpm",
        spec.name, spec.version, spec.release, spec.arch
    ));
    fsx::write_atomic(&out, &bytes)?;
    Ok(out)
}

/// The Xen release after `r` (`4.17` -> `4.18`).
fn next_release(r: &str) -> Result<String> {
    let (major, minor) = r
        .split_once('.')
        .and_then(|(a, b)| Some((a, b.parse::<u32>().ok()?)))
        .with_context(|| format!("Xen release `{r}` is not MAJOR.MINOR"))?;
    Ok(format!("{major}.{}", minor + 1))
}

/// The set's documentation files, under `doc_rel`.
fn add_docs(ws: &Workspace, path: &Path, set: &Set, doc_rel: &str, tree: &mut Tree) -> Result<()> {
    for doc in &set.docs {
        let src = ws.root.join(doc);
        let name = Path::new(doc)
            .file_name()
            .context("doc name")?
            .to_string_lossy()
            .into_owned();
        tree.add_host_file(&format!("{doc_rel}/{name}"), &src, 0o644)
            .with_context(|| format!("{}: doc {doc}", path.display()))?;
    }
    Ok(())
}

/// What a package holds in one layout, checked against the build manifest.
struct Contents {
    /// (path relative to `/`, built file).
    images: Vec<(String, PathBuf)>,
    files: Vec<DistFile>,
    /// The pinned inputs of each of `files`.
    inputs: Vec<Vec<crate::lock::Blob>>,
    /// What each of `files` holds ([`held`]).
    held: Vec<held::Held>,
    licences: std::collections::BTreeSet<String>,
    envs: std::collections::BTreeSet<String>,
}

/// An archive image's files that are in no pinned package must be those the set file says
/// its build makes: anything else came from somewhere nothing pins.
fn check_built(
    path: &Path,
    file: &str,
    held: Option<&held::Held>,
    declared: Option<Vec<String>>,
) -> Result<()> {
    match (held, declared) {
        (Some(h), Some(mut declared)) => {
            declared.sort();
            if h.built != declared {
                bail!(
                    "{}: {file} holds files that are in no pinned package: {}; the set says its build makes {}. Fix the build, or `built` if the build now makes them",
                    path.display(),
                    h.built.join(", "),
                    declared.join(", ")
                );
            }
        }
        (Some(h), None) => bail!(
            "{}: {file} is an archive: list in `built` the files its build makes ({}), so that dist can check the others come from pinned packages",
            path.display(),
            h.built.join(", ")
        ),
        (None, Some(_)) => bail!(
            "{}: {file} is no archive: `built` is for archive images (a rootfs)",
            path.display()
        ),
        (None, None) => {}
    }
    Ok(())
}

/// The packages an image of `recipe` may hold files of, each unpacked: those of the build
/// environments it was built in, and the recipe's Debian inputs.
fn held_candidates(
    ws: &Workspace,
    cache: &crate::cache::Cache,
    recipe: &recipe::Recipe,
    art: &crate::builders::manifest::Artifact,
) -> Result<Vec<(crate::lock::Blob, PathBuf)>> {
    let mut blobs = Vec::new();
    for env in &art.build_envs {
        blobs.extend(ws.lock.env(env)?.blobs()?);
    }
    for input in &recipe.inputs {
        let resolved = ws.lock.resolve(input)?;
        if matches!(resolved, crate::lock::Resolved::Debs(_)) {
            blobs.extend(resolved.blobs()?);
        }
    }
    blobs
        .into_iter()
        .map(|b| {
            let tree = cache.unpacked_deb(&b)?;
            Ok((b, tree))
        })
        .collect()
}

/// A description's paragraphs refilled to 78 columns, an empty line between paragraphs:
/// lintian and rpmlint both refuse lines of 80 or more.
fn refill(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, para) in text.trim().split("\n\n").enumerate() {
        if i > 0 {
            out.push(String::new());
        }
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > 78 {
                out.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            out.push(line);
        }
    }
    out
}

impl Contents {
    /// The images into `tree`. An image with the same bytes as one before it in the same
    /// folder (the x86_64 PV and PVH images are one ELF with both entry points) becomes a
    /// symlink to it: two names libxl's configurations use, stored once.
    fn add_images(&self, tree: &mut Tree) -> Result<()> {
        let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
        for (dest, host) in &self.images {
            let (dir, name) = dest.rsplit_once('/').unwrap_or(("", dest));
            let (sha256, _) = fsx::sha256_file(host)?;
            match seen.get(&(dir.to_string(), sha256.clone())) {
                Some(first) => tree.add_symlink(dest, first)?,
                None => {
                    tree.add_host_file(dest, host, 0o644)?;
                    seen.insert((dir.to_string(), sha256), name.to_string());
                }
            }
        }
        Ok(())
    }

    fn gather(
        ws: &Workspace,
        manifest: &Manifest,
        path: &Path,
        set: &Set,
        dirs: &Dirs,
        pkg: &Package,
    ) -> Result<Contents> {
        let mut out = Contents {
            images: Vec::new(),
            files: Vec::new(),
            inputs: Vec::new(),
            held: Vec::new(),
            licences: Default::default(),
            envs: Default::default(),
        };
        let cache = crate::cache::Cache::open()?;
        for Installed {
            dest,
            host,
            recipe,
            art,
            from,
            built,
        } in images(ws, manifest, path, set, dirs, pkg.arch, pkg.xen.as_deref())?
        {
            let (sha, size) = fsx::sha256_file(&host)?;
            if sha != art.sha256 {
                bail!(
                    "{} changed since it was built: run `cargo xtask build`",
                    host.display()
                );
            }
            out.envs.extend(art.build_envs.iter().cloned());
            out.licences.insert(recipe.licence.clone());
            let mut blobs = Vec::new();
            for input in &from {
                blobs.extend(ws.lock.resolve(input)?.blobs()?);
            }
            let held = held::held(&host, || held_candidates(ws, &cache, recipe, art))
                .with_context(|| format!("finding the packages {} holds", host.display()))?;
            check_built(path, &art.file, held.as_ref(), built)?;
            let held = held.unwrap_or_default();
            let dist_input = |b: &crate::lock::Blob| DistInput {
                input: b.label.clone(),
                sha256: b.sha256.clone(),
                licence: b.licence.clone(),
            };
            let inputs = blobs.iter().map(dist_input).collect();
            let holds = held.packages.iter().map(dist_input).collect();
            out.inputs.push(blobs);
            out.files.push(DistFile {
                path: format!("/{dest}"),
                sha256: sha,
                size,
                recipe: art.recipe.clone(),
                variant: art.variant,
                licence: recipe.licence.clone(),
                xen_release: art.xen_release.clone(),
                xen: art.xen.clone(),
                inputs,
                holds,
                built: held.built.clone(),
            });
            out.held.push(held);
            out.images.push((dest, host));
        }
        Ok(out)
    }
}

/// The SPDX licence identifiers in an expression (`GPL-2.0-only OR MIT` -> both).
fn spdx_ids(expr: &str) -> Vec<String> {
    expr.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty() && !matches!(*w, "AND" | "OR" | "WITH"))
        .map(str::to_string)
        .collect()
}

/// `deb:PACKAGE:/path` -> the file in the pinned, verified package.
fn licence_text(ws: &Workspace, src: &str) -> Result<PathBuf> {
    let rest = src
        .strip_prefix("deb:")
        .with_context(|| format!("licence text `{src}`: expected deb:PACKAGE:/path"))?;
    let (pkg, file) = rest
        .split_once(":/")
        .with_context(|| format!("licence text `{src}`: expected deb:PACKAGE:/path"))?;
    let blobs = ws.lock.resolve(pkg)?.blobs()?;
    let cache = crate::cache::Cache::open()?;
    crate::fetch::ensure(&cache, &blobs, &crate::fetch::Flags { offline: false })?;
    let p = cache.unpacked_deb(&blobs[0])?.join(file);
    if !p.is_file() {
        bail!("licence text `{src}`: no such file in {pkg}");
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maintainer_comes_from_debemail_and_debfullname() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            maintainer_from(s("A Packager"), s("a@example.org")),
            s("A Packager <a@example.org>")
        );
        assert_eq!(
            maintainer_from(None, s("B <b@example.org>")),
            s("B <b@example.org>")
        );
        assert_eq!(maintainer_from(s("A"), None), None);
        assert_eq!(maintainer_from(None, s("a@example.org")), None);
        assert_eq!(maintainer_from(s("A"), s(" ")), None);
    }

    #[test]
    fn an_archive_holds_only_pinned_files_and_those_its_build_makes() {
        let p = Path::new("images/x.toml");
        let h = held::Held {
            built: vec!["init".into(), "usr/bin/qemu".into()],
            ..Default::default()
        };
        let list = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        check_built(p, "rootfs", Some(&h), list(&["usr/bin/qemu", "init"])).unwrap();
        let e = check_built(p, "rootfs", Some(&h), list(&["init"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("in no pinned package: init, usr/bin/qemu"),
            "{e}"
        );
        let e = check_built(p, "rootfs", Some(&h), None).unwrap_err();
        assert!(e.to_string().contains("list in `built`"), "{e}");
        let e = check_built(p, "kernel", None, list(&["init"])).unwrap_err();
        assert!(e.to_string().contains("is no archive"), "{e}");
        check_built(p, "kernel", None, None).unwrap();
    }

    fn set() -> Set {
        toml::from_str(
            "name = \"s\"\nversion = \"1\"\nsummary = \"s\"\ndescription = \"d\"\nmaintainer = \"m <m@example.org>\"\nfile = []\nlicence-texts = {}\n",
        )
        .unwrap()
    }

    /// Where each layout puts an image bound to Xen 4.17 and one that is not.
    #[test]
    fn layouts_place_images_where_each_toolstack_looks() {
        let (free, bound) = (None, Some("4.17"));
        let cases = [
            (
                Layout::Upstream,
                None,
                "usr/lib/xen/boot",
                "usr/lib/xen/boot",
            ),
            (
                Layout::Fedora,
                None,
                "usr/libexec/xen/boot",
                "usr/libexec/xen/boot",
            ),
            (
                Layout::Debian,
                None,
                "usr/lib/xen/boot",
                "usr/lib/xen-4.17/boot",
            ),
            (
                Layout::Upstream,
                Some("/opt/xen"),
                "opt/xen/lib/xen/boot",
                "opt/xen/lib/xen/boot",
            ),
            (
                Layout::Debian,
                Some("/opt/xen"),
                "opt/xen/lib/xen/boot",
                "opt/xen/lib/xen-4.17/boot",
            ),
        ];
        for (layout, prefix, want_free, want_bound) in cases {
            let dirs = Dirs::new(&set(), layout, prefix, None).unwrap();
            assert_eq!(dirs.of(free), want_free, "{layout} {prefix:?}");
            assert_eq!(dirs.of(bound), want_bound, "{layout} {prefix:?}");
        }
        let err = Dirs::new(&set(), Layout::Upstream, Some("/usr/../etc"), None);
        assert!(err.is_err());
    }

    #[test]
    fn spdx_expressions() {
        assert_eq!(super::spdx_ids("GPL-2.0-only"), ["GPL-2.0-only"]);
        assert_eq!(
            super::spdx_ids("(GPL-2.0-only OR MIT) AND LGPL-2.1-or-later"),
            ["GPL-2.0-only", "MIT", "LGPL-2.1-or-later"]
        );
    }
}
