//! `cargo xtask dist --sources`: the corresponding source of a set's images, what
//! buildroot's `make legal-info` gives a distributor, in `target/dist/sources/<set>-<version>/`:
//!
//! - `project.tar.gz`: the project's own source (the files git knows), its patches also
//!   under `patches/` to read;
//! - `debian/`: the pinned Debian source packages (.dsc, orig and debian tarballs) of every
//!   image's inputs and of every binary package an image holds files of (glibc for libc6);
//! - `crates.tar`: the crates of Cargo.lock, unpacked as a cargo directory source, and
//!   `.cargo/config.toml`, which points cargo at them for a build below the set's folder;
//! - `cache/sha256/`: every pinned file the set's builds read, their build environments'
//!   packages included, laid out as the driver's input cache;
//! - `sources.json` (what is where, with sha256 and licence) and `README.md` (how to rebuild
//!   the images offline from the set alone, which [`rebuild`] does).
//!
//! A set is complete or not written: an image input or held package whose source package
//! `inputs.lock` does not pin fails, naming each and what to add.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use stubdoms_archive::Tree;

use super::{Contents, Dirs, Flags, Layout, Set};
use crate::builders::Manifest;
use crate::cache::Cache;
use crate::fsx;
use crate::lock::Blob;
use crate::ui;
use crate::workspace::Workspace;

/// What a source set holds (`sources.json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourceSet {
    pub set: String,
    pub version: String,
    pub source_date_epoch: u64,
    /// The commit the project's source is of, when the checkout is a git one (`-dirty`
    /// when files differ from it).
    pub commit: Option<String>,
    pub project: SetFile,
    pub crates: SetFile,
    /// The images the set rebuilds, as the packages ship them.
    pub images: Vec<SetImage>,
    /// The Debian source packages of what the images are made from and hold.
    pub sources: Vec<SourcePackage>,
    /// The project's patches to its upstream sources (also in `project.tar.gz`).
    pub patches: Vec<SetFile>,
    /// The input cache: every pinned file the builds read.
    pub cache: Vec<SetFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SetFile {
    /// Relative to the set's folder.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// What the file is (the pinned input's label, for the cache).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub what: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SetImage {
    pub recipe: String,
    pub variant: crate::variant::Variant,
    pub xen_release: Option<String>,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourcePackage {
    pub name: String,
    pub version: String,
    pub licence: String,
    /// Why it is in the set: which image is made from it or holds its binaries.
    pub used_by: Vec<String>,
    pub files: Vec<SetFile>,
}

/// Writes the source set of each of the sets `names` (all by default), whose images must
/// be built; returns their folders.
pub fn write(ws: &Workspace, names: &[String], flags: &Flags) -> Result<Vec<PathBuf>> {
    let sets = super::load_sets(&ws.root, names)?;
    let manifest = &Manifest::load(&ws.target.join("images"))?;
    let cache = Cache::open()?;
    let root = ws.target.join("dist").join("sources");
    let mut out = Vec::new();
    for (path, set) in &sets {
        let dir = root.join(format!("{}-{}", set.name, set.version));
        let plan = Plan::gather(ws, &cache, manifest, path, set, flags)
            .with_context(|| format!("the source set of {}", path.display()))?;
        let mut all: Vec<Blob> = plan.cache.clone();
        all.extend(plan.sources.iter().flat_map(|p| p.blobs.iter().cloned()));
        crate::fetch::ensure(
            &cache,
            &all,
            &crate::fetch::Flags {
                offline: flags.offline,
            },
        )
        .with_context(|| format!("the source set of {}", path.display()))?;
        ui::step(&format!(
            "source set {}: {} source package(s), {} cached input(s)",
            set.name,
            plan.sources.len(),
            plan.cache.len()
        ));
        fsx::create_dir_atomic(&dir, true, |tmp| plan.write_into(ws, &cache, tmp))
            .with_context(|| format!("writing {}", dir.display()))?;
        out.push(dir);
    }
    Ok(out)
}

/// Checks that the source set of each of the sets `names` (all by default) would be
/// complete: each source package its images are built from or hold files of is pinned
/// (nothing is fetched or written). Returns how many sets were checked; the images must be
/// built.
pub fn check_pinned(ws: &Workspace, names: &[String]) -> Result<usize> {
    let sets = super::load_sets(&ws.root, names)?;
    let manifest = &Manifest::load(&ws.target.join("images"))?;
    let cache = Cache::open()?;
    for (path, set) in &sets {
        let plan = Plan::gather(ws, &cache, manifest, path, set, &Flags::default())
            .with_context(|| format!("the source set of {}", path.display()))?;
        ui::step(&format!(
            "source set {}: {} source package(s), each pinned",
            set.name,
            plan.sources.len()
        ));
    }
    Ok(sets.len())
}

/// A source package of a set, with its pinned files.
struct Planned {
    name: String,
    version: String,
    blobs: Vec<Blob>,
    licence: String,
    used_by: BTreeSet<String>,
}

/// What one set's source set is made of, found before anything is written.
struct Plan {
    set: String,
    version: String,
    epoch: u64,
    images: Vec<SetImage>,
    sources: Vec<Planned>,
    cache: Vec<Blob>,
    /// The recipes whose images the set holds, for the rebuild command.
    recipes: Vec<String>,
}

impl Plan {
    fn gather(
        ws: &Workspace,
        cache: &Cache,
        manifest: &Manifest,
        path: &Path,
        set: &Set,
        flags: &Flags,
    ) -> Result<Plan> {
        let dirs = Dirs::new(set, Layout::Upstream, None, None)?;
        let mut images = Vec::new();
        // (source name, version) -> what needs it -> the binary packages it comes through.
        let mut wanted: BTreeMap<(String, String), BTreeMap<String, BTreeSet<String>>> =
            BTreeMap::new();
        let mut cache_blobs = Vec::new();
        let mut recipes = Vec::new();
        for pkg in super::set_packages(ws, path, set, flags)? {
            let contents = Contents::gather(ws, manifest, path, set, &dirs, &pkg)?;
            for (((file, inputs), held), (_, host)) in contents
                .files
                .iter()
                .zip(&contents.inputs)
                .zip(&contents.held)
                .zip(&contents.images)
            {
                // The built file's own name (the package may install it under another);
                // Contents checked it against the build manifest.
                let built_as = host
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                // `ioemu x86_64-pv qemu-stubdom-linux-kernel for Xen 4.17`
                let image = match &file.xen_release {
                    Some(r) => format!("{} {} {built_as} for Xen {r}", file.recipe, file.variant),
                    None => format!("{} {} {built_as}", file.recipe, file.variant),
                };
                images.push(SetImage {
                    recipe: file.recipe.clone(),
                    variant: file.variant,
                    xen_release: file.xen_release.clone(),
                    file: built_as,
                    sha256: file.sha256.clone(),
                });
                let recipe = ws
                    .recipes
                    .iter()
                    .find(|r| r.name == file.recipe)
                    .context("recipe of an image")?;
                cache_blobs.extend(ws.build_blobs(recipe, file.xen_release.as_deref())?);
                if !recipes.contains(&recipe.name) {
                    recipes.push(recipe.name.clone());
                }
                // Source (name, version) is needed as `how`, through binary package `deb`.
                let mut need = |source: (String, String), how: &str, deb: Option<String>| {
                    let debs = wanted
                        .entry(source)
                        .or_default()
                        .entry(format!("{image} {how}"))
                        .or_default();
                    debs.extend(deb);
                };
                for blob in inputs {
                    match source_label(blob) {
                        Some(source) => need(source, "is built from it", None),
                        None => need(
                            built_from(cache, blob)?,
                            "is built with",
                            Some(deb_name(blob)),
                        ),
                    }
                }
                for blob in &held.packages {
                    need(
                        built_from(cache, blob)?,
                        "holds files of",
                        Some(deb_name(blob)),
                    );
                }
            }
        }
        let mut sources = Vec::new();
        let mut missing = Vec::new();
        for ((name, version), needs) in wanted {
            let used_by: BTreeSet<String> = needs
                .into_iter()
                .map(|(what, debs)| {
                    if debs.is_empty() {
                        what
                    } else {
                        format!("{what} {}", debs.into_iter().collect::<Vec<_>>().join(", "))
                    }
                })
                .collect();
            match ws.lock.source_at(&name, &version) {
                Some(source) => {
                    let blobs = source.blobs()?;
                    let licence = blobs.first().map(|b| b.licence.clone()).unwrap_or_default();
                    sources.push(Planned {
                        name,
                        version,
                        blobs,
                        licence,
                        used_by,
                    });
                }
                None => missing.push(format!(
                    "{name} {version} ({})",
                    used_by.into_iter().collect::<Vec<_>>().join("; ")
                )),
            }
        }
        if !missing.is_empty() {
            bail!(
                "{} source package(s) are not pinned, so the set's corresponding source would be incomplete:\n  {}\nadd a [[source]] entry for each to {} that names the binary package it is of (`name = \"glibc\"`, `of = \"libc6\"`, and `env = \"ENV\"` when the binary is pinned in an environment), then run `cargo xtask pin`",
                missing.len(),
                missing.join("\n  "),
                crate::lock::FILE,
            );
        }
        cache_blobs.sort();
        cache_blobs.dedup_by(|a, b| a.sha256 == b.sha256);
        Ok(Plan {
            set: set.name.clone(),
            version: set.version.clone(),
            epoch: manifest.source_date_epoch,
            images,
            sources,
            cache: cache_blobs,
            recipes,
        })
    }

    /// Writes the set into the empty folder `dir`.
    fn write_into(&self, ws: &Workspace, cache: &Cache, dir: &Path) -> Result<()> {
        // The project's own source.
        let mut project = Tree::new();
        let mut patches = Vec::new();
        for rel in crate::workspace::files(&ws.root)? {
            let host = ws.root.join(&rel);
            let rel = rel.to_string_lossy().into_owned();
            let mode = stubdoms_archive::normalize_file_mode(
                std::os::unix::fs::PermissionsExt::mode(&fs_err::metadata(&host)?.permissions()),
            );
            project.add_host_file(&format!("stubdoms/{rel}"), &host, mode)?;
            if is_patch(&rel, &self.recipes) {
                // `stubdoms/pvgrub/patches/x.patch` -> `patches/pvgrub/patches/x.patch`
                let to = format!("patches/{}", rel.trim_start_matches("stubdoms/"));
                copy(&host, &dir.join(&to))?;
                patches.push(set_file(dir, &to)?);
            }
        }
        write_tar(&project, true, self.epoch, &dir.join("project.tar.gz"))?;
        // The crates, as the image builds' cargo reads them.
        let vendored = crate::crates::vendored(ws, cache)?;
        let mut crates = Tree::new();
        crates.add_host_dir("crates", &vendored)?;
        write_tar(&crates, false, self.epoch, &dir.join("crates.tar"))?;
        fsx::write_atomic(&dir.join(".cargo/config.toml"), CARGO_CONFIG.as_bytes())?;
        // The Debian source packages, under their own names.
        let mut sources = Vec::new();
        for p in &self.sources {
            let mut files = Vec::new();
            for b in &p.blobs {
                let file_name = b.path.rsplit('/').next().unwrap_or(&b.path);
                let to = format!("debian/{file_name}");
                copy(&cache.blob_path(&b.sha256), &dir.join(&to))?;
                files.push(SetFile {
                    path: to,
                    sha256: b.sha256.clone(),
                    size: b.size,
                    what: String::new(),
                });
            }
            sources.push(SourcePackage {
                name: p.name.clone(),
                version: p.version.clone(),
                licence: p.licence.clone(),
                used_by: p.used_by.iter().cloned().collect(),
                files,
            });
        }
        // The input cache.
        let mut cached = Vec::new();
        for b in &self.cache {
            let to = format!("cache/sha256/{}", b.sha256);
            copy(&cache.blob_path(&b.sha256), &dir.join(&to))?;
            cached.push(SetFile {
                path: to,
                sha256: b.sha256.clone(),
                size: b.size,
                what: b.label.clone(),
            });
        }
        let manifest = SourceSet {
            set: self.set.clone(),
            version: self.version.clone(),
            source_date_epoch: self.epoch,
            commit: commit(&ws.root),
            project: set_file(dir, "project.tar.gz")?,
            crates: set_file(dir, "crates.tar")?,
            images: self.images.clone(),
            sources,
            patches,
            cache: cached,
        };
        fsx::write_atomic(
            &dir.join("README.md"),
            readme(&manifest, &self.recipes).as_bytes(),
        )?;
        fsx::write_atomic(
            &dir.join(MANIFEST),
            (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes(),
        )
    }
}

/// The source set's own manifest.
pub const MANIFEST: &str = "sources.json";

/// Cargo's configuration for a build below the set's folder: crates from `crates/` only.
const CARGO_CONFIG: &str = r#"# Written by `cargo xtask dist --sources`: a build below this folder takes the crates of
# Cargo.lock from crates/ (unpack crates.tar here) and never goes to the network.
[source.crates-io]
replace-with = "vendored"

[source.vendored]
directory = "crates"

[net]
offline = true
"#;

/// `NAME VERSION` of a source package input (`source NAME VERSION FILE`).
fn source_label(blob: &Blob) -> Option<(String, String)> {
    let words: Vec<&str> = blob.label.split_whitespace().collect();
    match words[..] {
        ["source", name, version, ..] => Some((name.to_string(), version.to_string())),
        _ => None,
    }
}

fn deb_name(blob: &Blob) -> String {
    let words: Vec<&str> = blob.label.split_whitespace().collect();
    match words[..] {
        ["deb", name, ..] => name.to_string(),
        _ => blob.label.clone(),
    }
}

/// The source package a binary package was built from, as its control file says.
fn built_from(cache: &Cache, blob: &Blob) -> Result<(String, String)> {
    let (name, version) = super::sbom::built_from(cache, blob)?
        .with_context(|| format!("{blob} is not a binary package"))?;
    Ok((name, crate::lock::without_epoch(&version).to_string()))
}

/// A patch of the project's to an upstream source: a file in a `patches` (or `*-patches`)
/// folder of one of the set's recipes.
fn is_patch(rel: &str, recipes: &[String]) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts[..] {
        ["stubdoms", recipe, folder, _, ..] => {
            recipes.iter().any(|r| r == recipe)
                && (folder == "patches" || folder.ends_with("-patches"))
        }
        _ => false,
    }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs_err::create_dir_all(parent)?;
    }
    fs_err::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {}{}", from.display(), fsx::disk_hint(to)))
}

/// `tree` as a tar file (gzip'd with `gzip`) at `to`.
fn write_tar(tree: &Tree, gzip: bool, epoch: u64, to: &Path) -> Result<()> {
    let out = std::io::BufWriter::new(fs_err::File::create(to)?);
    let mut out = if gzip {
        tree.write_tar_gz(out, epoch)?
    } else {
        tree.write_tar(out, epoch)?
    };
    std::io::Write::flush(&mut out)
        .with_context(|| format!("writing {}{}", to.display(), fsx::disk_hint(to)))
}

fn set_file(dir: &Path, rel: &str) -> Result<SetFile> {
    let (sha256, size) = fsx::sha256_file(&dir.join(rel))?;
    Ok(SetFile {
        path: rel.to_string(),
        sha256,
        size,
        what: String::new(),
    })
}

/// The checkout's commit, `-dirty` when its files differ; none outside git.
fn commit(root: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// How to use the set, for its `README.md`.
fn readme(s: &SourceSet, recipes: &[String]) -> String {
    let mut out = format!(
        "# Corresponding source of {} {}\n\n\
         Written by `cargo xtask dist --sources`. Every file here is listed with its sha256 in\n\
         `{MANIFEST}`.\n\n\
         - `project.tar.gz`: the stubdoms project's own source{}.\n\
         - `patches/`: the project's patches to upstream sources (also in the project's source).\n\
         - `debian/`: the Debian source packages of everything the images are built from or\n  \
           hold files of, with what uses each:\n\n",
        s.set,
        s.version,
        match &s.commit {
            Some(c) => format!(" at commit {c}"),
            None => String::new(),
        }
    );
    if s.sources.is_empty() {
        out += "  none: the images are built from the project's own source and crates alone.\n";
    }
    for p in &s.sources {
        // A binary's source carries no licence of its own in the pins: the packages' SBOMs
        // give it, from the binary's copyright file.
        let licence = match p.licence.as_str() {
            "NOASSERTION" | "" => String::new(),
            l => format!(" ({l})"),
        };
        out += &format!(
            "  - {} {}{licence}: {}\n",
            p.name,
            p.version,
            p.used_by.join("; ")
        );
    }
    out += &format!(
        "\n- `crates.tar`: the Rust crates of the project's Cargo.lock, unpacked as cargo's\n  \
         directory source; `.cargo/config.toml` makes cargo take them from `crates/` below\n  \
         this folder.\n\
         - `cache/sha256/`: every pinned file the builds read ({} files: the build environments'\n  \
         Debian packages and the source packages above), named by sha256 as the driver's input\n  \
         cache keeps them.\n\n\
         ## Rebuilding the images offline\n\n\
         On Linux with a Rust toolchain (as the project's README says), in a copy of this\n\
         folder:\n\n\
         ```sh\n\
         tar -xzf project.tar.gz\n\
         tar -xf crates.tar\n\
         cd stubdoms\n\
         STUBDOMS_CACHE=\"$PWD/../cache\" STUBDOMS_VENDORED_CRATES=\"$PWD/../crates\" \\\n    \
         cargo xtask build --offline {}\n\
         ```\n\n\
         The build uses nothing but this folder and checks every input's sha256 before use. It\n\
         gives these images, byte for byte (`target/images/manifest.json`):\n\n",
        s.cache.len(),
        recipes.join(" ")
    );
    for i in &s.images {
        let release = i
            .xen_release
            .as_ref()
            .map_or(String::new(), |r| format!("xen-{r}/"));
        out += &format!(
            "- `{}/{release}{}` ({}): sha256 `{}`\n",
            i.variant, i.file, i.recipe, i.sha256
        );
    }
    out
}

/// Rebuilds the images of the source set in `set_dir` in a scratch folder, offline, from
/// the set alone (its project source, crates and input cache; the driver built from them),
/// and checks each has the sha256 the set records. Returns how many checks passed.
pub fn rebuild(ws: &Workspace, set_dir: &Path) -> Result<usize> {
    let text = fs_err::read_to_string(set_dir.join(MANIFEST))?;
    let set: SourceSet = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", set_dir.join(MANIFEST).display()))?;
    let scratch = ws.target.join("sources-check");
    fsx::remove_dir_if_exists(&scratch)?;
    fs_err::create_dir_all(&scratch)?;
    // Each archive holds one folder (`stubdoms/`, `crates/`), unpacked to the same name.
    let unpack = |archive: &str, folder: &str| -> Result<()> {
        let opts = stubdoms_archive::ExtractOptions {
            strip_components: 1,
            compression: None,
        };
        stubdoms_archive::extract_tarball(&set_dir.join(archive), &scratch.join(folder), &opts)
            .with_context(|| format!("unpacking {archive}"))?;
        Ok(())
    };
    // The driver's target folder outlives the check (below), and cargo judges a path crate
    // and a build script's inputs by file times: the project's files are made newer than
    // any earlier build (they may have changed), the crates' as old as SOURCE_DATE_EPOCH
    // (a crate changes only with its checksum in Cargo.lock, which cargo compares).
    unpack("project.tar.gz", "stubdoms")?;
    touch_tree(&scratch.join("stubdoms"), std::time::SystemTime::now())?;
    unpack("crates.tar", "crates")?;
    touch_tree(
        &scratch.join("crates"),
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(set.source_date_epoch),
    )?;
    copy(
        &set_dir.join(".cargo/config.toml"),
        &scratch.join(".cargo/config.toml"),
    )?;
    for f in &set.cache {
        copy(&set_dir.join(&f.path), &scratch.join(&f.path))?;
    }
    let src = scratch.join("stubdoms");
    // An empty cargo home: no crate can come from the host's registry cache.
    let cargo_home = scratch.join("cargo-home");
    fs_err::create_dir_all(&cargo_home)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let run = |cmd: &mut std::process::Command, target: &Path, what: &str| -> Result<()> {
        cmd.current_dir(&src)
            .env("CARGO", &cargo)
            .env("CARGO_HOME", &cargo_home)
            .env("CARGO_TARGET_DIR", target)
            .env("STUBDOMS_CACHE", scratch.join("cache"))
            .env(crate::crates::VENDORED_ENV, scratch.join("crates"));
        let _alive = ui::heartbeat(&format!("source set {}: {what}", set.set), None);
        let status = cmd.status().with_context(|| format!("running {what}"))?;
        if !status.success() {
            bail!("source set {}: {what} failed in {}", set.set, src.display());
        }
        Ok(())
    };
    // The driver itself, from the set's source and crates (what `cargo xtask` runs), in a
    // target folder kept from run to run: a run compiles only the project's own crates.
    let driver_target = ws.target.join("sources-check-driver");
    run(
        std::process::Command::new(&cargo).args([
            "build",
            "--offline",
            "--locked",
            "--quiet",
            "-p",
            "xtask",
        ]),
        &driver_target,
        "`cargo build --offline --locked -p xtask`",
    )?;
    let driver = driver_target.join("debug/xtask");
    // The set's variants only (each build checks every input's sha256 again: cheap).
    let mut recipes: Vec<&str> = set.images.iter().map(|i| i.recipe.as_str()).collect();
    recipes.sort();
    recipes.dedup();
    let variants: BTreeSet<String> = set.images.iter().map(|i| i.variant.to_string()).collect();
    for variant in &variants {
        run(
            std::process::Command::new(&driver)
                .args(["build", "--offline", "--variant", variant])
                .args(&recipes),
            &src.join("target"),
            &format!(
                "`xtask build --offline --variant {variant} {}`",
                recipes.join(" ")
            ),
        )?;
    }
    let built = Manifest::load(&src.join("target/images"))?;
    let mut passed = 1;
    for i in &set.images {
        let art = built
            .artifact(&i.recipe, i.variant, i.xen_release.as_deref(), &i.file)
            .with_context(|| {
                format!(
                    "source set {}: the offline rebuild made no {} {} {}",
                    set.set, i.recipe, i.variant, i.file
                )
            })?;
        if art.sha256 != i.sha256 {
            bail!(
                "source set {}: rebuilt {} {} {} has sha256 {}, the package's has {} (kept in {})",
                set.set,
                i.recipe,
                i.variant,
                i.file,
                art.sha256,
                i.sha256,
                scratch.display()
            );
        }
        passed += 1;
    }
    ui::step(&format!(
        "source set {}: {} image(s) rebuilt offline from it, each identical",
        set.set,
        passed - 1
    ));
    fsx::remove_dir_if_exists(&scratch)?;
    Ok(passed)
}

/// Sets the modification time of every file under `dir` to `when`.
fn touch_tree(dir: &Path, when: std::time::SystemTime) -> Result<()> {
    super::held::walk(dir, &mut |path, _| {
        fs_err::File::options()
            .write(true)
            .open(path)?
            .set_modified(when)
            .with_context(|| format!("setting the time of {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_files_in_a_recipes_patch_folders() {
        let recipes = ["ioemu".to_string(), "pvgrub".to_string()];
        assert!(is_patch("stubdoms/ioemu/patches/0001-x.patch", &recipes));
        assert!(is_patch("stubdoms/ioemu/linux-patches/series", &recipes));
        assert!(is_patch("stubdoms/pvgrub/patches/a/b.patch", &recipes));
        assert!(!is_patch("stubdoms/c-stubdom/patches/x.patch", &recipes));
        assert!(!is_patch("stubdoms/ioemu/patches", &recipes));
        assert!(!is_patch("stubdoms/ioemu/init/src/main.rs", &recipes));
        assert!(!is_patch("xtask/patches/x.patch", &recipes));
    }

    #[test]
    fn source_inputs_are_told_from_binary_ones() {
        let blob = |label: &str| Blob {
            label: label.into(),
            archive: crate::lock::ArchiveKey(0),
            path: "pool/x".into(),
            size: 1,
            sha256: "0".repeat(64),
            licence: "MIT".into(),
            snapshot: None,
        };
        assert_eq!(
            source_label(&blob("source linux 6.1.176-1 linux_6.1.176.orig.tar.xz")),
            Some(("linux".into(), "6.1.176-1".into()))
        );
        assert_eq!(source_label(&blob("deb seabios 1.16.2-1 all")), None);
        assert_eq!(deb_name(&blob("deb seabios 1.16.2-1 all")), "seabios");
    }
}
