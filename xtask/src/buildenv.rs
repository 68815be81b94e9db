//! Build environments: root folders assembled from the pinned packages of an `[[env]]` of
//! `inputs.lock`, the only world a build step or a boot-test tool sees (it runs inside one
//! through [`crate::sandbox`]).
//!
//! A root is keyed by its pins (the sha256 of every package and [`FORMAT`]), assembled once
//! into the cache (`roots/<name>-<key>/`, whole or not at all) and then reused: the same
//! pins give the same root on any host. Assembly does what the packages' maintainer scripts
//! would have done that the tools need, and nothing else: merged `/usr`, the alternatives
//! the build tools are called by (`cc`, `awk`, ...), `/bin/sh`, a minimal `/etc/passwd`, and
//! the folders steps mount their declared inputs and outputs on.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::fsx;
use crate::key::Key;
use crate::lock::{Blob, Env};
use crate::sandbox::{Bind, Sandbox};
use crate::ui;
use crate::workspace::Workspace;

/// Bumped when assembly changes what a root holds.
const FORMAT: &str = "stubdoms-root-1";

/// The environment every builder compiles in.
pub const BUILD: &str = "bookworm-build";
/// The environment the boot tests run QEMU and the disk tools from.
pub const BOOT: &str = "bookworm-boot";

/// Top-level folders a step can mount its declared folders on (the root is read-only).
pub const MOUNT_POINTS: &[&str] = &[
    "proc", "dev", "tmp", "src", "build", "out", "cache", "work", "recipe", "vendor",
];

/// `/usr`-merge: the top-level folders Debian's merged-`/usr` systems link into `/usr`.
const MERGED: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Links that maintainer scripts (update-alternatives, dash's configuration) would make:
/// (link, target), made only when the target exists and the link does not.
const ALTERNATIVES: &[(&str, &str)] = &[
    ("usr/bin/cc", "gcc"),
    ("usr/bin/c++", "g++"),
    ("usr/bin/awk", "mawk"),
    ("usr/bin/nawk", "mawk"),
    ("usr/bin/yacc", "bison.yacc"),
    ("usr/bin/lex", "flex"),
    ("usr/bin/sh", "dash"),
    ("usr/bin/aclocal", "aclocal-1.16"),
    ("usr/bin/automake", "automake-1.16"),
    ("usr/bin/which", "which.debianutils"),
    ("usr/bin/lzma", "xz"),
    ("usr/bin/unlzma", "unxz"),
    ("usr/bin/lzcat", "xzcat"),
    ("usr/bin/rustc", "rustc-web"),
    ("usr/bin/cargo", "cargo-web"),
    ("usr/bin/rustdoc", "rustdoc-web"),
];

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// One package of a root, as the manifest records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// An assembled root.
#[derive(Clone, Debug)]
pub struct Root {
    /// The `[[env]]` it comes from.
    pub name: String,
    /// A hash of its pins: part of every key of a step that runs in it.
    pub key: String,
    /// The folder that becomes `/` of a step.
    pub dir: PathBuf,
    pub packages: Vec<Package>,
}

/// `cargo xtask env`.
#[derive(clap::Args)]
pub struct Args {
    /// The `[[env]]` of inputs.lock (bookworm-build, bookworm-boot).
    #[arg(long, default_value = BUILD)]
    name: String,
    /// Use only the input cache.
    #[arg(long)]
    offline: bool,
    /// The command to run, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
}

/// `cargo xtask env`: assembles the root and prints where it is, or runs a command in it.
pub fn run(ws: &Workspace, args: &Args) -> Result<()> {
    let (name, command) = (args.name.as_str(), &args.command);
    let cache = Cache::open()?;
    let root = fetched_root(ws, &cache, name, args.offline)?;
    let Some((program, args)) = command.split_first() else {
        println!(
            "{} ({} packages, key {})",
            root.dir.display(),
            root.packages.len(),
            &root.key[..16]
        );
        return Ok(());
    };
    let status = root
        .step()
        .ro(&ws.root, "/work")
        .cwd("/work")
        .command(program)?
        .args(args)
        .status()
        .with_context(|| format!("running {program} in {name}"))?;
    if !status.success() {
        bail!("`{}` in {name} failed ({status})", command.join(" "));
    }
    Ok(())
}

/// [`root`], after fetching (or, offline, checking) its packages.
pub fn fetched_root(ws: &Workspace, cache: &Cache, name: &str, offline: bool) -> Result<Root> {
    let blobs = ws.lock.env(name)?.blobs()?;
    crate::fetch::ensure(cache, &blobs, &crate::fetch::Flags { offline })?;
    root(ws, cache, name)
}

/// The root of the environment `name`, assembled if it is not in the cache yet. Its
/// packages must be in the cache (fetched and verified).
pub fn root(ws: &Workspace, cache: &Cache, name: &str) -> Result<Root> {
    let env = ws.lock.env(name)?;
    let blobs = env.blobs()?;
    let key = root_key(&blobs);
    let packages = packages(env);
    let folder = format!("{name}-{}", &key[..16]);
    let dir = cache.root().join("roots").join(&folder).join("root");
    if !dir.is_dir() {
        let started = std::time::Instant::now();
        ui::step(&format!(
            "build environment {name}: assembling {} packages",
            blobs.len()
        ));
        cache.stored("roots", &folder, false, |tmp| {
            assemble_into(cache, env, tmp)
        })?;
        ui::step(&format!(
            "build environment {name}: assembled in {:.1}s ({})",
            started.elapsed().as_secs_f64(),
            dir.display()
        ));
    }
    Ok(Root {
        name: name.to_string(),
        key,
        dir,
        packages,
    })
}

/// Assembles the environment's root into `top/root` (and its package list into
/// `top/packages.json`), unpacking the packages the cache has not unpacked yet.
pub fn assemble_into(cache: &Cache, env: &Env, top: &Path) -> Result<()> {
    let unpacked = unpack_all(cache, &env.blobs()?)?;
    assemble(&top.join("root"), &unpacked)?;
    let list = serde_json::to_vec_pretty(&packages(env))?;
    fsx::write_atomic(&top.join("packages.json"), &list)
}

/// The key of a root: its format, the fixups, and the hash of every package.
fn root_key(blobs: &[Blob]) -> String {
    let mut k = Key::new(FORMAT);
    k.field(
        "fixups",
        format!("{MERGED:?}{ALTERNATIVES:?}{MOUNT_POINTS:?}{PASSWD}{GROUP}"),
    );
    let mut shas: Vec<&str> = blobs.iter().map(|b| b.sha256.as_str()).collect();
    shas.sort();
    for s in shas {
        k.field("deb", s);
    }
    k.finish()
}

fn packages(env: &Env) -> Vec<Package> {
    let mut out: Vec<Package> = env
        .debs
        .iter()
        .map(|d| Package {
            name: d.name.clone(),
            version: d.version.clone(),
            sha256: d.sha256.clone(),
        })
        .collect();
    out.sort();
    out
}

/// Every package unpacked (each once, into the cache), two at a time; in blob order.
fn unpack_all(cache: &Cache, blobs: &[Blob]) -> Result<Vec<(String, PathBuf)>> {
    let queue = Mutex::new(blobs.iter().enumerate());
    let done = Mutex::new(BTreeMap::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 0..workers {
            handles.push(s.spawn(|| -> Result<()> {
                loop {
                    let next = queue
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .next();
                    let Some((i, blob)) = next else { return Ok(()) };
                    let dir = cache.unpacked_deb(blob)?;
                    done.lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .insert(i, (blob.label.clone(), dir));
                }
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("an unpacking thread panicked"))??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(done
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .into_values()
        .collect())
}

/// Merges the unpacked packages into `root` (hard links into the cache's unpacked trees;
/// the root is only ever mounted read-only) and applies the maintainer-script fixups.
fn assemble(root: &Path, unpacked: &[(String, PathBuf)]) -> Result<()> {
    fs_err::create_dir_all(root.join("usr"))?;
    for d in MERGED {
        symlink(format!("usr/{d}"), root.join(d))?;
    }
    for (label, dir) in unpacked {
        merge_tree(dir, dir, root).with_context(|| format!("adding {label} to the root"))?;
    }
    for d in MERGED {
        // A link to a folder no package filled stays harmless, but keep the root tidy.
        if !root.join("usr").join(d).exists() {
            fs_err::remove_file(root.join(d))?;
        }
    }
    for (link, target) in ALTERNATIVES {
        let link = root.join(link);
        let dir = link.parent().context("alternative path")?;
        if dir.join(target).exists() && link.symlink_metadata().is_err() {
            symlink(target, &link).with_context(|| format!("linking {}", link.display()))?;
        }
    }
    let etc = root.join("etc");
    fs_err::create_dir_all(&etc)?;
    for (name, text) in [("passwd", PASSWD), ("group", GROUP)] {
        if !etc.join(name).exists() {
            fsx::write_atomic(&etc.join(name), text.as_bytes())?;
        }
    }
    for d in MOUNT_POINTS {
        fs_err::create_dir_all(root.join(d))?;
    }
    Ok(())
}

/// `/usr`-merged path of a package path: `bin/x` -> `usr/bin/x`.
fn merged_path(rel: &Path) -> PathBuf {
    let mut parts = rel.components();
    match parts.next() {
        Some(first) if MERGED.iter().any(|d| first.as_os_str() == *d) => Path::new("usr").join(rel),
        _ => rel.to_path_buf(),
    }
}

fn merge_tree(base: &Path, dir: &Path, root: &Path) -> Result<()> {
    let mut entries: Vec<_> = fs_err::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(base).context("package path")?;
        let dest = root.join(merged_path(rel));
        let meta = e.metadata()?;
        let ft = meta.file_type();
        // Debian 13's base-files ships `/bin -> usr/bin` and the like itself: the root has
        // those links already.
        if ft.is_symlink() && MERGED.iter().any(|d| rel == Path::new(d)) {
            continue;
        }
        if ft.is_dir() {
            if dest
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                // dpkg would follow it; following a link while writing could leave the root.
                bail!(
                    "{}: a folder where an earlier package has a link",
                    rel.display()
                );
            }
            if dest.symlink_metadata().is_err() {
                fs_err::create_dir_all(&dest)
                    .with_context(|| format!("creating {}", dest.display()))?;
            }
            merge_tree(base, &path, root)?;
            continue;
        }
        // Two packages with the same path: the later in name order wins, as with dpkg's
        // `Replaces`; the order is fixed, so the root is too.
        if dest.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            fs_err::remove_file(&dest)?;
        }
        if ft.is_symlink() {
            let target = fs_err::read_link(&path)?;
            symlink(&target, &dest).with_context(|| format!("linking {}", dest.display()))?;
        } else if ft.is_file() {
            if fs_err::hard_link(&path, &dest).is_err() {
                fs_err::copy(&path, &dest)
                    .with_context(|| format!("copying {} into the root", rel.display()))?;
            }
        } else {
            bail!(
                "{}: a package entry that is neither file, folder nor link (mode {:o})",
                rel.display(),
                meta.mode()
            );
        }
    }
    Ok(())
}

/// One step in a root: what it sees besides the root, where it runs, its environment.
/// The root is read-only; declared folders are mounted on [`MOUNT_POINTS`].
pub struct Step<'a> {
    root: &'a Root,
    binds: Vec<Bind>,
    cwd: String,
    vars: Vec<(String, String)>,
}

impl Root {
    /// A step in this root, in `/` with the project's fixed locale, zone and umask-free
    /// environment; add what it sees and needs with the builder methods.
    pub fn step(&self) -> Step<'_> {
        Step {
            root: self,
            binds: Vec::new(),
            cwd: "/".into(),
            vars: vec![
                ("LC_ALL".into(), "C".into()),
                ("TZ".into(), "UTC".into()),
                ("HOME".into(), "/tmp".into()),
            ],
        }
    }
}

impl Step<'_> {
    /// Mounts the host folder (or file) `host` read-only at `inside`.
    pub fn ro(mut self, host: &Path, inside: &str) -> Self {
        self.binds.push(Bind {
            host: host.to_path_buf(),
            inside: inside.to_string(),
            writable: false,
        });
        self
    }

    /// Mounts the host folder `host` writable at `inside`.
    pub fn rw(mut self, host: &Path, inside: &str) -> Self {
        self.binds.push(Bind {
            host: host.to_path_buf(),
            inside: inside.to_string(),
            writable: true,
        });
        self
    }

    pub fn cwd(mut self, inside: &str) -> Self {
        self.cwd = inside.to_string();
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value.into()));
        self
    }

    /// The step on `repro`'s shifted clock, when it asks for one: the root's own
    /// libfaketime, preloaded. Only for C-world tools: rustc hangs under libfaketime.
    pub fn shifted_clock(self) -> Self {
        match std::env::var(crate::builders::CLOCK_SHIFT_ENV) {
            Ok(shift) if !shift.is_empty() => self
                .env("LD_PRELOAD", FAKETIME)
                .env("FAKETIME", shift)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            _ => self,
        }
    }

    /// The command that runs `program` (looked up in the root's `PATH`) in this step; add
    /// its arguments and run it.
    pub fn command(&self, program: &str) -> Result<std::process::Command> {
        if self.vars.iter().any(|(n, _)| n == "LD_PRELOAD")
            && !self
                .root
                .dir
                .join(FAKETIME.trim_start_matches('/'))
                .exists()
        {
            bail!(
                "the build environment {} has no libfaketime (package `faketime`), needed to shift the clock",
                self.root.name
            );
        }
        Sandbox {
            root: self.root.dir.clone(),
            writable_root: false,
            binds: self.binds.clone(),
            cwd: self.cwd.clone(),
            env: self.vars.clone(),
        }
        .command(program)
    }
}

/// libfaketime's path in a Debian root.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_paths_land_in_merged_usr() {
        let cases = [
            ("bin/bash", "usr/bin/bash"),
            (
                "lib64/ld-linux-x86-64.so.2",
                "usr/lib64/ld-linux-x86-64.so.2",
            ),
            ("sbin/ldconfig", "usr/sbin/ldconfig"),
            ("usr/bin/gcc", "usr/bin/gcc"),
            ("etc/passwd", "etc/passwd"),
            ("binaries/x", "binaries/x"),
        ];
        for (from, want) in cases {
            assert_eq!(merged_path(Path::new(from)), PathBuf::from(want), "{from}");
        }
    }

    /// Two packages, one with a `/bin` file and a link, merge into one `/usr`-merged root
    /// with the alternatives made for what is there and nothing else.
    #[test]
    fn assembles_a_merged_root_with_fixups() {
        let dir = std::env::temp_dir().join(format!("xtask-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = dir.join("a");
        let b = dir.join("b");
        fs_err::create_dir_all(a.join("bin")).unwrap();
        fs_err::create_dir_all(b.join("usr/bin")).unwrap();
        fs_err::write(a.join("bin/dash"), b"#!dash").unwrap();
        fs_err::write(b.join("usr/bin/gcc-12"), b"gcc").unwrap();
        symlink("gcc-12", b.join("usr/bin/gcc")).unwrap();
        let root = dir.join("root");
        assemble(&root, &[("a".into(), a), ("b".into(), b)]).unwrap();
        assert_eq!(fs_err::read(root.join("bin/dash")).unwrap(), b"#!dash");
        assert_eq!(fs_err::read(root.join("usr/bin/cc")).unwrap(), b"gcc");
        assert_eq!(
            fs_err::read_link(root.join("usr/bin/sh")).unwrap(),
            PathBuf::from("dash")
        );
        assert!(root.join("usr/bin/awk").symlink_metadata().is_err());
        assert!(
            root.join("lib").symlink_metadata().is_err(),
            "no empty /lib link"
        );
        assert!(fs_err::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .starts_with("root:x:0:0:"));
        for d in MOUNT_POINTS {
            assert!(root.join(d).is_dir(), "{d}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
