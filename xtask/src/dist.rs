//! `cargo xtask dist [SET...]`: distribution packages. A distribution set (`images/NAME.toml`) says
//! which artifacts a package holds and under which names; `dist` writes, per set,
//! `target/dist/<set>-<version>-<arch>.tar.gz` (deterministic, owner 0:0, installable with
//! `tar -C / -xzf`), a manifest (every file with its sha256, the pinned inputs behind it with
//! their sha256 and licence, the toolchain), and `target/dist/SHA256SUMS` over everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use stubdoms_archive::Tree;

use crate::builders::{self, Manifest};
use crate::fsx;
use crate::recipe;
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

#[derive(clap::Args)]
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
    /// Use only the input cache.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Set {
    name: String,
    version: String,
    summary: String,
    /// The host architecture the images are for (`x86_64`, `aarch64`).
    arch: String,
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
    inputs: Vec<DistInput>,
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
        let (tarball, man) = package(ws, &manifest, path, set, flags, &out_dir)
            .with_context(|| format!("packaging {}", path.display()))?;
        written.push(tarball);
        written.push(man);
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
            n.ends_with(".tar.gz") || n.ends_with(".manifest.json")
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
}

/// The set's image files as `dirs` lays them out, each checked against the manifest: of
/// an image built per Xen release, every release's (only `xen`'s if given).
fn images<'a>(
    ws: &'a Workspace,
    manifest: &'a Manifest,
    path: &Path,
    set: &Set,
    dirs: &Dirs,
    xen: Option<&str>,
) -> Result<Vec<Installed<'a>>> {
    let mut out: Vec<Installed> = Vec::new();
    for f in &set.files {
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
                .artifacts
                .iter()
                .find(|a| {
                    a.recipe == f.recipe
                        && a.variant == f.variant
                        && a.xen_release.as_deref() == build
                        && a.file == want
                })
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
            });
        }
    }
    Ok(out)
}

/// The image files of distribution set `name` as `layout` installs them for a host of Xen
/// release `xen`: (path relative to `/`, built file). For boot scenarios that install a set
/// into the test dom0; the images must be built.
pub fn installed_images(
    ws: &Workspace,
    name: &str,
    layout: Layout,
    xen: &str,
) -> Result<Vec<(String, PathBuf)>> {
    let sets = load_sets(&ws.root, &[name.to_string()])?;
    let (path, set) = sets.first().context("no such set")?;
    let manifest = Manifest::load(&ws.target.join("images"))?;
    let dirs = Dirs::new(set, layout, None, None)?;
    Ok(images(ws, &manifest, path, set, &dirs, Some(xen))?
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

fn package(
    ws: &Workspace,
    manifest: &Manifest,
    path: &Path,
    set: &Set,
    flags: &Flags,
    out_dir: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let dirs = Dirs::new(
        set,
        flags.layout,
        flags.prefix.as_deref(),
        flags.libexecdir.as_deref(),
    )?;
    let doc_rel = format!("{}/share/doc/{}", dirs.prefix, set.name)
        .trim_start_matches('/')
        .to_string();
    let mut tree = Tree::new();
    let mut files = Vec::new();
    let mut licences = std::collections::BTreeSet::new();
    let mut envs = std::collections::BTreeSet::new();
    for Installed {
        dest,
        host,
        recipe,
        art,
    } in images(ws, manifest, path, set, &dirs, flags.xen_release.as_deref())?
    {
        let (sha, size) = fsx::sha256_file(&host)?;
        if sha != art.sha256 {
            bail!(
                "{} changed since it was built: run `cargo xtask build`",
                host.display()
            );
        }
        tree.add_host_file(&dest, &host, 0o644)?;
        envs.extend(art.build_envs.iter().cloned());
        licences.insert(recipe.licence.clone());
        let inputs = ws
            .recipe_blobs(recipe)?
            .into_iter()
            .map(|b| DistInput {
                input: b.label,
                sha256: b.sha256,
                licence: b.licence,
            })
            .collect();
        files.push(DistFile {
            path: format!("/{dest}"),
            sha256: sha,
            size,
            recipe: art.recipe.clone(),
            variant: art.variant,
            licence: recipe.licence.clone(),
            xen_release: art.xen_release.clone(),
            xen: art.xen.clone(),
            inputs,
        });
    }
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
    // The licence text of every GPL-family component, named by its SPDX identifier.
    for spdx in licences.iter().flat_map(|l| spdx_ids(l)) {
        let src = set
            .licence_texts
            .get(&spdx)
            .with_context(|| format!("{}: no `licence-texts` entry for {spdx}", path.display()))?;
        let host = licence_text(ws, src)?;
        tree.add_host_file(&format!("{doc_rel}/licences/{spdx}"), &host, 0o644)?;
    }
    let dm = DistManifest {
        set: set.name.clone(),
        version: set.version.clone(),
        arch: set.arch.clone(),
        summary: set.summary.clone(),
        layout: flags.layout,
        install_dir: format!("/{}", dirs.boot),
        source_date_epoch: manifest.source_date_epoch,
        files,
        build_environments: manifest
            .environments
            .iter()
            .filter(|(name, _)| envs.contains(*name))
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect(),
    };
    let man_text = serde_json::to_string_pretty(&dm)? + "\n";
    tree.add_file(&format!("{doc_rel}/manifest.json"), man_text.clone(), 0o644)?;
    let mut stem = match flags.layout {
        Layout::Upstream => format!("{}-{}-{}", set.name, set.version, set.arch),
        other => format!("{}-{}-{}-{other}", set.name, set.version, set.arch),
    };
    // Packages of one set for different Xen releases must not overwrite each other.
    if let Some(r) = &flags.xen_release {
        stem += &format!("-xen{r}");
    }
    let tarball = out_dir.join(format!("{stem}.tar.gz"));
    let bytes = tree.to_bytes(stubdoms_archive::Format::TarGz, manifest.source_date_epoch)?;
    fsx::write_atomic(&tarball, &bytes)?;
    let man_path = out_dir.join(format!("{stem}.manifest.json"));
    fsx::write_atomic(&man_path, man_text.as_bytes())?;
    Ok((tarball, man_path))
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

    fn set() -> Set {
        toml::from_str(
            "name = \"s\"\nversion = \"1\"\nsummary = \"s\"\narch = \"x86_64\"\nfile = []\nlicence-texts = {}\n",
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
