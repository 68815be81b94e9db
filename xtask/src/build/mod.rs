//! `cargo xtask build`: recipes + verified inputs -> `target/images/<variant>/<file>` and
//! `target/images/manifest.json`. One builder per recipe kind; every finished build is kept
//! in the cache under its build key (the hashes of the recipe, its inputs, its sources, the
//! builder and the host tools), so a rebuild with nothing changed only hashes and copies.

pub mod key;
mod manifest;
mod pvgrub;
mod runtime;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cache::Cache;
use crate::doctor::{self, Need};
use crate::fetch;
use crate::fsx;
use crate::lock::Blob;
use crate::recipe::{self, Kind, Recipe};
use crate::ui;
use crate::variant::Variant;
use crate::workspace::Workspace;

pub use manifest::{Artifact, Manifest};

/// The timestamp written into every archive when `SOURCE_DATE_EPOCH` is not set
/// (2025-01-01T00:00:00Z); the manifest records the value used.
pub const DEFAULT_SOURCE_DATE_EPOCH: u64 = 1_735_689_600;

pub struct Flags {
    pub variant: Option<Variant>,
    pub offline: bool,
    /// Build from scratch: ignore stored builds and every builder's incremental state
    /// (`cargo xtask bench` measures cold builds this way).
    pub fresh: bool,
}

/// Everything a builder gets: what to build, from what, and where to put it.
pub struct Job<'a> {
    pub ws: &'a Workspace,
    pub cache: &'a Cache,
    pub recipe: &'a Recipe,
    pub variant: Variant,
    /// The file name the artifact installs as.
    pub file: &'a str,
    /// The recipe's inputs, verified.
    pub inputs: Vec<Blob>,
    /// A fresh, empty folder the builder may use freely.
    pub staging: PathBuf,
    pub epoch: u64,
    /// Reuse no incremental state (see [`Flags::fresh`]).
    pub fresh: bool,
}

impl Job<'_> {
    /// Where the builder must leave the artifact.
    pub fn output(&self) -> PathBuf {
        self.staging.join("out").join(self.file)
    }
}

/// Runs `cmd` on the real clock: `repro` shifts the clock of its second build with
/// libfaketime, under which rustc hangs, so cargo and rustc are exempt (the C compilers,
/// make and the GRUB and Linux builds keep the shifted clock).
pub fn real_clock(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.env_remove("LD_PRELOAD").env_remove("FAKETIME")
}

pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970")
        }),
        _ => Ok(DEFAULT_SOURCE_DATE_EPOCH),
    }
}

/// Builds the named recipes (all by default) and returns what was built.
pub fn run(ws: &Workspace, names: &[String], flags: &Flags) -> Result<Vec<Artifact>> {
    let recipes = recipe::select(&ws.recipes, names)?;
    let jobs: Vec<(&Recipe, Variant)> = recipes
        .iter()
        .flat_map(|r| r.variants.keys().map(move |v| (*r, *v)))
        .filter(|(_, v)| flags.variant.is_none_or(|want| want == *v))
        .collect();
    if jobs.is_empty() {
        bail!(
            "nothing to build: no selected recipe has variant {}",
            flags.variant.map_or("?", |v| v.as_str())
        );
    }
    let mut kinds: Vec<Need> = Vec::new();
    for (r, _) in &jobs {
        if !kinds.contains(&Need::Kind(r.kind)) {
            kinds.push(Need::Kind(r.kind));
        }
    }
    doctor::ensure(&kinds)?;
    let cache = Cache::open()?;
    let mut blobs = Vec::new();
    for r in &recipes {
        blobs.extend(ws.recipe_blobs(r)?);
    }
    fetch::ensure(
        &cache,
        &blobs,
        &fetch::Flags {
            offline: flags.offline,
        },
    )?;
    let epoch = source_date_epoch()?;
    let images = ws.target.join("images");
    let mut manifest = Manifest::load(&images)?;
    let mut built = Vec::new();
    for (recipe, variant) in jobs {
        let artifact = build_one(ws, &cache, recipe, variant, epoch, flags.fresh)?;
        manifest.insert(artifact.clone());
        built.push(artifact);
    }
    manifest.source_date_epoch = epoch;
    manifest.save(&images)?;
    Ok(built)
}

fn build_one(
    ws: &Workspace,
    cache: &Cache,
    recipe: &Recipe,
    variant: Variant,
    epoch: u64,
    fresh: bool,
) -> Result<Artifact> {
    let file = &recipe.variants[&variant].file;
    let inputs = ws.recipe_blobs(recipe)?;
    let key = key::build_key(ws, recipe, variant, &inputs, epoch)?;
    let stored = cache.build_dir(&key);
    let dest = ws.target.join("images").join(variant.as_str()).join(file);
    let what = format!("{} {variant}", recipe.name);

    let reused = if fresh { None } else { reuse(&stored, file)? };
    let (sha256, size) = if let Some(found) = reused {
        ui::step(&format!("{what}: up to date ({})", &key[..12]));
        found
    } else {
        ui::step(&format!("{what}: building"));
        let staging = ws
            .target
            .join("build")
            .join(&recipe.name)
            .join(variant.as_str());
        fsx::remove_dir_if_exists(&staging)?;
        std::fs::create_dir_all(staging.join("out"))
            .with_context(|| format!("creating {}", staging.display()))?;
        let job = Job {
            ws,
            cache,
            recipe,
            variant,
            file,
            inputs: inputs.clone(),
            staging,
            epoch,
            fresh,
        };
        let started = std::time::Instant::now();
        dispatch(&job).with_context(|| format!("building {what}"))?;
        let out = job.output();
        if !out.is_file() {
            bail!("building {what}: the builder left no {}", out.display());
        }
        check_no_host_paths(ws, &out)?;
        let found = store(&stored, &out, file)?;
        ui::step(&format!(
            "{what}: built in {:.1}s ({} bytes)",
            started.elapsed().as_secs_f64(),
            found.1
        ));
        found
    };
    let have = dest.is_file() && fsx::sha256_file(&dest)?.0 == sha256;
    if !have {
        fsx::copy_atomic(&stored.join(file), &dest)?;
    }
    Ok(Artifact {
        recipe: recipe.name.clone(),
        variant,
        file: file.clone(),
        sha256,
        size,
        build_key: key,
        inputs: inputs
            .iter()
            .map(|b| (b.label.clone(), b.sha256.clone()))
            .collect::<BTreeMap<_, _>>(),
    })
}

fn dispatch(job: &Job) -> Result<()> {
    match job.recipe.kind {
        Kind::Rust | Kind::C => runtime::build(job),
        Kind::Pvgrub => pvgrub::build(job),
        Kind::Ioemu => bail!(
            "the {} builder is not available in this version of the driver",
            job.recipe.kind
        ),
    }
}

/// A stored build: the artifact and its recorded hash, both checked.
fn reuse(stored: &Path, file: &str) -> Result<Option<(String, u64)>> {
    let art = stored.join(file);
    let Ok(recorded) = std::fs::read_to_string(stored.join("sha256")) else {
        return Ok(None);
    };
    if !art.is_file() {
        return Ok(None);
    }
    let (sha, size) = fsx::sha256_file(&art)?;
    if sha != recorded.trim() {
        ui::warn(&format!(
            "stored build {} was altered (sha256 {sha}, recorded {}): building again",
            stored.display(),
            recorded.trim()
        ));
        fsx::remove_dir_if_exists(stored)?;
        return Ok(None);
    }
    Ok(Some((sha, size)))
}

/// Keeps a finished artifact under its build key (the folder appears whole or not at all).
fn store(stored: &Path, out: &Path, file: &str) -> Result<(String, u64)> {
    let (sha, size) = fsx::sha256_file(out)?;
    let tmp = fsx::partial_path(stored);
    fsx::remove_dir_if_exists(&tmp)?;
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    fsx::copy_atomic(out, &tmp.join(file))?;
    fsx::write_atomic(&tmp.join("sha256"), format!("{sha}\n").as_bytes())?;
    fsx::remove_dir_if_exists(stored)?;
    std::fs::rename(&tmp, stored).with_context(|| format!("storing {}", stored.display()))?;
    Ok((sha, size))
}

/// **Invariant:** no artifact contains the checkout path or the home folder: those would
/// make the bytes depend on who built it where.
fn check_no_host_paths(ws: &Workspace, out: &Path) -> Result<()> {
    let bytes = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    let mut needles = vec![ws.root.display().to_string()];
    if let Some(home) = std::env::var_os("HOME").filter(|h| h.len() > 1) {
        needles.push(PathBuf::from(home).display().to_string());
    }
    for needle in needles {
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            bail!(
                "{} contains the host path `{needle}`: the build is not reproducible (a builder leaks a path; map it with -ffile-prefix-map or --remap-path-prefix)",
                out.display()
            );
        }
    }
    Ok(())
}
