//! `/init` of the ioemu stub domain: prepares the system, starts QEMU as the toolstack
//! asks, serves QMP over vchan and keeps NICs and the CD-ROM plumbed. See the library
//! documentation (`lib.rs`) for the protocol pieces.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ioemu_init::cdrom::{self, Action, Seen, Tracker};
use ioemu_init::layout::Layout;
use ioemu_init::nic::{self, Tap};
use ioemu_init::qmp::Qmp;
use ioemu_init::report::{self, Memory};
use ioemu_init::sys::{self, NetCtl};
use ioemu_init::{dmargs, proxy, Error};

const QEMU: &str = "/usr/bin/qemu-system-i386";
/// The toolstack domain, which runs `vchan-socket-proxy` (libxl has no key for it).
const TOOLSTACK_DOMID: u16 = 0;
/// Console numbers of the protocol.
const SAVE_CONSOLE: u32 = 1;
const RESTORE_CONSOLE: u32 = 2;
/// How long QEMU's taps may take to appear.
const TAP_DEADLINE: Duration = Duration::from_secs(30);
/// How long the guest's disks may take to appear before QEMU starts without them.
const DISK_DEADLINE: Duration = Duration::from_secs(10);
/// How often the memory figures in xenstore are brought up to date.
const MEMORY_EVERY: Duration = Duration::from_secs(5);
/// Where they go, under the stub domain's own xenstore directory.
const MEMORY_KEY: &str = "data/ioemu-memory";

/// The init's log, and QEMU's error output: console 0 (`/dev/hvc0`), which the toolstack
/// stores as `qemu-dm-<guest>.log`, and the last lines in xenstore (`data/ioemu-log`). Dom0's
/// QEMU serves console 0, and from QEMU 8.2 never reads it (it waits for a frontend state
/// Linux does not write for a primary console); the kernel then drops console output after
/// waiting 2 s for room (linux-patches/0002), so writes there never stop the stub domain,
/// and xenstore is where dom0 can still read what went wrong.
#[derive(Clone)]
struct Log(Arc<Mutex<Sinks>>);

struct Sinks {
    console: Option<File>,
    xenstore: Option<Xs>,
    recent: std::collections::VecDeque<String>,
}

/// The log's key, under the stub domain's own xenstore directory, and how much it keeps.
const LOG_KEY: &str = "data/ioemu-log";
const LOG_KEEP_BYTES: usize = 2048;

impl Log {
    fn open() -> Self {
        let console = OpenOptions::new()
            .write(true)
            .open("/dev/hvc0")
            .or_else(|_| OpenOptions::new().write(true).open("/dev/console"))
            .ok();
        Log(Arc::new(Mutex::new(Sinks {
            console,
            xenstore: None,
            recent: Default::default(),
        })))
    }

    /// From now on, also keep the last lines in xenstore (once xenbus is there).
    fn mirror_to_xenstore(&self) {
        if let (Ok(xs), Ok(mut sinks)) = (sys::xenstore(), self.0.lock()) {
            sinks.xenstore = Some(xs);
        }
    }

    fn say(&self, msg: &str) {
        self.line(&format!("ioemu-init: {msg}"));
    }

    /// A line of QEMU's output, as it is.
    fn raw(&self, line: &str) {
        self.line(line);
    }

    fn line(&self, line: &str) {
        let Ok(mut sinks) = self.0.lock() else {
            eprintln!("{line}");
            return;
        };
        match sinks.console.as_mut() {
            Some(f) => drop(f.write_all(format!("{line}\n").as_bytes())),
            None => eprintln!("{line}"),
        }
        sinks.recent.push_back(line.to_string());
        while sinks.recent.iter().map(|l| l.len() + 1).sum::<usize>() > LOG_KEEP_BYTES
            && sinks.recent.len() > 1
        {
            sinks.recent.pop_front();
        }
        let text = sinks
            .recent
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(xs) = sinks.xenstore.as_mut() {
            // Best effort: the console has the line already.
            let _ = xs.write(LOG_KEY, text.as_bytes());
        }
    }

    fn stdio(&self) -> Stdio {
        let clone = self
            .0
            .lock()
            .ok()
            .and_then(|g| g.console.as_ref().and_then(|f| f.try_clone().ok()));
        clone.map_or_else(Stdio::inherit, Stdio::from)
    }
}

fn main() {
    let log = Log::open();
    if let Err(err) = early_mounts() {
        log.say(&format!("error: {err}"));
    }
    // Reopen now that devtmpfs provides /dev/hvc0.
    let log = Log::open();
    log.mirror_to_xenstore();
    match run(&log) {
        Ok(status) => log.say(&format!("QEMU exited ({status}); stopping the stub domain")),
        Err(err) => log.say(&format!("error: {err}; stopping the stub domain")),
    }
    sys::power_off();
}

fn early_mounts() -> Result<(), Error> {
    sys::mount("devtmpfs", "/dev", None)?;
    sys::mount("proc", "/proc", None)?;
    sys::mount("sysfs", "/sys", None)?;
    sys::mount("xenfs", "/proc/xen", None)?;
    sys::mount("tmpfs", "/run", Some("mode=0755,size=4m"))?;
    sys::mount("tmpfs", "/tmp", Some("mode=1777,size=4m"))?;
    Ok(())
}

type Xs = sys::Xenstore;

/// Opens console `n` if the toolstack connected it.
fn console(xs: &mut Xs, n: u32, write: bool) -> Result<Option<File>, Error> {
    if xs.read(&format!("device/console/{n}")).is_err() {
        return Ok(None);
    }
    let path = format!("/dev/hvc{n}");
    if !sys::wait_for(Path::new(&path), 50) {
        return Err(Error::io(
            format!("waiting for {path}"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let file = OpenOptions::new()
        .read(!write)
        .write(write)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {path}"), e))?;
    sys::make_raw(&file).map_err(|e| Error::io(format!("setting {path} to raw mode"), e))?;
    Ok(Some(file))
}

fn run(log: &Log) -> Result<std::process::ExitStatus, Error> {
    let mut xs = sys::xenstore()?;
    let layout = Layout::discover(&mut xs)?;
    log.say(&format!(
        "device model for domain {} (stub domain {})",
        layout.target, layout.stubdom
    ));
    let mut args = dmargs::read(&mut xs, &layout.dm_argv())?;

    let save = console(&mut xs, SAVE_CONSOLE, true)?;
    let restore = if dmargs::wants_restore(&args) {
        console(&mut xs, RESTORE_CONSOLE, false)?
    } else {
        None
    };
    if let Some(f) = &restore {
        sys::inheritable(f.as_raw_fd()).map_err(|e| Error::io("passing console 2 to QEMU", e))?;
    }
    dmargs::substitute_restore(&mut args, restore.as_ref().map(AsRawFd::as_raw_fd))?;

    let (ours, theirs) =
        UnixStream::pair().map_err(|e| Error::io("creating the init's QMP socket", e))?;
    sys::inheritable(theirs.as_raw_fd())
        .map_err(|e| Error::io("passing the QMP socket to QEMU", e))?;
    args.extend(dmargs::stubdom_args(theirs.as_raw_fd()));
    let taps = nic::taps(&args);

    wait_for_disks(log, &args, &layout);
    log.say(&format!("starting {QEMU} {}", args.join(" ")));
    let mut qemu = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.stdio())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("starting {QEMU}"), e))?;
    drop(theirs);
    drop(restore);
    if let Some(stderr) = qemu.stderr.take() {
        let qemu_log = log.clone();
        std::thread::spawn(move || relay_errors(&qemu_log, stderr));
    }

    let event_log = log.clone();
    let mut qmp = Qmp::handshake(
        ours,
        Box::new(move |name: &str| event_log.say(&format!("QEMU event {name}"))),
    )?;
    // How much of the stub domain's memory is left once QEMU runs (the figure that decides
    // `stubdomain_memory`); kept up to date in xenstore while QEMU runs.
    let memory = memory_now(qemu.id());
    if let Some(m) = memory {
        log.say(&format!(
            "memory with QEMU up: {} KiB total, {} KiB available (rootfs {} KiB, QEMU's resident set {} KiB)",
            m.total, m.available, m.rootfs, m.qemu_rss
        ));
    }
    if let Some(save) = save {
        // libxl saves the device state to /dev/fdset/1, opened write-only.
        qmp.add_fd(save.as_raw_fd(), Some(1), None)?;
    }

    let proxy_log = log.clone();
    let path = layout.qmp_vchan();
    let stubdom = u16::try_from(layout.stubdom)
        .map_err(|_| Error::Args("stub domain id out of range".into()))?;
    std::thread::spawn(move || proxy::serve(path, stubdom, TOOLSTACK_DOMID, |m| proxy_log.say(m)));

    supervise(log, &mut xs, &mut qmp, &mut qemu, taps)
}

/// The main loop: plumbs NICs as their taps appear, keeps `xvdc` in an fdset, relays
/// QEMU's events to the log, and returns when QEMU exits.
fn supervise(
    log: &Log,
    xs: &mut Xs,
    qmp: &mut Qmp<UnixStream>,
    qemu: &mut Child,
    mut taps: Vec<Tap>,
) -> Result<std::process::ExitStatus, Error> {
    let net = NetCtl::open().map_err(|e| Error::io("opening a network control socket", e))?;
    let started = Instant::now();
    let mut memory = (Memory::default(), started - MEMORY_EVERY);
    let mut cd = Tracker::default();
    let mut cd_fds: Vec<(i64, OwnedFd)> = Vec::new();
    xs.watch("device/vbd", "vbd")
        .map_err(|e| Error::xs("watch", "device/vbd", &e))?;
    let mut vbd_changed = true;
    loop {
        if let Some(status) = qemu
            .try_wait()
            .map_err(|e| Error::io("waiting for QEMU", e))?
        {
            return Ok(status);
        }
        taps.retain(|tap| match plumb(&net, tap) {
            Ok(true) => {
                log.say(&format!(
                    "bridged {} with the PV vif {} in {}",
                    tap.ifname,
                    tap.devid,
                    tap.bridge()
                ));
                false
            }
            Ok(false) if started.elapsed() > TAP_DEADLINE => {
                log.say(&format!(
                    "giving up on {}: the tap or PV vif {} never appeared",
                    tap.ifname, tap.devid
                ));
                false
            }
            Ok(false) => true,
            Err(e) => {
                log.say(&format!("cannot bridge {}: {e}", tap.ifname));
                false
            }
        });
        if memory.1.elapsed() >= MEMORY_EVERY {
            memory.1 = Instant::now();
            if let Some(m) = memory_now(qemu.id()).filter(|m| *m != memory.0) {
                memory.0 = m;
                // Best effort: a figure, not part of the protocol.
                let _ = xs.write(MEMORY_KEY, m.xenstore_value());
            }
        }
        if vbd_changed {
            // A disk whose backend closes goes from sysfs some time after the last
            // xenstore change: look again until it has.
            vbd_changed = update_cdrom(log, xs, qmp, &mut cd, &mut cd_fds);
        }
        let timeout = if taps.is_empty() && !vbd_changed {
            1000
        } else {
            100
        };
        let fds = [
            xs.transport().get_ref().as_raw_fd(),
            qmp.channel().as_raw_fd(),
        ];
        let ready =
            sys::poll_readable(&fds, timeout).map_err(|e| Error::io("waiting for events", e))?;
        if ready[0] {
            let _ = xs
                .next_event()
                .map_err(|e| Error::xs("read watch", "device/vbd", &e))?;
            vbd_changed = true;
        }
        while xs.try_next_event().is_some() {
            vbd_changed = true;
        }
        if ready[1] && !qmp.drain_one()? {
            // QEMU is exiting: its monitor socket closed with it.
            return qemu.wait().map_err(|e| Error::io("waiting for QEMU", e));
        }
    }
}

/// Waits a little for the guest's disks QEMU is to open: the toolstack attaches them as PV
/// disks before the stub domain starts, but their backends connect in their own time.
fn wait_for_disks(log: &Log, args: &[String], layout: &Layout) {
    let deadline = Instant::now() + DISK_DEADLINE;
    for path in report::disk_paths(args) {
        while !Path::new(&path).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !Path::new(&path).exists() {
            log.say(&format!(
                "the guest's disk {path} has not appeared in the stub domain after {} s: its PV disk's backend in dom0 did not connect. Check the disk's target in the guest's xl.cfg and the toolstack's log (/var/log/xen/xl-<guest>.log); domain {} starts without it",
                DISK_DEADLINE.as_secs(),
                layout.target
            ));
        }
    }
}

/// Copies QEMU's error output to the log, each line as QEMU wrote it, adding a plain-word
/// hint after errors that mean the toolstack and the image disagree.
fn relay_errors(log: &Log, stderr: std::process::ChildStderr) {
    use std::io::BufRead;
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        log.raw(&line);
        if let Some(hint) = report::qemu_hint(&line) {
            log.say(&hint);
        }
    }
}

/// The memory figures now, for QEMU with process id `pid`.
fn memory_now(pid: u32) -> Option<Memory> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    // The rootfs does not change once the init runs (/run and /tmp are mounts of their
    // own): walk it once.
    static ROOTFS_KIB: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let rootfs = *ROOTFS_KIB.get_or_init(|| tree_kib(Path::new("/")));
    Memory::parse(&meminfo, &status, rootfs)
}

/// The size of the files under `dir` on the root file system (the unpacked rootfs), in
/// KiB, whole pages per file; other mounts are left out.
fn tree_kib(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(root_dev) = std::fs::symlink_metadata(dir).map(|m| m.dev()) else {
        return 0;
    };
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != root_dev {
                continue;
            }
            if m.is_dir() {
                todo.push(e.path());
            } else {
                total += m.len().div_ceil(4096) * 4;
            }
        }
    }
    total
}

/// Bridges a tap with its vif once both exist. `Ok(false)`: not yet.
fn plumb(net: &NetCtl, tap: &Tap) -> std::io::Result<bool> {
    if !Path::new(&format!("/sys/class/net/{}", tap.ifname)).exists() {
        return Ok(false);
    }
    let Some(vif) = sys::vif_netdev(tap.devid) else {
        return Ok(false);
    };
    let bridge = tap.bridge();
    net.add_bridge(&bridge)?;
    net.set_mac(&vif, nic::VIF_PORT_MAC)?;
    net.set_mac(&tap.ifname, nic::TAP_PORT_MAC)?;
    net.add_port(&bridge, &vif)?;
    net.add_port(&bridge, &tap.ifname)?;
    net.up(&vif)?;
    net.up(&tap.ifname)?;
    net.up(&bridge)?;
    Ok(true)
}

/// Brings QEMU's CD-ROM fdset in line with the drive; returns whether to look again soon
/// (a disk is on its way out).
fn update_cdrom(
    log: &Log,
    xs: &mut Xs,
    qmp: &mut Qmp<UnixStream>,
    cd: &mut Tracker,
    fds: &mut Vec<(i64, OwnedFd)>,
) -> bool {
    // A change of disk takes two steps; more means something keeps failing.
    for _ in 0..3 {
        let seen = match sys::xvdc_devid() {
            Some(devid) => Seen::Present {
                devid,
                closing: cdrom::backend_closing(xs, devid),
            },
            None => cdrom::empty_drive(xs).map_or(Seen::Absent, |devid| Seen::Empty { devid }),
        };
        if cd.observe(seen) {
            log.say(&format!("CD-ROM drive: {seen:?}"));
        }
        let leaving = matches!(seen, Seen::Present { closing: true, .. });
        match cd.step(seen) {
            None => return leaving,
            Some(Action::Add { devid, medium }) => {
                let path = if medium { "/dev/xvdc" } else { "/dev/null" };
                let opened = File::open(path).map_err(|e| Error::io(format!("opening {path}"), e));
                match opened.and_then(|f| {
                    qmp.add_fd(f.as_raw_fd(), None, Some(&cdrom::opaque(devid)))
                        .map(|id| (id, f))
                }) {
                    Ok((id, f)) => {
                        let what = if medium {
                            "xvdc"
                        } else {
                            "the empty CD-ROM drive"
                        };
                        log.say(&format!("{what} (devid {devid}) is in fdset {id}"));
                        cd.added(devid, id, medium);
                        fds.push((id, f.into()));
                    }
                    Err(e) => {
                        log.say(&format!("cannot offer {path} to QEMU: {e}"));
                        return false;
                    }
                }
            }
            Some(Action::Remove { fdset_id }) => {
                if let Err(e) = qmp.remove_fdset(fdset_id) {
                    // libxl 4.20 removes it itself before it swaps the disk.
                    log.say(&format!("fdset {fdset_id} was not removed ({e}): the toolstack may have removed it already"));
                }
                fds.retain(|(id, _)| *id != fdset_id);
                cd.removed();
            }
        }
    }
    false
}
