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

/// Console 0 (`/dev/hvc0`): the toolstack stores it as `qemu-dm-<guest>.log`.
///
/// Dom0's QEMU serves this domain's consoles, and from QEMU 8.2 (Debian 13 has 10.0) it
/// maps console 0 but never drains it: it waits for a frontend state Linux never writes for
/// its primary console (and the key is the toolstack's). A full console must not stop the
/// stub domain, so the log is written without blocking: a write waits at most
/// [`LOG_STALL_MS`] for room, and once one has timed out the log drops what does not fit.
#[derive(Clone)]
struct Log(Arc<Mutex<LogFile>>);

struct LogFile {
    file: Option<File>,
    stalled: bool,
}

/// How long a log write waits for room on console 0.
const LOG_STALL_MS: i32 = 2000;

impl Log {
    fn open() -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let open = |path: &str| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
        };
        let file = open("/dev/hvc0").or_else(|_| open("/dev/console")).ok();
        Log(Arc::new(Mutex::new(LogFile {
            file,
            stalled: false,
        })))
    }

    fn say(&self, msg: &str) {
        self.raw(&format!("ioemu-init: {msg}\n"));
    }

    fn raw(&self, text: &str) {
        let Ok(mut guard) = self.0.lock() else {
            return eprint!("{text}");
        };
        let log = &mut *guard;
        let Some(f) = log.file.as_mut() else {
            return eprint!("{text}");
        };
        let mut rest = text.as_bytes();
        while !rest.is_empty() {
            match f.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !log.stalled => {
                    let ready = sys::poll_writable(f.as_raw_fd(), LOG_STALL_MS).unwrap_or(false);
                    log.stalled = !ready;
                }
                Err(_) => return,
            }
        }
        log.stalled = false;
    }

    /// Copies the kernel's messages so far to the log: the kernel keeps its console quiet
    /// (`quiet` in linux.config), as its own console writes would wait forever for room on a
    /// console 0 nobody drains (see [`Log`]).
    fn kernel_messages(&self) {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(mut kmsg) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
        else {
            return;
        };
        // One record per read: "level,seq,time,flags;text\n" (continuation lines follow).
        let mut record = [0u8; 8192];
        while let Ok(n) = kmsg.read(&mut record) {
            let text = String::from_utf8_lossy(&record[..n]);
            if let Some((_, line)) = text.split_once(';') {
                let line = line.lines().next().unwrap_or("");
                self.raw(&format!("kernel: {line}\n"));
            }
        }
    }

    /// QEMU's stdout and stderr: a pipe whose lines a thread copies to the log, so that
    /// QEMU never waits on a console nobody drains (see [`Log`]).
    fn stdio(&self) -> Result<(Stdio, Stdio), Error> {
        use std::io::BufRead;
        let (reader, writer) = sys::pipe().map_err(|e| Error::io("creating QEMU's log pipe", e))?;
        let second = writer
            .try_clone()
            .map_err(|e| Error::io("creating QEMU's log pipe", e))?;
        let log = self.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(reader)
                .lines()
                .map_while(Result::ok)
            {
                log.raw(&format!("{line}\n"));
            }
        });
        Ok((Stdio::from(writer), Stdio::from(second)))
    }
}

fn main() {
    let log = Log::open();
    if let Err(err) = early_mounts() {
        log.say(&format!("error: {err}"));
    }
    // Reopen now that devtmpfs provides /dev/hvc0.
    let log = Log::open();
    log.kernel_messages();
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

    log.say(&format!("starting {QEMU} {}", args.join(" ")));
    let (qemu_out, qemu_err) = log.stdio()?;
    let mut qemu = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(qemu_out)
        .stderr(qemu_err)
        .spawn()
        .map_err(|e| Error::io(format!("starting {QEMU}"), e))?;
    drop(theirs);
    drop(restore);

    let event_log = log.clone();
    let mut qmp = Qmp::handshake(
        ours,
        Box::new(move |name: &str| event_log.say(&format!("QEMU event {name}"))),
    )?;
    // How much of the stub domain's memory is left once QEMU runs (the figure that decides
    // `stubdomain_memory`).
    if let Some((total, avail)) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(sys::meminfo_kib)
    {
        log.say(&format!(
            "memory with QEMU up: {total} KiB total, {avail} KiB available"
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
        if vbd_changed {
            vbd_changed = false;
            update_cdrom(log, xs, qmp, &mut cd, &mut cd_fds);
        }
        let timeout = if taps.is_empty() { 1000 } else { 100 };
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

fn update_cdrom(
    log: &Log,
    xs: &mut Xs,
    qmp: &mut Qmp<UnixStream>,
    cd: &mut Tracker,
    fds: &mut Vec<(i64, OwnedFd)>,
) {
    // A change of disk takes two steps; more means something keeps failing.
    for _ in 0..3 {
        let seen = match sys::xvdc_devid() {
            None => Seen::Absent,
            Some(devid) => Seen::Present {
                devid,
                closing: cdrom::backend_closing(xs, devid),
            },
        };
        match cd.step(seen) {
            None => return,
            Some(Action::Add { devid }) => {
                let opened = File::open("/dev/xvdc").map_err(|e| Error::io("opening /dev/xvdc", e));
                match opened.and_then(|f| {
                    qmp.add_fd(f.as_raw_fd(), None, Some(&cdrom::opaque(devid)))
                        .map(|id| (id, f))
                }) {
                    Ok((id, f)) => {
                        log.say(&format!("xvdc (devid {devid}) is in fdset {id}"));
                        cd.added(devid, id);
                        fds.push((id, f.into()));
                    }
                    Err(e) => {
                        log.say(&format!("cannot offer xvdc to QEMU: {e}"));
                        return;
                    }
                }
            }
            Some(Action::Remove { fdset_id }) => {
                if let Err(e) = qmp.remove_fdset(fdset_id) {
                    log.say(&format!("removing fdset {fdset_id}: {e}"));
                }
                fds.retain(|(id, _)| *id != fdset_id);
                cd.removed();
            }
        }
    }
}
