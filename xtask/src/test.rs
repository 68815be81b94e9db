//! `cargo xtask test`: everything CI checks, in the order that fails fastest: formatting,
//! clippy, the workspace tests (with the pinned Xen headers for the ABI check), then the
//! boot tests of every recipe.

use anyhow::{bail, Context, Result};

use crate::cache::Cache;
use crate::ui;
use crate::workspace::Workspace;

/// Payloads quick enough to build twice on every test run (`cargo xtask repro` checks all).
const FAST: [&str; 2] = ["rust-stubdom", "c-stubdom"];

/// The distribution set whose source set every test run rebuilds the images from: the one
/// of the fast payloads.
const REBUILT_SET: &str = "xen-stubdom-examples";

pub fn run(ws: &Workspace) -> Result<()> {
    let mut phases = Phases::default();
    let host_before = host_packages()?;
    let cache = Cache::open()?;
    let (sandbox_checks, root, env_checks) = phases.run("build environment checks", || {
        let sandbox_checks = crate::sandbox::check(ws)?;
        let root = crate::buildenv::fetched_root(ws, &cache, crate::buildenv::BUILD, false)?;
        let env_checks = build_env_checks(&root)?;
        Ok((sandbox_checks, root, env_checks))
    })?;
    let lints = phases.run("lints", || lint(ws, &cache, &root))?;
    phases.run("workspace tests", || {
        let mut env = tool_links(ws, &root)?;
        // The ABI crate is checked against the Xen headers QEMU is compiled against, with the
        // build environment's compiler (and its arm64 cross compiler for the aarch64 layout).
        env.push(("XEN_ABI_CC".into(), "stubdoms-cc".into()));
        env.push((
            "XEN_ABI_AARCH64_CC".into(),
            "stubdoms-aarch64-linux-gnu-gcc".into(),
        ));
        env.push((
            "XEN_INCLUDE_DIR".into(),
            root.dir.join("usr/include").display().to_string(),
        ));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cargo(ws, &["test", "--workspace"], &env, "workspace tests")
    })?;
    ui::step("boot tests");
    let boots = phases.run("boot tests (images built first)", || {
        crate::boot::run(
            ws,
            &[],
            &crate::boot::Flags {
                variant: None,
                machine: None,
                keep: false,
                offline: false,
                baselines: false,
            },
        )
    })?;
    ui::step("the flake, evaluated by the pinned Nix against a stand-in for nixpkgs");
    let flake = phases.run("flake evaluation", || crate::nixeval::check(ws, &cache))?;
    ui::step("template: new-stubdom in a copy of the workspace, then build and boot-test it");
    phases.run("template", || template(ws))?;
    ui::step("distribution packages: lintian, rpmlint, dpkg --root, the SBOMs");
    let packages = phases.run("package checks", || crate::dist::check(ws, &cache))?;
    ui::step("corresponding source: the examples' source set, and the images rebuilt offline from it alone");
    let rebuilt = phases.run("source set rebuild", || {
        let flags = crate::dist::Flags::default();
        let dirs = crate::dist::sources::write(ws, &[REBUILT_SET.to_string()], &flags)?;
        let dir = dirs.first().context("no source set written")?;
        crate::dist::sources::rebuild(ws, dir)
    })?;
    // The machine whose Xen is compiled (x86_32) is left to `cargo xtask repro`: building
    // that hypervisor twice from scratch would add five minutes to every run.
    ui::step("reproducibility of the fast payloads and the machines assembled from packages");
    let identical = phases.run("reproducibility", || {
        crate::repro::run(
            ws,
            &FAST.map(String::from),
            crate::repro::Machines::Assembled,
        )
    })?;
    ui::step("host: package state and apt sources unchanged by the run");
    if host_packages()? != host_before {
        bail!("the host's dpkg status or apt sources changed during the test run: something installed packages or edited apt's configuration");
    }
    phases.print();
    // The host check, the sandbox and build environment checks, the lints, the workspace
    // tests, each boot test, the template check, the package checks, the source set's
    // rebuild, each artifact found identical: every one of them a check that ran and passed.
    println!(
        "checks: {} passed, 0 failed",
        1 + sandbox_checks
            + env_checks
            + lints
            + 1
            + boots.len()
            + flake
            + 1
            + packages
            + rebuilt
            + identical
    );
    Ok(())
}

/// How long each part of `test` took, printed at its end: where a run's time goes.
#[derive(Default)]
struct Phases(Vec<(&'static str, std::time::Duration)>);

impl Phases {
    fn run<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let out = f();
        self.0.push((name, started.elapsed()));
        out
    }

    fn print(&self) {
        println!("time per part:");
        for (name, d) in &self.0 {
            let s = d.as_secs();
            println!("  {name:<34} {:>3}:{:02}", s / 60, s % 60);
        }
    }
}

/// `cargo xtask lint`: the formatting check, clippy of the host code (the host's toolchain)
/// and of the runtime's image configuration for each image target (the build environment's
/// toolchain). Returns how many checks ran.
pub fn lint(ws: &Workspace, cache: &Cache, root: &crate::buildenv::Root) -> Result<usize> {
    cargo(
        ws,
        &["fmt", "--all", "--check"],
        &[],
        "formatting (run `cargo fmt --all`)",
    )?;
    cargo(
        ws,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
        "clippy",
    )?;
    Ok(2 + crate::builders::runtime::clippy(ws, cache, root)?)
}

/// The template works for a team that uses it: in a throw-away copy of the workspace,
/// `new-stubdom` makes a stub domain that builds and passes its boot tests.
fn template(ws: &Workspace) -> Result<()> {
    let copy = ws.target.join("template-check");
    crate::fsx::remove_dir_if_exists(&copy)?;
    crate::workspace::copy_to(&ws.root, &copy)?;
    let me = std::env::current_exe().context("finding the xtask binary")?;
    let target = copy.join("target");
    for args in [
        &["new-stubdom", "team-demo"][..],
        &["build", "team-demo"],
        &["boot-test", "team-demo"],
    ] {
        let status = std::process::Command::new(&me)
            .args(args)
            .current_dir(&copy)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .with_context(|| format!("running xtask {}", args.join(" ")))?;
        if !status.success() {
            bail!(
                "template check: `cargo xtask {}` failed in {}",
                args.join(" "),
                copy.display()
            );
        }
    }
    crate::fsx::remove_dir_if_exists(&copy)?;
    Ok(())
}

/// A hash of what says which packages the host has and where they come from (dpkg's
/// status and apt's sources), where those exist: a run must leave them as they were.
fn host_packages() -> Result<String> {
    let mut k = crate::key::Key::new("host-packages");
    let mut files = vec![
        std::path::PathBuf::from("/var/lib/dpkg/status"),
        "/etc/apt/sources.list".into(),
    ];
    if let Ok(dir) = fs_err::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        if let Ok(bytes) = fs_err::read(&f) {
            k.field(&f.display().to_string(), bytes);
        }
    }
    Ok(k.finish())
}

/// Checks on the real build environment, beside the sandbox's own self-test in a busybox
/// root: a step sees none of the host's tools or files, and an unprivileged user compiles
/// in it (as uid 65534 when the test runs as root, in a hard-linked copy of the root it can
/// reach; otherwise the whole run is the unprivileged case). Returns how many passed.
fn build_env_checks(root: &crate::buildenv::Root) -> Result<usize> {
    ui::step("build environment: a step sees no host tool or file");
    let marker = std::env::temp_dir().join(format!("stubdoms-host-marker-{}", std::process::id()));
    fs_err::write(&marker, b"host").with_context(|| format!("writing {}", marker.display()))?;
    let probe = format!(
        "for t in apt-get rustup dpkg-buildpackage; do command -v $t; done; \
         for f in /root/.cargo /root/.rustup /etc/apt/sources.list.d {}; do test -e $f && echo $f; done; \
         command -v gcc >/dev/null || echo no-gcc; exit 0",
        marker.display()
    );
    let out = root.step().command("sh")?.args(["-c", &probe]).output()?;
    let _ = fs_err::remove_file(&marker);
    let seen = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !seen.trim().is_empty() {
        bail!(
            "a step in {} sees what it must not (or lacks gcc): `{}` {}",
            root.name,
            seen.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if !rustix::process::geteuid().is_root() {
        ui::step("build environment: this whole run is unprivileged (user namespaces)");
        return Ok(1);
    }
    ui::step("build environment: uid 65534 compiles in a copy of it (user namespaces)");
    let work = std::env::temp_dir().join(format!("stubdoms-unprivileged-{}", std::process::id()));
    crate::fsx::remove_dir_if_exists(&work)?;
    let result = unprivileged_compile(root, &work);
    crate::fsx::remove_dir_if_exists(&work)?;
    result?;
    Ok(2)
}

fn unprivileged_compile(root: &crate::buildenv::Root, work: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    link_tree(&root.dir, &work.join("root"))?;
    let exe = work.join("xtask");
    fs_err::copy(std::env::current_exe()?, &exe)?;
    let (src, out) = (work.join("src"), work.join("out"));
    fs_err::create_dir_all(&src)?;
    fs_err::create_dir_all(&out)?;
    fs_err::write(src.join("hello.c"), "int hello(void) { return 42; }\n")?;
    for d in [work, &src] {
        fs_err::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    std::os::unix::fs::chown(&out, Some(NOBODY), Some(NOBODY))?;
    let sandbox = crate::sandbox::Sandbox {
        root: work.join("root"),
        writable_root: false,
        binds: vec![
            crate::sandbox::Bind {
                host: src.clone(),
                inside: "/src".into(),
                writable: false,
            },
            crate::sandbox::Bind {
                host: out.clone(),
                inside: "/out".into(),
                writable: true,
            },
        ],
        cwd: "/src".into(),
        env: vec![],
    };
    let mut cc = sandbox.command_via(&exe, "cc")?;
    // std drops the supplementary groups when root sets a uid.
    cc.args(["-O2", "-c", "hello.c", "-o", "/out/hello.o"])
        .uid(NOBODY)
        .gid(NOBODY);
    let o = cc.output().context("running cc as uid 65534")?;
    let obj = fs_err::read(out.join("hello.o")).unwrap_or_default();
    if !o.status.success() || !obj.starts_with(b"\x7fELF") {
        bail!(
            "uid {NOBODY} could not compile in the build environment ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// A copy of the folder `from` at `to` made of hard links (same file system: the cache's).
fn link_tree(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    fs_err::create_dir_all(to)?;
    for entry in fs_err::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ft = entry.file_type()?;
        if ft.is_dir() {
            link_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&src)?, &dst)?;
        } else {
            fs_err::hard_link(&src, &dst)
                .with_context(|| format!("linking {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// The external tools the workspace tests run (archive read-back, the ABI layout test's
/// compilers). They come from the build environment, never the host: `cargo test` gets a
/// `PATH` that starts with links of these names to the driver, which runs the tool of that
/// name in the build environment (see [`tool_shim`]); a `stubdoms-` prefix is dropped. The
/// compiler is `stubdoms-cc`, not `cc`: rustc links the host's test binaries with the host
/// toolchain's `cc`. `stubdoms-aarch64-linux-gnu-gcc` is the pinned arm64 cross compiler.
const TEST_TOOLS: &[&str] = &[
    "stubdoms-cc",
    "stubdoms-aarch64-linux-gnu-gcc",
    "cpio",
    "tar",
    "gzip",
    "xz",
    "zstd",
    "bzip2",
    "dpkg-deb",
];

/// Set on `cargo test` to the build environment's root folder, for [`tool_shim`].
const SHIM_ROOT_ENV: &str = "STUBDOMS_TOOL_ROOT";

/// The folder of tool links for the workspace tests, and the environment to run them with.
fn tool_links(ws: &Workspace, root: &crate::buildenv::Root) -> Result<Vec<(String, String)>> {
    let dir = ws.target.join("test-tools");
    crate::fsx::remove_dir_if_exists(&dir)?;
    fs_err::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let me = std::env::current_exe().context("finding the xtask binary")?;
    for tool in TEST_TOOLS {
        std::os::unix::fs::symlink(&me, dir.join(tool))
            .with_context(|| format!("linking {}", dir.join(tool).display()))?;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir];
    paths.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(paths).context("PATH")?;
    Ok(vec![
        ("PATH".into(), path.to_string_lossy().into_owned()),
        (SHIM_ROOT_ENV.into(), root.dir.display().to_string()),
    ])
}

/// When the driver runs as one of [`TEST_TOOLS`] (a link made by [`tool_links`]), runs that
/// tool in the build environment with the host's `/tmp` (the tests' scratch space) mounted,
/// and returns its exit code.
pub fn tool_shim(args: &[std::ffi::OsString]) -> Option<i32> {
    let name = std::path::Path::new(args.first()?).file_name()?.to_str()?;
    if !TEST_TOOLS.contains(&name) {
        return None;
    }
    let Some(root) = std::env::var_os(SHIM_ROOT_ENV) else {
        eprintln!("error: {name}: this is the stubdoms driver standing in for the build environment's `{name}`, but {SHIM_ROOT_ENV} is not set");
        return Some(127);
    };
    let tmp = std::env::temp_dir();
    let cwd = std::env::current_dir()
        .ok()
        .filter(|d| d.starts_with(&tmp))
        .map_or("/".to_string(), |d| {
            format!("/tmp/{}", d.strip_prefix(&tmp).unwrap_or(&d).display())
        });
    let env: Vec<(String, String)> = ["TZ", "LC_ALL", "SOURCE_DATE_EPOCH"]
        .iter()
        .filter_map(|v| std::env::var(v).ok().map(|val| (v.to_string(), val)))
        .collect();
    // Paths into the root (the Xen headers the ABI test names) become the root's own paths.
    let prefix = std::path::PathBuf::from(&root);
    let tool_args: Vec<std::ffi::OsString> = args[1..]
        .iter()
        .map(|a| match std::path::Path::new(a).strip_prefix(&prefix) {
            Ok(rel) => std::path::Path::new("/").join(rel).into_os_string(),
            Err(_) => a.clone(),
        })
        .collect();
    let program = name.strip_prefix("stubdoms-").unwrap_or(name);
    let sandbox = crate::sandbox::Sandbox {
        root: root.into(),
        writable_root: false,
        binds: vec![crate::sandbox::Bind {
            host: tmp,
            inside: "/tmp".into(),
            writable: true,
        }],
        cwd,
        env,
    };
    let status = sandbox
        .command(program)
        .and_then(|mut c| Ok(c.args(&tool_args).status()?));
    match status {
        Ok(s) => Some(s.code().unwrap_or(128)),
        Err(e) => {
            eprintln!("error: {name} (build environment): {e:#}");
            Some(127)
        }
    }
}

fn cargo(ws: &Workspace, args: &[&str], env: &[(&str, &str)], what: &str) -> Result<()> {
    ui::step(&format!("cargo {}", args.join(" ")));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(&ws.root)
        .status()
        .with_context(|| format!("running cargo {}", args[0]))?;
    if !status.success() {
        bail!("{what} failed");
    }
    Ok(())
}
