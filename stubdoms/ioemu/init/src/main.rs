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

/// Console 0 (`/dev/hvc0`): the toolstack stores it as `qemu-dm-<guest>.log`. Dom0's QEMU
/// serves it, and from QEMU 8.2 never reads it (it waits for a frontend state Linux does
/// not write for a primary console); the kernel then drops console output after waiting 2 s
/// for room (linux-patches/0002), so writes here never stop the stub domain.
#[derive(Clone)]
struct Log(Arc<Mutex<Option<File>>>);

impl Log {
    fn open() -> Self {
        let file = OpenOptions::new()
            .write(true)
            .open("/dev/hvc0")
            .or_else(|_| OpenOptions::new().write(true).open("/dev/console"))
            .ok();
        Log(Arc::new(Mutex::new(file)))
    }

    fn say(&self, msg: &str) {
        let line = format!("ioemu-init: {msg}\n");
        match self.0.lock() {
            Ok(mut guard) => match guard.as_mut() {
                Some(f) => drop(f.write_all(line.as_bytes())),
                None => eprint!("{line}"),
            },
            Err(_) => eprint!("{line}"),
        }
    }

    fn stdio(&self) -> Stdio {
        let clone = self
            .0
            .lock()
            .ok()
            .and_then(|g| g.as_ref().and_then(|f| f.try_clone().ok()));
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
    let mut qemu = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.stdio())
        .stderr(log.stdio())
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
