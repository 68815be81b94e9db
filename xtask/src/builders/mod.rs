//! `cargo xtask build`: recipes + verified inputs -> `target/images/<variant>/<file>` (images
//! bound to a Xen release: `<variant>/xen-<release>/<file>`) and
//! `target/images/manifest.json`. One builder per recipe kind; every finished build is kept
//! in the cache under its build key (the hashes of the recipe, its inputs, its sources, the
//! builder and the host tools), so a rebuild with nothing changed only hashes and copies.

mod ioemu;
pub mod key;
pub mod manifest;
mod pvgrub;
pub mod runtime;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::buildenv;
use crate::cache::Cache;
use crate::fetch;
use crate::fsx;
use crate::lock::Blob;
use crate::recipe::{self, Kind, Recipe};
use crate::ui;
use crate::variant::Variant;
use crate::workspace::Workspace;

pub use manifest::{image_path, Artifact, Manifest};

/// The timestamp written into every archive when `SOURCE_DATE_EPOCH` is not set
/// (2025-01-01T00:00:00Z); the manifest records the value used.
pub const DEFAULT_SOURCE_DATE_EPOCH: u64 = 1_735_689_600;

#[derive(clap::Args)]
pub struct Flags {
    /// Only this variant.
    #[arg(long)]
    pub variant: Option<Variant>,
    /// Of the images bound to a Xen release, only those for this one (MAJOR.MINOR).
    #[arg(long)]
    pub xen_release: Option<String>,
    /// Use only the input cache.
    #[arg(long)]
    pub offline: bool,
    /// Build from scratch: ignore stored builds and every builder's incremental state
    /// (`cargo xtask bench` measures cold builds this way).
    #[arg(long)]
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
    /// Further files the variant installs (`extra-files` in the recipe), in recipe order.
    pub extra_files: &'a [String],
    /// The recipe's inputs, verified.
    pub inputs: Vec<Blob>,
    /// A fresh, empty folder the builder may use freely.
    pub staging: PathBuf,
    pub epoch: u64,
    /// Reuse no incremental state (see [`Flags::fresh`]).
    pub fresh: bool,
    /// The build environment every step of the build runs in, except those that link
    /// against a Xen release's libraries.
    pub root: &'a buildenv::Root,
    /// The Xen release the image is built for, if its recipe builds one per release.
    pub xen: Option<XenTarget<'a>>,
}

/// An image bound to a Xen release (`xen-releases` in the recipe).
#[derive(Clone, Copy)]
pub struct XenTarget<'a> {
    pub release: &'a str,
    /// The build environment with that release's Xen headers and libraries.
    pub root: &'a buildenv::Root,
}

/// The Rust target whose standard library the build environment's Rust ships (Debian's
/// `libstd-rust-web-dev`). Images of a variant with another target (see
/// [`Variant::rust_target`]) compile `core` and `alloc` from the toolchain's own sources
/// (`rust-web-src`) as part of their build.
pub const IMAGE_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The crates of the standard library an image of another target compiles (the runtime
/// defines the C memory functions itself, as for the precompiled x86_64 `core`).
const BUILD_STD: &str = "-Zbuild-std=core,alloc,compiler_builtins";
/// Where image builds find the workspace's vendored crates.
const VENDOR: &str = "/vendor";
/// Where a `-Zbuild-std` build finds those and the standard library's: a folder of the
/// target folder (`/build` inside).
const STD_VENDOR: &str = "std-vendor";
const STD_VENDOR_INSIDE: &str = "/build/std-vendor";
/// The standard library's crates in the build environment (`rust-web-src`).
const LIBRARY_VENDOR: &str = "/usr/lib/rustlib/src/rust/library/vendor";

/// The build environment's cargo for the freestanding Rust target of a variant, offline from
/// the vendored crates: the checkout at `/src` (read-only), `target_dir` at `/build`. Targets
/// other than [`IMAGE_TARGET`] build `core` and `alloc` from the toolchain's sources.
pub struct ImageCargo<'a> {
    pub ws: &'a Workspace,
    pub cache: &'a Cache,
    pub root: &'a buildenv::Root,
    pub variant: Variant,
    pub target_dir: PathBuf,
    pub epoch: u64,
    pub rustflags: Vec<String>,
    pub vars: Vec<(String, String)>,
}

impl ImageCargo<'_> {
    /// `cargo SUBCOMMAND` (build, clippy) with the `image` profile for the variant's target;
    /// `args` go before cargo's own (`-p PACKAGE`), `trailing` after `--`. Cargo runs on the
    /// real clock: rustc hangs under libfaketime.
    pub fn command(
        &self,
        subcommand: &str,
        args: &[&str],
        trailing: &[&str],
    ) -> Result<std::process::Command> {
        let target = self.variant.rust_target();
        fs_err::create_dir_all(&self.target_dir)
            .with_context(|| format!("creating {}", self.target_dir.display()))?;
        let build_std = target != IMAGE_TARGET;
        let vendor = crate::crates::vendored(self.ws, self.cache)?;
        let mut step = self
            .root
            .step()
            .ro(&self.ws.root, "/src")
            .ro(&vendor, VENDOR)
            .rw(&self.target_dir, "/build")
            .cwd("/src")
            .env("RUSTFLAGS", self.rustflags.join(" "))
            .env("SOURCE_DATE_EPOCH", self.epoch.to_string())
            .env("CARGO_HOME", "/tmp/cargo-home");
        let mut crates = VENDOR;
        if build_std {
            // `-Zbuild-std` is unstable; Debian's toolchain takes it with RUSTC_BOOTSTRAP.
            step = step.env("RUSTC_BOOTSTRAP", "1");
            std_vendor(&vendor, &self.root.dir, &self.target_dir.join(STD_VENDOR))?;
            crates = STD_VENDOR_INSIDE;
        }
        for (name, value) in &self.vars {
            step = step.env(name, value);
        }
        let mut c = step.command("cargo")?;
        c.args([subcommand, "--offline", "--locked", "--profile", "image"])
            .args(["--target", target, "--target-dir", "/build"])
            .args(args)
            .args(crate::crates::cargo_config(crates));
        if build_std {
            c.arg(BUILD_STD);
        }
        if !trailing.is_empty() {
            c.arg("--").args(trailing);
        }
        Ok(c)
    }

    /// The host folder the outputs of a `build` land in.
    pub fn out_dir(&self) -> PathBuf {
        self.target_dir
            .join(self.variant.rust_target())
            .join("image")
    }
}

impl Job<'_> {
    /// `cargo build` of one workspace package with [`ImageCargo`], into the target folder
    /// `target/<folder>` (a scratch folder under `--fresh`). Returns the step, for the
    /// caller to add to and run, and the host folder the package's outputs land in.
    pub fn cargo_image(
        &self,
        package: &str,
        folder: &str,
        rustflags: &[String],
        vars: &[(&str, &str)],
    ) -> Result<(std::process::Command, PathBuf)> {
        let cargo = ImageCargo {
            ws: self.ws,
            cache: self.cache,
            root: self.root,
            variant: self.variant,
            target_dir: if self.fresh {
                self.staging.join("cargo")
            } else {
                self.ws.target.join(folder)
            },
            epoch: self.epoch,
            rustflags: rustflags.to_vec(),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        Ok((
            cargo.command("build", &["-p", package], &[])?,
            cargo.out_dir(),
        ))
    }

    /// Where the builder must leave the artifact.
    pub fn output(&self) -> PathBuf {
        self.staging.join("out").join(self.file)
    }

    /// Where the builder must leave one of the recipe's `extra-files`.
    pub fn extra_output(&self, name: &str) -> Result<PathBuf> {
        if !self.extra_files.iter().any(|f| f == name) {
            bail!(
                "{}: variant {} lists no extra file `{name}`",
                self.recipe.path.display(),
                self.variant
            );
        }
        Ok(self.staging.join("out").join(name))
    }
}

/// Makes `dir` the one crate source cargo takes for a `-Zbuild-std` build: links to the
/// workspace's vendored crates and to those of the standard library's own lock file, which
/// Debian ships in `rust-web-src`. The links name paths inside the build environment.
fn std_vendor(vendor: &Path, root: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    fs_err::create_dir_all(dir)?;
    let mut names = std::collections::BTreeSet::new();
    for (host, inside) in [
        (vendor.to_path_buf(), VENDOR),
        (root.join(&LIBRARY_VENDOR[1..]), LIBRARY_VENDOR),
    ] {
        let entries = fs_err::read_dir(&host)
            .with_context(|| format!("the crates of {inside} in the build environment"))?;
        let mut found: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        for name in found {
            // The same name and version is the same crate (cargo checks its checksum).
            if names.insert(name.clone()) {
                std::os::unix::fs::symlink(format!("{inside}/{name}"), dir.join(&name))
                    .with_context(|| format!("linking {name} in {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// Set by `repro` on its second build: a libfaketime offset such as `+400d`.
pub const CLOCK_SHIFT_ENV: &str = "STUBDOMS_CLOCK_SHIFT";

/// Runs a build step with its output in `<dir>/<what>.log`; on failure shows the end of it
/// and where the rest is.
pub fn run_logged(cmd: &mut std::process::Command, dir: &Path, what: &str) -> Result<()> {
    let log = dir.join(format!("{}.log", what.replace([' ', '/'], "_")));
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let _alive = ui::heartbeat(what, Some(log.clone()));
    let status = cmd
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        let text = fs_err::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        bail!(
            "{what} failed ({status}); last lines:\n{}\nfull log: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            log.display()
        );
    }
    Ok(())
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
    let jobs: Vec<(&Recipe, Variant, Option<&str>)> = recipes
        .iter()
        .flat_map(|r| {
            r.variants
                .keys()
                .flat_map(move |v| r.xen_builds().into_iter().map(move |x| (*r, *v, x)))
        })
        .filter(|(_, v, _)| flags.variant.is_none_or(|want| want == *v))
        .filter(|(_, _, x)| {
            x.is_none_or(|r| flags.xen_release.as_deref().is_none_or(|want| want == r))
        })
        .collect();
    if jobs.is_empty() {
        bail!(
            "nothing to build: no selected recipe builds variant {} for Xen {}",
            flags.variant.map_or("(any)", |v| v.as_str()),
            flags.xen_release.as_deref().unwrap_or("(any)")
        );
    }
    let cache = Cache::open()?;
    let root = buildenv::fetched_root(ws, &cache, buildenv::BUILD, flags.offline)?;
    // The environments with a Xen release's libraries, by name.
    let mut xen_roots = BTreeMap::new();
    for (recipe, _, xen) in &jobs {
        if let Some(env) = xen.map(|r| &recipe.xen_releases[r]) {
            if !xen_roots.contains_key(env) {
                let r = buildenv::fetched_root(ws, &cache, env, flags.offline)?;
                xen_roots.insert(env.clone(), r);
            }
        }
    }
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
    for (recipe, variant, xen) in jobs {
        let xen = xen.map(|release| XenTarget {
            release,
            root: &xen_roots[&recipe.xen_releases[release]],
        });
        let job = (recipe, variant, xen);
        let artifacts = build_one(ws, &cache, &root, job, epoch, flags.fresh)?;
        manifest.replace(
            &recipe.name,
            variant,
            xen.map(|x| x.release),
            artifacts.clone(),
        );
        built.extend(artifacts);
    }
    manifest.source_date_epoch = epoch;
    for r in std::iter::once(&root).chain(xen_roots.values()) {
        manifest.record_environment(r);
    }
    manifest.record_tested_with(&crate::boot::machines::load_all(ws)?, &ws.recipes);
    manifest.save(&images)?;
    Ok(built)
}

fn build_one(
    ws: &Workspace,
    cache: &Cache,
    root: &buildenv::Root,
    (recipe, variant, xen): (&Recipe, Variant, Option<XenTarget>),
    epoch: u64,
    fresh: bool,
) -> Result<Vec<Artifact>> {
    let output = &recipe.variants[&variant];
    let files: Vec<&str> = output.files().collect();
    let inputs = ws.recipe_blobs(recipe)?;
    let key = key::build_key(ws, recipe, variant, xen, &inputs, root, epoch)?;
    let stored = cache.build_dir(&key);
    let release = xen.map(|x| x.release);
    let images = ws.target.join("images");
    let what = match release {
        Some(r) => format!("{} {variant} for Xen {r}", recipe.name),
        None => format!("{} {variant}", recipe.name),
    };

    let reused = if fresh { None } else { reuse(&stored, &files)? };
    let found = if let Some(found) = reused {
        ui::step(&format!("{what}: up to date ({})", &key[..12]));
        found
    } else {
        ui::step(&format!("{what}: building"));
        let staging = ws
            .target
            .join("build")
            .join(&recipe.name)
            .join(image_path(variant, release, ""));
        fsx::remove_dir_if_exists(&staging)?;
        fs_err::create_dir_all(staging.join("out"))
            .with_context(|| format!("creating {}", staging.display()))?;
        let job = Job {
            ws,
            cache,
            recipe,
            variant,
            file: &output.file,
            extra_files: &output.extra_files,
            inputs: inputs.clone(),
            staging,
            epoch,
            fresh,
            root,
            xen,
        };
        let started = std::time::Instant::now();
        dispatch(&job).with_context(|| format!("building {what}"))?;
        let out = job.staging.join("out");
        for file in &files {
            let path = out.join(file);
            if !path.is_file() {
                bail!("building {what}: the builder left no {}", path.display());
            }
            check_no_host_paths(ws, &path)?;
        }
        let found = store(&stored, &out, &files)?;
        let sizes: Vec<String> = found
            .iter()
            .zip(&files)
            .map(|((_, size), f)| format!("{f}: {size} bytes"))
            .collect();
        ui::step(&format!(
            "{what}: built in {:.1}s ({})",
            started.elapsed().as_secs_f64(),
            sizes.join(", ")
        ));
        found
    };
    let inputs: BTreeMap<String, String> = inputs
        .iter()
        .map(|b| (b.label.clone(), b.sha256.clone()))
        .collect();
    let mut artifacts = Vec::new();
    let mut envs = vec![root.name.clone()];
    envs.extend(xen.map(|x| x.root.name.clone()));
    for (file, (sha256, size)) in files.iter().zip(found) {
        let dest = images.join(image_path(variant, release, file));
        let have = dest.is_file() && fsx::sha256_file(&dest)?.0 == sha256;
        if !have {
            fsx::copy_atomic(&stored.join(file), &dest)?;
        }
        artifacts.push(Artifact {
            recipe: recipe.name.clone(),
            variant,
            xen_release: release.map(str::to_string),
            file: file.to_string(),
            sha256,
            size,
            build_key: key.clone(),
            build_envs: envs.clone(),
            inputs: inputs.clone(),
            // Filled in from the machines and tests when the manifest is saved.
            xen: Vec::new(),
        });
    }
    Ok(artifacts)
}

fn dispatch(job: &Job) -> Result<()> {
    match job.recipe.kind {
        Kind::Rust | Kind::C => runtime::build(job),
        Kind::Pvgrub => pvgrub::build(job),
        Kind::Ioemu => ioemu::build(job),
    }
}

/// A stored build: its files and their recorded hashes (`sha256`, one line per file in
/// `files` order), all checked.
fn reuse(stored: &Path, files: &[&str]) -> Result<Option<Vec<(String, u64)>>> {
    let Ok(recorded) = fs_err::read_to_string(stored.join("sha256")) else {
        return Ok(None);
    };
    let recorded: Vec<&str> = recorded.lines().map(str::trim).collect();
    if recorded.len() != files.len() || files.iter().any(|f| !stored.join(f).is_file()) {
        return Ok(None);
    }
    let mut found = Vec::new();
    for (file, want) in files.iter().zip(recorded) {
        let (sha, size) = fsx::sha256_file(&stored.join(file))?;
        if sha != want {
            ui::warn(&format!(
                "stored build {} was altered ({file}: sha256 {sha}, recorded {want}): building again",
                stored.display(),
            ));
            fsx::remove_dir_if_exists(stored)?;
            return Ok(None);
        }
        found.push((sha, size));
    }
    Ok(Some(found))
}

/// Keeps a finished build's files (from the folder `out`) under its build key; the folder
/// appears whole or not at all.
fn store(stored: &Path, out: &Path, files: &[&str]) -> Result<Vec<(String, u64)>> {
    let mut found = Vec::new();
    fsx::create_dir_atomic(stored, true, |tmp| {
        let mut record = String::new();
        for file in files {
            let (sha, size) = fsx::sha256_file(&out.join(file))?;
            fsx::copy_atomic(&out.join(file), &tmp.join(file))?;
            record += &format!("{sha}\n");
            found.push((sha, size));
        }
        fsx::write_atomic(&tmp.join("sha256"), record.as_bytes())
    })?;
    Ok(found)
}

/// **Invariant:** no artifact contains the checkout path, the target folder or the home
/// folder: those would make the bytes depend on who built it where.
fn check_no_host_paths(ws: &Workspace, out: &Path) -> Result<()> {
    let bytes = fs_err::read(out).with_context(|| format!("reading {}", out.display()))?;
    // With the slash: a leaked path names something inside the folder, and `/root` alone
    // is a common string.
    let mut needles = vec![
        format!("{}/", ws.root.display()),
        format!("{}/", ws.target.display()),
    ];
    if let Some(home) = std::env::var_os("HOME").filter(|h| h.len() > 1) {
        needles.push(format!("{}/", PathBuf::from(home).display()));
    }
    if let Some(needle) =
        host_path_in(&bytes, &needles).with_context(|| format!("reading {}", out.display()))?
    {
        bail!(
            "{} contains the host path `{needle}`: the build is not reproducible (a builder leaks a path; map it with -ffile-prefix-map or --remap-path-prefix)",
            out.display()
        );
    }
    Ok(())
}

/// The first of `needles` found in `bytes` or, for gzip data, in what it unpacks to.
fn host_path_in<'a>(bytes: &[u8], needles: &'a [String]) -> Result<Option<&'a str>> {
    let mut inner = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut inner)
            .context("unpacking gzip")?;
    }
    Ok(needles.iter().map(String::as_str).find(|n| {
        [bytes, &inner[..]]
            .iter()
            .any(|b| b.windows(n.len()).any(|w| w == n.as_bytes()))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_are_found_in_plain_and_gzip_data() {
        use std::io::Write;
        let needles = vec!["/home/someone".to_string(), "/build/tree".to_string()];
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let cases: [(Vec<u8>, Option<&str>); 4] = [
            (b"RUNPATH /build/tree/lib".to_vec(), Some("/build/tree")),
            (gz(b"..\0/home/someone/x"), Some("/home/someone")),
            (gz(b"/usr/lib only"), None),
            (b"/build/tre".to_vec(), None),
        ];
        for (bytes, want) in cases {
            assert_eq!(host_path_in(&bytes, &needles).unwrap(), want);
        }
        assert!(host_path_in(&[0x1f, 0x8b, 0, 1], &needles).is_err());
    }

    /// A build with two files is stored and found again; a stored file that changed, or a
    /// different file list, is not reused.
    #[test]
    fn stores_and_reuses_every_file() {
        let dir = std::env::temp_dir().join(format!("xtask-store-{}", std::process::id()));
        let out = dir.join("out");
        let stored = dir.join("stored");
        fs_err::create_dir_all(&out).unwrap();
        fs_err::write(out.join("rootfs"), b"rootfs bytes").unwrap();
        fs_err::write(out.join("kernel"), b"kernel").unwrap();
        let files = ["rootfs", "kernel"];

        let kept = store(&stored, &out, &files).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].1, 12);
        assert_eq!(kept[1].1, 6);
        assert_eq!(kept[0].0, fsx::sha256_file(&out.join("rootfs")).unwrap().0);
        assert_eq!(reuse(&stored, &files).unwrap(), Some(kept.clone()));
        assert_eq!(reuse(&stored, &["rootfs"]).unwrap(), None);

        fs_err::write(stored.join("kernel"), b"altered").unwrap();
        assert_eq!(reuse(&stored, &files).unwrap(), None);
        assert!(!stored.exists(), "an altered stored build is removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
