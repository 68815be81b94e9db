//! Runs one build step inside a build-environment root, seeing only what it declares: the
//! root folder becomes `/` (read-only for build steps), the declared binds appear at their
//! places, `/proc` and `/dev` come from the host, `/tmp` is a fresh tmpfs, there is no
//! network but a loopback, and the environment is exactly the declared one.
//!
//! [`Sandbox::command`] returns a command that starts this xtask binary again in a hidden
//! mode (`__sandbox <spec> -- <program> <args>...`); `main.rs` hands that mode to [`enter`]
//! before anything else runs, so the process is still single-threaded when it unshares its
//! namespaces: user, mount and network. The caller's uid becomes uid 0 inside (root stays
//! root; files of other owners read as the overflow id), so the same mounts work with and
//! without privileges. Either way the step has no
//! rights over the host's processes: `/proc/<pid>/root` of a host process is refused.
//!
//! The sandbox keeps honest tools hermetic; it is not a security boundary against a hostile
//! one. There is no PID namespace, so `/proc` still lists the host's processes.

use std::convert::Infallible;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, ensure, Context, Result};
use rustix::fs::StatVfsMountFlags;
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::thread::UnshareFlags;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::fetch;
use crate::ui;
use crate::workspace::Workspace;

/// The hidden first argument that runs a program inside a sandbox (see [`enter`]).
pub const ENTER: &str = "__sandbox";
/// The hidden first argument that only checks that this host can make a sandbox.
pub const PROBE: &str = "__sandbox-probe";

/// Variables every program gets unless the sandbox declares them.
const DEFAULT_ENV: [(&str, &str); 4] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
    ("HOME", "/tmp"),
    ("LC_ALL", "C"),
    ("TZ", "UTC"),
];

/// A host file or folder shown inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub host: PathBuf,
    /// Absolute path inside the sandbox.
    pub inside: String,
    pub writable: bool,
}

/// Everything a build step may see. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// The root folder; it becomes `/`.
    pub root: PathBuf,
    /// Mount the root writable (only while assembling a root, e.g. to run ldconfig in it);
    /// missing mount points are then created instead of being errors.
    pub writable_root: bool,
    pub binds: Vec<Bind>,
    /// Working directory inside.
    pub cwd: String,
    /// The whole environment of the program; nothing is inherited from the host. PATH, HOME,
    /// LC_ALL and TZ get defaults when absent.
    pub env: Vec<(String, String)>,
}

/// How this host makes sandboxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Root: mount and network namespaces only.
    Root,
    /// Any other user: a user namespace first.
    Unprivileged,
}

impl Mode {
    fn key(self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::Unprivileged => "unprivileged",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::Root => "root: user and mount namespaces",
            Mode::Unprivileged => "unprivileged: user namespaces",
        }
    }
}

impl Sandbox {
    /// A command that runs `program` inside the sandbox; append its arguments with
    /// `.arg`/`.args`, set stdin/stdout/stderr, then spawn it. The program's environment is
    /// [`Sandbox::env`]: `.env()` on the returned command does not reach it.
    pub fn command(&self, program: &str) -> Result<Command> {
        let exe = std::env::current_exe().context("finding the xtask binary")?;
        self.command_via(&exe, program)
    }

    /// [`Sandbox::command`] with another copy of the xtask binary (the self-test runs one
    /// that an unprivileged user can read).
    pub fn command_via(&self, exe: &Path, program: &str) -> Result<Command> {
        self.validate()?;
        let spec = serde_json::to_string(self).context("serialising the sandbox")?;
        let mut cmd = Command::new(exe);
        cmd.env_clear().arg(ENTER).arg(spec).arg("--").arg(program);
        Ok(cmd)
    }

    /// The program's whole environment: the declared variables, then the defaults that
    /// were not declared.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (key, value) in DEFAULT_ENV {
            if !env.iter().any(|(k, _)| k == key) {
                env.push((key.to_string(), value.to_string()));
            }
        }
        env
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.root.is_absolute(),
            "the root {} is not an absolute path",
            self.root.display()
        );
        inside_parts(&self.cwd).context("the working directory")?;
        for bind in &self.binds {
            inside_parts(&bind.inside)
                .with_context(|| format!("the bind of {}", bind.host.display()))?;
        }
        for (key, _) in &self.env {
            ensure!(
                !key.is_empty() && !key.contains('='),
                "environment variable name `{key}` is not valid"
            );
        }
        Ok(())
    }

    /// Mounts everything below the root (steps 2 to 5 of [`enter`]).
    fn assemble(&self) -> Result<()> {
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .context("making the mounts of / private")?;
        let root = &self.root;
        ensure!(root.is_dir(), "the root {} is not a folder", root.display());
        rustix::mount::mount_bind_recursive(root, root)
            .with_context(|| format!("binding the root {} onto itself", root.display()))?;
        for system in ["/proc", "/dev"] {
            let at = self.mount_point(system, true)?;
            rustix::mount::mount_bind_recursive(system, &at)
                .with_context(|| format!("binding the host's {system} at {}", at.display()))?;
        }
        let tmp = self.mount_point("/tmp", true)?;
        rustix::mount::mount(
            "tmpfs",
            &tmp,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            c"mode=1777",
        )
        .with_context(|| format!("mounting a tmpfs at {}", tmp.display()))?;
        for bind in &self.binds {
            let meta = fs::metadata(&bind.host)
                .with_context(|| format!("bind source {}", bind.host.display()))?;
            let at = self.mount_point(&bind.inside, meta.is_dir())?;
            rustix::mount::mount_bind_recursive(&bind.host, &at)
                .with_context(|| format!("binding {} at {}", bind.host.display(), bind.inside))?;
            if !bind.writable {
                remount_read_only(&at)
                    .with_context(|| format!("making the bind at {} read-only", bind.inside))?;
            }
        }
        if !self.writable_root {
            remount_read_only(root)
                .with_context(|| format!("making the root {} read-only", root.display()))?;
        }
        Ok(())
    }

    /// The host path of the mount point `inside`, checked to lie in the root without
    /// passing through a symlink (which would be followed on the host). A missing mount
    /// point is an error, unless the root is writable: then it is made (a folder, or an
    /// empty file when a file is bound there).
    fn mount_point(&self, inside: &str, dir: bool) -> Result<PathBuf> {
        let parts = inside_parts(inside)?;
        let mut path = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let last = i + 1 == parts.len();
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => bail!(
                    "the mount point {inside} goes through the symlink {} in the root",
                    path.display()
                ),
                Ok(meta) if last && meta.is_dir() != dir => bail!(
                    "the mount point {inside} is a {} in the root but a {} is bound there",
                    if meta.is_dir() { "folder" } else { "file" },
                    if dir { "folder" } else { "file" }
                ),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.writable_root => {
                    if last && !dir {
                        fs::File::create(&path).map(drop)
                    } else {
                        fs::create_dir(&path)
                    }
                    .with_context(|| format!("creating the mount point {}", path.display()))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                    "the root {} has no mount point {inside} (the root assembly must create it)",
                    self.root.display()
                ),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        Ok(path)
    }
}

/// The components of an absolute path inside the sandbox; `..` and `.` are refused, so a
/// mount point cannot leave the root.
fn inside_parts(inside: &str) -> Result<Vec<&str>> {
    ensure!(
        inside.starts_with('/'),
        "`{inside}` is not an absolute path"
    );
    let mut parts = Vec::new();
    for c in Path::new(inside).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(part) => parts.push(
                part.to_str()
                    .with_context(|| format!("`{inside}` is not UTF-8"))?,
            ),
            _ => bail!("`{inside}` has a `.` or `..` component"),
        }
    }
    Ok(parts)
}

/// The mount flags a read-only remount must repeat so the kernel keeps the source mount's
/// flags. In a user namespace the copied mounts are locked: changing nosuid, nodev, noexec
/// or the atime mode is refused with EPERM. statvfs reports no flag for strictatime, so a
/// mount that is neither noatime nor relatime is strictatime (a remount without an atime
/// flag would ask for relatime).
fn kept_flags(statvfs: StatVfsMountFlags) -> MountFlags {
    const SAME: [(StatVfsMountFlags, MountFlags); 6] = [
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ];
    let mut flags = MountFlags::empty();
    for (st, ms) in SAME {
        if statvfs.contains(st) {
            flags |= ms;
        }
    }
    if !statvfs.intersects(StatVfsMountFlags::NOATIME | StatVfsMountFlags::RELATIME) {
        flags |= MountFlags::STRICTATIME;
    }
    flags
}

/// Makes the mount at `path` read-only (that mount only, not the mounts below it).
fn remount_read_only(path: &Path) -> Result<()> {
    let st = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    let flags = MountFlags::BIND | MountFlags::RDONLY | kept_flags(st.f_flag);
    rustix::mount::mount_remount(path, flags, "")
        .with_context(|| format!("remounting {} read-only", path.display()))
}

/// Finds `program` the way exec would, through the folders of `path` (a PATH value), in
/// the file tree under `root`; returns its path as seen with `root` as `/`. A name with a
/// slash is taken as it is. Symlinks are followed on the current `/`, so for a root that
/// is not `/` yet, only plain files are found reliably: [`enter`] calls it after chroot.
pub fn find_program(root: &Path, path: &str, program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    if program.is_empty() {
        return None;
    }
    path.split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(program))
        .find(|inside| {
            let host = root.join(inside.strip_prefix("/").unwrap_or(inside));
            fs::metadata(host).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Unshares the namespaces of a sandbox (step 1 of [`enter`]); the process must be
/// single-threaded.
fn isolate() -> Result<Mode> {
    let root = rustix::process::geteuid().is_root();
    // A user namespace in both modes (as root, uid 0 stays 0): it also keeps the step from
    // reaching the host through /proc/<pid>/root of a host process (that needs ptrace
    // rights the new namespace lacks).
    let flags = UnshareFlags::NEWUSER | UnshareFlags::NEWNS | UnshareFlags::NEWNET;
    // Read before unsharing: inside the new user namespace they read as the overflow id.
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    // SAFETY: the flags do not include CLONE_FILES, the only flag the rustix contract is
    // about (threads seeing descriptors of an unshared table); callers run this before
    // any other thread exists, which CLONE_NEWUSER requires anyway.
    let unshared = unsafe { rustix::thread::unshare_unsafe(flags) };
    if let Err(e) = unshared {
        if root {
            bail!("unsharing the user, mount and network namespaces failed ({e}); is this a container without CAP_SYS_ADMIN, or are user namespaces off (user.max_user_namespaces=0)?");
        }
        if [
            rustix::io::Errno::PERM,
            rustix::io::Errno::INVAL,
            rustix::io::Errno::NOSPC,
        ]
        .contains(&e)
        {
            bail!(
                "this host does not let unprivileged users make user namespaces (unshare: {e}); \
                 enable them with `sysctl -w kernel.unprivileged_userns_clone=1` (Debian and \
                 Ubuntu kernels), `sysctl -w user.max_user_namespaces=15000`, or \
                 `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (AppArmor), or run \
                 as root (a chroot or a container's seccomp profile can also forbid them)"
            );
        }
        bail!("unsharing the user, mount and network namespaces failed: {e}");
    }
    // A process can map only its own ids in a namespace it made (its rights in the parent
    // namespace are gone), so root maps 0 to 0 and other ids read as the overflow id.
    for (file, text) in [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("0 {uid} 1")),
        ("/proc/self/gid_map", format!("0 {gid} 1")),
    ] {
        fs::write(file, &text).with_context(|| format!("writing `{text}` to {file}"))?;
    }
    Ok(if root { Mode::Root } else { Mode::Unprivileged })
}

/// The `__sandbox <spec> -- <program> <args>...` mode: makes the sandbox and execs the
/// program in it. Never returns: on failure it prints `error: sandbox: ...` and exits 127.
pub fn enter(args: &[OsString]) -> ! {
    let Err(e) = run_inside(args);
    eprintln!("error: sandbox: {e:#}");
    std::process::exit(127)
}

fn run_inside(args: &[OsString]) -> Result<Infallible> {
    let [spec, dashes, program, rest @ ..] = args else {
        bail!("usage: xtask {ENTER} <spec> -- <program> [args...]");
    };
    ensure!(
        dashes == "--",
        "usage: xtask {ENTER} <spec> -- <program> [args...]"
    );
    let program = program.to_str().context("the program name is not UTF-8")?;
    let spec = spec.to_str().context("the sandbox spec is not UTF-8")?;
    let sandbox: Sandbox = serde_json::from_str(spec).context("reading the sandbox spec")?;
    sandbox.validate()?;
    isolate()?;
    sandbox.assemble()?;
    rustix::process::chroot(&sandbox.root)
        .with_context(|| format!("chroot to {}", sandbox.root.display()))?;
    rustix::process::chdir(sandbox.cwd.as_str())
        .with_context(|| format!("entering the working directory {}", sandbox.cwd))?;
    let env = sandbox.environment();
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("", |(_, v)| v.as_str());
    let Some(exe) = find_program(Path::new("/"), path, program) else {
        bail!("{program} is not in the build environment (PATH={path})");
    };
    let e = Command::new(&exe)
        .arg0(program)
        .args(rest)
        .env_clear()
        .envs(env)
        .exec();
    Err(e).with_context(|| format!("running {}", exe.display()))
}

/// The `__sandbox-probe` mode: only unshares (step 1 of [`enter`]), prints the mode and
/// exits 0, or prints the error and exits 127.
pub fn probe_main() -> ! {
    match isolate() {
        Ok(mode) => {
            println!("{}", mode.key());
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("error: sandbox: {e:#}");
            std::process::exit(127)
        }
    }
}

/// Whether this host can run sandboxes, and how: "root: mount namespaces" or
/// "unprivileged: user namespaces". Otherwise the error says what to change.
pub fn probe() -> Result<&'static str> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let out = Command::new(&exe)
        .arg(PROBE)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {PROBE}", exe.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        for mode in [Mode::Root, Mode::Unprivileged] {
            if said.trim() == mode.key() {
                return Ok(mode.describe());
            }
        }
        bail!("the sandbox probe answered `{}`", said.trim());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim();
    bail!(
        "{}",
        err.strip_prefix("error: sandbox: ")
            .unwrap_or(if err.is_empty() {
                "the sandbox probe failed without a message"
            } else {
                err
            })
    )
}

/// What [`self_test`] found: the checks that passed, and what it could not check.
#[derive(Debug, Default)]
pub struct SelfTest {
    pub passed: Vec<String>,
    pub notes: Vec<String>,
}

/// The uid and gid the self-test runs the unprivileged mode as, when started as root.
const NOBODY: u32 = 65534;

/// busybox applets linked into the test root.
const APPLETS: [&str; 11] = [
    "sh", "ls", "cat", "test", "touch", "id", "env", "echo", "pwd", "mkdir", "rm",
];

/// Top-level folders the root assembly makes in every root.
const TOP_LEVEL: [&str; 9] = [
    "proc", "dev", "tmp", "src", "build", "out", "cache", "work", "usr/bin",
];

/// Checks the sandbox for real: builds a tiny root in `work` from the pinned busybox-static
/// package and runs programs in it, in both modes when run as root (the unprivileged one
/// as uid 65534, with a copy of this binary in `work`), else in the unprivileged mode only
/// (noted). `work` is emptied first; uid 65534 must be able to reach it.
pub fn self_test(work: &Path, busybox_deb: &Path) -> Result<SelfTest> {
    crate::fsx::remove_dir_if_exists(work)?;
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let work = work
        .canonicalize()
        .with_context(|| format!("resolving {}", work.display()))?;
    let mut report = SelfTest::default();
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    if rustix::process::geteuid().is_root() {
        let dir = work.join("root-mode");
        let runner = Runner {
            exe: None,
            user: None,
            label: "root mode",
        };
        runner.check_all(&dir, busybox_deb, &mut report)?;

        reachable_by_others(&work)?;
        let dir = work.join("unprivileged");
        let copy = work.join("xtask");
        fs::copy(&exe, &copy)
            .with_context(|| format!("copying the xtask binary to {}", copy.display()))?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(&work, fs::Permissions::from_mode(0o755))?;
        let runner = Runner {
            exe: Some(copy),
            user: Some(NOBODY),
            label: "unprivileged mode (uid 65534)",
        };
        runner.check_all(&dir, busybox_deb, &mut report)?;
    } else {
        let dir = work.join("unprivileged");
        let runner = Runner {
            exe: None,
            user: None,
            label: "unprivileged mode",
        };
        runner.check_all(&dir, busybox_deb, &mut report)?;
        report
            .notes
            .push("root mode not checked: not running as root".to_string());
    }
    Ok(report)
}

/// Fetches the pinned busybox-static, runs [`self_test`] in a temporary folder and
/// prints each check; returns how many passed.
pub fn check(ws: &Workspace) -> Result<usize> {
    ui::step(&format!(
        "sandbox: this host makes sandboxes as {}",
        probe()?
    ));
    let deb = test_busybox(ws)?;
    // In the temporary folder: uid 65534 must reach it, and the target folder may be under
    // a home folder it cannot enter.
    let work = std::env::temp_dir().join(format!("stubdoms-sandbox-check-{}", std::process::id()));
    let report = self_test(&work, &deb);
    let _ = crate::fsx::remove_dir_if_exists(&work);
    let report = report?;
    print_report(&report);
    Ok(report.passed.len())
}

pub fn print_report(report: &SelfTest) {
    for name in &report.passed {
        ui::step(&format!("sandbox: {name}"));
    }
    for note in &report.notes {
        ui::step(&format!("sandbox: note: {note}"));
    }
}

/// The pinned busybox-static package, fetched and verified.
pub fn test_busybox(ws: &Workspace) -> Result<PathBuf> {
    let cache = Cache::open()?;
    let blobs = ws.lock.resolve("busybox-static")?.blobs()?;
    fetch::ensure(&cache, &blobs, &fetch::Flags { offline: false })?;
    let blob = blobs
        .first()
        .context("busybox-static has no file in inputs.lock")?;
    cache.get(blob)
}

/// Every folder from `/` to `dir` must let others through, or uid 65534 cannot start the
/// binary copied there.
fn reachable_by_others(dir: &Path) -> Result<()> {
    for folder in dir.ancestors().skip(1) {
        let mode = fs::metadata(folder)
            .with_context(|| format!("reading {}", folder.display()))?
            .permissions()
            .mode();
        ensure!(
            mode & 0o001 != 0,
            "uid {NOBODY} cannot reach {} (mode {:o}): put the sandbox check's work folder elsewhere",
            folder.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// Makes the test root: busybox and its applet links, the top-level folders.
fn make_test_root(root: &Path, busybox_deb: &Path) -> Result<()> {
    stubdoms_archive::deb::extract_data(busybox_deb, root)
        .with_context(|| format!("unpacking {}", busybox_deb.display()))?;
    ensure!(
        root.join("bin/busybox").is_file(),
        "{} has no /bin/busybox",
        busybox_deb.display()
    );
    for applet in APPLETS {
        let link = root.join("bin").join(applet);
        std::os::unix::fs::symlink("busybox", &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    for dir in TOP_LEVEL {
        fs::create_dir_all(root.join(dir))?;
    }
    Ok(())
}

/// Hands a tree to `uid`, so that inside its user namespace it is owned by uid 0 and only
/// the mounts, not the permissions, decide what can be written.
fn chown_tree(path: &Path, uid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .with_context(|| format!("chown {}", path.display()))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

/// One named self-test check: an error says what went wrong.
type Check<'a> = (&'static str, Box<dyn Fn() -> Result<()> + 'a>);

/// Runs the checks in one mode.
struct Runner {
    /// A copy of the xtask binary to start the sandbox with, or `None` for
    /// [`Sandbox::command`]'s own (the current executable).
    exe: Option<PathBuf>,
    /// Start the sandbox as this uid and gid, without supplementary groups.
    user: Option<u32>,
    label: &'static str,
}

/// A variable set for the sandbox helper process, which must not reach the program.
const LEAK: &str = "STUBDOMS_SANDBOX_LEAK";

impl Runner {
    fn run(&self, sandbox: &Sandbox, program: &str, args: &[&str]) -> Result<Output> {
        let mut cmd = match &self.exe {
            Some(exe) => sandbox.command_via(exe, program)?,
            None => sandbox.command(program)?,
        };
        cmd.args(args).stdin(Stdio::null()).env(LEAK, "leaked");
        if let Some(id) = self.user {
            // std drops the supplementary groups (setgroups(0)) when root sets a uid.
            cmd.uid(id).gid(id);
        }
        cmd.output()
            .with_context(|| format!("running {program} in the sandbox"))
    }

    /// Runs `program` and returns its stdout; it must succeed.
    fn ok(&self, sandbox: &Sandbox, program: &str, args: &[&str]) -> Result<String> {
        let out = self.run(sandbox, program, args)?;
        ensure!(
            out.status.success(),
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `program`; it must fail and say `expected` on stderr.
    fn fails(&self, sandbox: &Sandbox, program: &str, args: &[&str], expected: &str) -> Result<()> {
        let out = self.run(sandbox, program, args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains(expected),
            "`{program} {}` should fail saying `{expected}`, but it {} with stderr `{}` and stdout `{}`",
            args.join(" "),
            out.status,
            stderr.trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
        Ok(())
    }

    fn check_all(&self, dir: &Path, busybox_deb: &Path, report: &mut SelfTest) -> Result<()> {
        let root = dir.join("root");
        let (src, build, out) = (dir.join("src"), dir.join("build"), dir.join("out"));
        fs::create_dir_all(dir)?;
        make_test_root(&root, busybox_deb)?;
        for folder in [&src, &build, &out] {
            fs::create_dir_all(folder)?;
        }
        fs::write(src.join("hello"), "hi\n")?;
        if let Some(uid) = self.user {
            chown_tree(dir, uid)?;
        }
        let bind = |host: &Path, inside: &str, writable| Bind {
            host: host.to_path_buf(),
            inside: inside.to_string(),
            writable,
        };
        let sandbox = Sandbox {
            root: root.clone(),
            writable_root: false,
            binds: vec![
                bind(&src, "/src", false),
                bind(&build, "/build", true),
                bind(&out, "/out", true),
            ],
            cwd: "/build".to_string(),
            env: vec![("STUBDOMS_DECLARED".to_string(), "yes".to_string())],
        };
        let host_home = std::env::var("HOME").unwrap_or_default();
        let exe = match &self.exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("finding the xtask binary")?,
        };
        let exe = exe.display().to_string();
        let dir_text = dir.display().to_string();
        let mut checks: Vec<Check<'_>> = vec![
            (
                "a program in the root runs and its output comes back",
                Box::new(|| {
                    let said = self.ok(&sandbox, "sh", &["-c", "echo ok"])?;
                    ensure!(said == "ok\n", "`sh -c 'echo ok'` printed `{said}`");
                    Ok(())
                }),
            ),
            (
                "the program starts in the declared working directory",
                Box::new(|| {
                    let said = self.ok(&sandbox, "pwd", &[])?;
                    ensure!(said == "/build\n", "pwd printed `{said}`, not /build");
                    Ok(())
                }),
            ),
            (
                "host files and tools outside the root are not visible",
                Box::new(|| {
                    let script = "for p in /root /usr/bin/apt-get /proc/1/root/usr/bin/apt-get \"$@\"; do \
                                  if test -e \"$p\"; then echo \"visible: $p\"; exit 1; fi; done; \
                                  for t in cargo gcc apt-get; do \
                                  if command -v \"$t\"; then echo \"visible: $t\"; exit 1; fi; done";
                    let mut args = vec!["-c", script, "sh", exe.as_str(), dir_text.as_str()];
                    if !matches!(host_home.as_str(), "" | "/" | "/tmp") {
                        args.push(host_home.as_str());
                    }
                    let out = self.run(&sandbox, "sh", &args)?;
                    ensure!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stdout).trim()
                    );
                    Ok(())
                }),
            ),
            (
                "a program that is not in the root is named",
                Box::new(|| {
                    self.fails(
                        &sandbox,
                        "cargo",
                        &[],
                        "cargo is not in the build environment",
                    )
                }),
            ),
            (
                "the root is read-only",
                Box::new(|| self.fails(&sandbox, "touch", &["/x"], "Read-only file system")),
            ),
            (
                "a writable bind takes writes, which reach the host",
                Box::new(|| {
                    self.ok(&sandbox, "sh", &["-c", "echo written > /out/file"])?;
                    let got = fs::read_to_string(out.join("file"))
                        .context("the file written to /out is not on the host")?;
                    ensure!(
                        got == "written\n",
                        "the host sees `{got}` in the file written to /out"
                    );
                    Ok(())
                }),
            ),
            (
                "a read-only bind is readable, not writable",
                Box::new(|| {
                    let said = self.ok(&sandbox, "cat", &["/src/hello"])?;
                    ensure!(said == "hi\n", "/src/hello reads `{said}`");
                    self.fails(&sandbox, "touch", &["/src/x"], "Read-only file system")
                }),
            ),
            (
                "the environment is exactly the declared one",
                Box::new(|| {
                    let said = self.ok(&sandbox, "env", &[])?;
                    let mut got: Vec<&str> = said.lines().collect();
                    got.sort_unstable();
                    let want: Vec<String> = sandbox
                        .environment()
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
                    want.sort_unstable();
                    ensure!(
                        got == want,
                        "the environment inside is {got:?}, not {want:?}"
                    );
                    Ok(())
                }),
            ),
            (
                "there is no network but the loopback",
                Box::new(|| {
                    let said = self.ok(&sandbox, "cat", &["/proc/net/dev"])?;
                    let names: Vec<&str> = said
                        .lines()
                        .skip(2)
                        .filter_map(|l| l.split(':').next())
                        .map(str::trim)
                        .collect();
                    ensure!(
                        names == ["lo"],
                        "the network interfaces inside are {names:?}"
                    );
                    Ok(())
                }),
            ),
            (
                "a missing mount point is named",
                Box::new(|| {
                    let mut missing = sandbox.clone();
                    missing.binds.push(bind(&src, "/nowhere", false));
                    self.fails(&missing, "sh", &["-c", "true"], "no mount point /nowhere")
                }),
            ),
            (
                "a writable root takes writes and gets its missing mount points",
                Box::new(|| {
                    let mut open = sandbox.clone();
                    open.writable_root = true;
                    open.binds
                        .push(bind(&src.join("hello"), "/new/hello", false));
                    self.ok(
                        &open,
                        "sh",
                        &["-c", "touch /x && cat /new/hello >/dev/null"],
                    )?;
                    ensure!(
                        root.join("x").is_file(),
                        "/x written in a writable root is not in it"
                    );
                    ensure!(
                        root.join("new/hello").is_file(),
                        "the file mount point /new/hello was not made"
                    );
                    Ok(())
                }),
            ),
        ];
        if self.user.is_some() {
            checks.push((
                "the program has no supplementary groups",
                Box::new(|| {
                    let said = self.ok(&sandbox, "cat", &["/proc/self/status"])?;
                    let groups = said
                        .lines()
                        .find_map(|l| l.strip_prefix("Groups:"))
                        .context("/proc/self/status has no Groups line")?;
                    ensure!(
                        groups.trim().is_empty(),
                        "supplementary groups inside: {}",
                        groups.trim()
                    );
                    Ok(())
                }),
            ));
        }
        for (name, check) in &checks {
            check().with_context(|| format!("sandbox check `{name}` ({})", self.label))?;
            report.passed.push(format!("{}: {name}", self.label));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sandbox {
        Sandbox {
            root: PathBuf::from("/var/roots/gcc"),
            writable_root: false,
            binds: vec![
                Bind {
                    host: PathBuf::from("/home/me/src"),
                    inside: "/src".to_string(),
                    writable: false,
                },
                Bind {
                    host: PathBuf::from("/home/me/target/build"),
                    inside: "/build".to_string(),
                    writable: true,
                },
            ],
            cwd: "/build".to_string(),
            env: vec![("CC".to_string(), "gcc".to_string())],
        }
    }

    #[test]
    fn spec_round_trips_through_json() {
        let sandbox = sample();
        let json = serde_json::to_string(&sandbox).unwrap();
        let back: Sandbox = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sandbox);
    }

    #[test]
    fn command_starts_the_hidden_mode() {
        let cmd = sample()
            .command_via(Path::new("/bin/xtask"), "gcc")
            .unwrap();
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_str().unwrap().to_string())
            .collect();
        assert_eq!(args[0], ENTER);
        assert_eq!(serde_json::from_str::<Sandbox>(&args[1]).unwrap(), sample());
        assert_eq!(&args[2..], ["--", "gcc"]);
        // Nothing of the host's environment goes to the helper either.
        assert!(cmd.get_envs().all(|(_, v)| v.is_none()));
    }

    #[test]
    fn environment_adds_defaults_only_when_absent() {
        let mut sandbox = sample();
        sandbox.env.push(("HOME".to_string(), "/build".to_string()));
        let env = sandbox.environment();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("CC"), Some("gcc"));
        assert_eq!(get("HOME"), Some("/build"));
        assert_eq!(
            get("PATH"),
            Some("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        );
        assert_eq!(get("LC_ALL"), Some("C"));
        assert_eq!(get("TZ"), Some("UTC"));
        assert_eq!(env.len(), 5);
    }

    #[test]
    fn invalid_specs_are_refused() {
        for (change, expected) in [
            (
                (|s: &mut Sandbox| s.cwd = "build".into()) as fn(&mut Sandbox),
                "not an absolute path",
            ),
            (|s| s.binds[0].inside = "/src/../etc".into(), "`.` or `..`"),
            (|s| s.root = "roots/gcc".into(), "not an absolute path"),
            (|s| s.env.push(("A=B".into(), "c".into())), "not valid"),
        ] {
            let mut sandbox = sample();
            change(&mut sandbox);
            let err = format!("{:#}", sandbox.validate().unwrap_err());
            assert!(err.contains(expected), "`{err}` should say `{expected}`");
        }
    }

    #[test]
    fn programs_are_found_through_path_inside_the_root() {
        let root =
            std::env::temp_dir().join(format!("stubdoms-sandbox-path-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (file, mode) in [
            ("usr/bin/gcc", 0o755),
            ("bin/gcc", 0o755),
            ("bin/make", 0o755),
            ("usr/bin/notes", 0o644),
        ] {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        fs::create_dir_all(root.join("usr/bin/tools")).unwrap();
        let path = "/usr/local/bin:/usr/bin:/bin";
        for (program, found) in [
            ("gcc", Some("/usr/bin/gcc")),
            ("make", Some("/bin/make")),
            ("notes", None), // not executable
            ("tools", None), // a folder
            ("cargo", None), // not in the root (even if the host has it)
            ("sh", None),
            ("", None),
            ("/opt/x", Some("/opt/x")), // a path is taken as it is
        ] {
            assert_eq!(
                find_program(&root, path, program),
                found.map(PathBuf::from),
                "{program}"
            );
        }
        // Relative and empty PATH entries are never searched.
        assert_eq!(find_program(&root, "usr/bin::", "gcc"), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn remounts_keep_the_locked_flags() {
        use StatVfsMountFlags as St;
        for (statvfs, kept) in [
            (St::RELATIME, MountFlags::RELATIME),
            (St::RDONLY | St::RELATIME, MountFlags::RELATIME),
            (
                St::NOSUID | St::NODEV | St::RELATIME,
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::RELATIME,
            ),
            (
                St::NOSUID | St::NODEV | St::NOEXEC | St::RELATIME,
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC | MountFlags::RELATIME,
            ),
            (St::NOATIME, MountFlags::NOATIME),
            (
                St::NOATIME | St::NODIRATIME,
                MountFlags::NOATIME | MountFlags::NODIRATIME,
            ),
            (St::empty(), MountFlags::STRICTATIME),
            (
                St::NODIRATIME,
                MountFlags::NODIRATIME | MountFlags::STRICTATIME,
            ),
            (St::SYNCHRONOUS | St::RELATIME, MountFlags::RELATIME),
        ] {
            assert_eq!(kept_flags(statvfs), kept, "{statvfs:?}");
        }
    }
}
