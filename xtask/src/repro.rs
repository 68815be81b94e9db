//! `cargo xtask repro [NAME...]`: build everything twice from the same pins, in two fresh
//! copies of the workspace at different paths, with a different umask, `TZ`, `LANG` and
//! clock, and compare every artifact (and the boot machine's files). One line per artifact;
//! for one that differs, which inner files differ (inside gzip, cpio and tar) and where.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::builders::Manifest;
use crate::fsx;
use crate::recipe;
use crate::ui;
use crate::workspace::{self, Workspace};

/// How the two builds differ from each other. The second one's clock is shifted with
/// libfaketime for the C-world build tools (see `buildenv::Step::shifted_clock`), and its
/// driver runs with an empty environment and a `PATH` of only the Rust toolchain's own
/// folder: no host compiler, shell or tool is there to be found.
struct Env {
    dir: &'static str,
    umask: u32,
    tz: &'static str,
    lang: &'static str,
    /// A `faketime` offset; empty for the real clock.
    clock: &'static str,
    /// Run the driver with nothing of the host on its `PATH` but the Rust toolchain.
    hide_host: bool,
}

const ENVS: [Env; 2] = [
    Env {
        dir: "a",
        umask: 0o022,
        tz: "UTC",
        lang: "C.UTF-8",
        clock: "",
        hide_host: false,
    },
    Env {
        dir: "second-build/with/a/longer/path",
        umask: 0o077,
        tz: "Asia/Kolkata",
        lang: "fr_FR.UTF-8",
        clock: "+400d",
        hide_host: true,
    },
];

/// An environment with nothing of the host but what the driver itself needs: the Rust
/// toolchain's folder as the whole `PATH` (cargo for `cargo metadata`), and the variables
/// that locate the toolchain, the cache and the home folder.
fn hide_host(cmd: &mut Command) -> Result<()> {
    let cargo = PathBuf::from(
        std::env::var_os("CARGO").context("CARGO is not set: run repro through `cargo xtask`")?,
    );
    let bin = cargo.parent().context("cargo's folder")?.to_path_buf();
    let keep: Vec<(String, std::ffi::OsString)> = [
        "HOME",
        "CARGO",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "XDG_CACHE_HOME",
        "STUBDOMS_CACHE",
        "STUBDOMS_DEBIAN_MIRROR",
        "STUBDOMS_DEBIAN_SECURITY_MIRROR",
        "STUBDOMS_DEBIAN_SNAPSHOT",
    ]
    .iter()
    .filter_map(|v| std::env::var_os(v).map(|val| (v.to_string(), val)))
    .collect();
    let vars: Vec<(String, std::ffi::OsString)> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_string_lossy().into_owned(), v.to_os_string())))
        .collect();
    cmd.env_clear().envs(keep).envs(vars).env("PATH", bin);
    Ok(())
}

/// Which test machines a run rebuilds and compares.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Machines {
    /// Every machine.
    All,
    /// Those assembled from packages only, not the ones whose hypervisor is compiled
    /// (`xen-config`): compiling Xen twice from scratch takes minutes.
    Assembled,
}

/// Returns how many artifacts were compared (all identical, else an error).
pub fn run(ws: &Workspace, names: &[String], machines: Machines) -> Result<usize> {
    let selected: Vec<String> = recipe::select(&ws.recipes, names)?
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let machine_names: Vec<String> = crate::boot::machines::load_all(ws)?
        .into_iter()
        .filter(|m| machines == Machines::All || m.xen_config.is_none())
        .map(|m| m.name)
        .collect();
    let base = ws.target.join("repro");
    fsx::remove_dir_if_exists(&base)?;
    let me = std::env::current_exe().context("finding the xtask binary")?;
    // Both copies first: the checkout may change while the first build runs, and the two
    // builds must start from the same tree.
    for env in &ENVS {
        workspace::copy_to(&ws.root, &base.join(env.dir))?;
    }
    // The two builds run side by side: each is mostly one long serial step (a link, LTO,
    // the end of a make), so together they take little longer than one.
    let umask_lock = std::sync::Mutex::new(());
    let outs: Vec<PathBuf> = std::thread::scope(|scope| {
        let runs: Vec<_> = ENVS
            .iter()
            .map(|env| {
                let root = base.join(env.dir);
                let (me, selected, machine_names, umask_lock) =
                    (&me, &selected, &machine_names, &umask_lock);
                scope.spawn(move || build_in(&root, env, me, selected, machine_names, umask_lock))
            })
            .collect();
        runs.into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| bail!("repro: a build thread panicked"))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let [a, b] = [&outs[0], &outs[1]];
    let mut files: BTreeMap<String, (PathBuf, PathBuf)> = BTreeMap::new();
    for art in Manifest::load(&a.join("images"))?.artifacts {
        let rel = art.rel_path();
        files.insert(
            format!("images/{rel}"),
            (a.join("images").join(&rel), b.join("images").join(&rel)),
        );
    }
    for m in &machine_names {
        for f in [
            "xen",
            "vmlinux",
            "vmlinux.gz",
            "dom0.cpio.gz",
            "dom0-hvm.cpio",
            "guest.cpio.gz",
        ] {
            let rel = Path::new("machines").join(m).join(f);
            files.insert(format!("machine {m}/{f}"), (a.join(&rel), b.join(&rel)));
        }
    }
    if esp_wanted(&selected, &machine_names) {
        for f in ["ESP.img", "ESP.img.manifest.json"] {
            let rel = Path::new("esp").join(f);
            files.insert(format!("esp {f}"), (a.join(&rel), b.join(&rel)));
        }
    }
    let mut differ = 0;
    for (name, (x, y)) in &files {
        let (ax, bx) = (read(x)?, read(y)?);
        if ax == bx {
            println!("identical  {name}");
        } else {
            differ += 1;
            println!("DIFFERS    {name}");
            for line in explain(&ax, &bx) {
                println!("           {line}");
            }
        }
    }
    if differ > 0 {
        bail!(
            "{differ} of {} artifact(s) differ between the two builds (kept in {})",
            files.len(),
            base.display()
        );
    }
    println!("all {} artifact(s) are bit-identical", files.len());
    fsx::remove_dir_if_exists(&base)?;
    Ok(files.len())
}

/// One of the two builds: the selected recipes and every machine, from scratch, in the copy
/// at `root` and environment `env`; returns its target folder.
fn build_in(
    root: &Path,
    env: &Env,
    me: &Path,
    selected: &[String],
    machine_names: &[String],
    umask_lock: &std::sync::Mutex<()>,
) -> Result<PathBuf> {
    ui::step(&format!(
        "repro: building in {} (umask {:03o}, TZ={}, LANG={}, clock {}{})",
        root.display(),
        env.umask,
        env.tz,
        env.lang,
        if env.clock.is_empty() {
            "real"
        } else {
            env.clock
        },
        if env.hide_host {
            ", host tools hidden"
        } else {
            ""
        }
    ));
    let target = root.join("target");
    let mut build_args = vec!["build".to_string(), "--fresh".into(), "--quiet".into()];
    build_args.extend(selected.iter().cloned());
    let mut steps = vec![build_args];
    for m in machine_names {
        steps.push(vec![
            "machine".into(),
            m.clone(),
            "--out".into(),
            format!("target/machines/{m}"),
            "--fresh".into(),
        ]);
    }
    if esp_wanted(selected, machine_names) {
        steps.push(
            ["esp", ESP_CONFIG, "--out", "target/esp/ESP.img"]
                .map(String::from)
                .to_vec(),
        );
    }
    for args in steps {
        let mut cmd = Command::new(me);
        cmd.args(&args)
            .current_dir(root)
            .env(crate::builders::CLOCK_SHIFT_ENV, env.clock)
            .env("CARGO_TARGET_DIR", &target)
            .env("TZ", env.tz)
            .env("LANG", env.lang)
            .env("LC_ALL", env.lang);
        if env.hide_host {
            hide_host(&mut cmd)?;
        }
        // The child inherits the umask, which is the whole process's: set it only for the
        // spawn, one thread at a time.
        let child = {
            let _one = umask_lock
                .lock()
                .map_err(|_| anyhow::anyhow!("umask lock"))?;
            let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(env.umask));
            let child = cmd.spawn();
            rustix::process::umask(old);
            child
        };
        // The builds run quiet: say that they are alive.
        let _alive = ui::heartbeat(&format!("repro: xtask {} in {}", args[0], env.dir), None);
        let status = child
            .context("running xtask")?
            .wait()
            .context("waiting for xtask")?;
        if !status.success() {
            bail!(
                "repro: `xtask {}` failed in {}",
                args.join(" "),
                root.display()
            );
        }
    }
    Ok(target)
}

/// The EFI system partition of the aarch64 self-test's shape (`cargo xtask esp`), built
/// from the Rust example's image and the machine's guest kernel, as both builds made them.
const ESP_CONFIG: &str = "ci/aarch64/efi/repro.cfg";

fn esp_wanted(selected: &[String], machine_names: &[String]) -> bool {
    selected.iter().any(|n| n == "rust-stubdom")
        && machine_names.iter().any(|m| m == "aarch64-xen4.17")
}

fn read(p: &Path) -> Result<Vec<u8>> {
    fs_err::read(p).with_context(|| format!("reading {}", p.display()))
}

/// Says where two different artifacts differ, looking inside gzip, cpio and tar.
pub fn explain(a: &[u8], b: &[u8]) -> Vec<String> {
    if a.starts_with(&[0x1f, 0x8b]) && b.starts_with(&[0x1f, 0x8b]) {
        if let (Some(x), Some(y)) = (gunzip(a), gunzip(b)) {
            if x == y {
                return vec!["gzip framing differs; the contents are identical".into()];
            }
            return explain(&x, &y)
                .into_iter()
                .map(|l| format!("inside gzip: {l}"))
                .collect();
        }
    }
    if a.starts_with(b"070701") && b.starts_with(b"070701") {
        if let (Ok(x), Ok(y)) = (
            stubdoms_archive::cpio::read(a),
            stubdoms_archive::cpio::read(b),
        ) {
            let x: Vec<_> = x
                .into_iter()
                .map(|e| (e.name.clone(), (e.mode, e.uid, e.gid, e.mtime, e.data)))
                .collect();
            let y: Vec<_> = y
                .into_iter()
                .map(|e| (e.name.clone(), (e.mode, e.uid, e.gid, e.mtime, e.data)))
                .collect();
            return compare_entries("cpio", x, y);
        }
    }
    if let (Some(x), Some(y)) = (tar_entries(a), tar_entries(b)) {
        return compare_entries("tar", x, y);
    }
    vec![first_difference(a, b)]
}

type Entry = (String, (u32, u32, u32, u32, Vec<u8>));

fn compare_entries(kind: &str, a: Vec<Entry>, b: Vec<Entry>) -> Vec<String> {
    let x: BTreeMap<_, _> = a.into_iter().collect();
    let y: BTreeMap<_, _> = b.into_iter().collect();
    let mut out = Vec::new();
    for (name, ea) in &x {
        match y.get(name) {
            None => out.push(format!("{kind} entry {name} only in the first build")),
            Some(eb) if ea != eb => {
                let what = if ea.4 != eb.4 {
                    format!("contents: {}", first_difference(&ea.4, &eb.4))
                } else if ea.0 != eb.0 {
                    format!("mode {:o} vs {:o}", ea.0, eb.0)
                } else if (ea.1, ea.2) != (eb.1, eb.2) {
                    format!("owner {}:{} vs {}:{}", ea.1, ea.2, eb.1, eb.2)
                } else {
                    format!("mtime {} vs {}", ea.3, eb.3)
                };
                out.push(format!("{kind} entry {name}: {what}"));
            }
            Some(_) => {}
        }
    }
    for name in y.keys().filter(|n| !x.contains_key(*n)) {
        out.push(format!("{kind} entry {name} only in the second build"));
    }
    if out.is_empty() {
        out.push(format!(
            "{kind} entries are equal; the order or padding differs"
        ));
    }
    out
}

fn gunzip(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

fn tar_entries(data: &[u8]) -> Option<Vec<Entry>> {
    if data.len() < 512 || &data[257..262] != b"ustar" {
        return None;
    }
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(data);
    for e in archive.entries().ok()? {
        let mut e = e.ok()?;
        let h = e.header();
        let meta = (
            h.mode().ok()?,
            h.uid().ok()? as u32,
            h.gid().ok()? as u32,
            h.mtime().ok()? as u32,
        );
        let name = e.path().ok()?.display().to_string();
        let mut body = Vec::new();
        e.read_to_end(&mut body).ok()?;
        out.push((name, (meta.0, meta.1, meta.2, meta.3, body)));
    }
    Some(out)
}

/// The first differing byte, with the ELF section it falls in when there is one.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let mut s = format!(
        "first difference at byte {at:#x} (sizes {} and {})",
        a.len(),
        b.len()
    );
    if let Ok(elf) = goblin::elf::Elf::parse(a) {
        for sh in &elf.section_headers {
            let range = sh.sh_offset..sh.sh_offset + sh.sh_size;
            if sh.sh_type != goblin::elf::section_header::SHT_NOBITS && range.contains(&(at as u64))
            {
                let name = elf.shdr_strtab.get_at(sh.sh_name).unwrap_or("?");
                s += &format!(", in ELF section {name}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use stubdoms_archive::{Format, Tree};

    fn tree(files: &[(&str, &str, u32)]) -> Tree {
        let mut t = Tree::new();
        for (p, d, m) in files {
            t.add_file(p, d.as_bytes().to_vec(), *m).unwrap();
        }
        t
    }

    #[test]
    fn explains_differences_inside_archives() {
        let a = tree(&[("bin/a", "same", 0o755), ("etc/x", "one", 0o644)]);
        let b = tree(&[
            ("bin/a", "same", 0o755),
            ("etc/x", "two", 0o644),
            ("new", "", 0o644),
        ]);
        let c = tree(&[("bin/a", "same", 0o700), ("etc/x", "one", 0o644)]);
        let cases: Vec<(Format, &Tree, &Tree, u64, Vec<&str>)> = vec![
            (Format::CpioGz, &a, &b, 1, vec![
                "inside gzip: cpio entry etc/x: contents: first difference at byte 0x0 (sizes 3 and 3)",
                "inside gzip: cpio entry new only in the second build",
            ]),
            (Format::Cpio, &a, &c, 1, vec!["cpio entry bin/a: mode 100755 vs 100700"]),
            (Format::Cpio, &a, &a, 2, vec!["cpio entry bin: mtime 1 vs 2", "cpio entry bin/a: mtime 1 vs 2", "cpio entry etc: mtime 1 vs 2", "cpio entry etc/x: mtime 1 vs 2"]),
            (Format::TarGz, &a, &c, 1, vec!["inside gzip: tar entry bin/a: mode 755 vs 700"]),
        ];
        for (fmt, x, y, mtime_b, want) in cases {
            let bx = x.to_bytes(fmt, 1).unwrap();
            let by = y.to_bytes(fmt, mtime_b).unwrap();
            assert_eq!(explain(&bx, &by), want, "{fmt:?}");
        }
        assert_eq!(
            explain(b"abcdef", b"abXdef"),
            ["first difference at byte 0x2 (sizes 6 and 6)"]
        );
    }
}
