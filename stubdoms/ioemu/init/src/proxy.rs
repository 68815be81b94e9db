//! The QMP proxy: a vchan server at `.../device-model/<guest>/qmp-vchan` that connects
//! each client (libxl's `vchan-socket-proxy` in dom0) to QEMU's toolstack monitor.
//!
//! One client at a time, as the protocol says. After a client leaves, the ring is torn
//! down (keys removed, page released) and a fresh one published for the next.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use xenstore_proto::{Access, Client, Perm, Transport};

use crate::sys::{self, EvtChn, SharedPage};
use crate::vchan::{Peer, Ring, SRV_LIVE};
use crate::Error;

/// Writes `ring-ref` and `event-channel` under `path`, readable by `client` only, in one
/// transaction so the client never sees half a channel.
pub fn publish<T: Transport>(
    xs: &mut Client<T>,
    path: &str,
    own: u16,
    client: u16,
    gref: u32,
    port: u32,
) -> Result<(), Error>
where
    T::Error: std::fmt::Display,
{
    let perms = [
        Perm::new(own, Access::None),
        Perm::new(client, Access::Read),
    ];
    let ring_ref = format!("{path}/ring-ref");
    let event = format!("{path}/event-channel");
    xs.transaction(|tx| {
        tx.write(&ring_ref, gref.to_string())?;
        tx.set_perms(&ring_ref, &perms)?;
        tx.write(&event, port.to_string())?;
        tx.set_perms(&event, &perms)
    })
    .map_err(|e| Error::xs("transaction", path, &e))
}

/// Serves QMP over vchan forever; errors are logged and the server restarts.
pub fn serve(path: String, own: u16, client: u16, log: impl Fn(&str)) -> ! {
    loop {
        if let Err(err) = serve_one(&path, own, client) {
            log(&format!("QMP proxy: {err}; restarting it"));
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn serve_one(path: &str, own: u16, client: u16) -> Result<(), Error> {
    let mut xs = crate::sys::xenstore()?;
    let evt = EvtChn::bind_unbound(client.into())
        .map_err(|e| Error::io("binding an event channel", e))?;
    let shared = SharedPage::grant(client).map_err(|e| Error::io("granting the vchan page", e))?;
    let ring = Ring::init_server(shared.page());
    shared
        .notify_on_unmap(SRV_LIVE, evt.port())
        .map_err(|e| Error::io("setting the vchan unmap notification", e))?;
    publish(&mut xs, path, own, client, shared.gref(), evt.port())?;
    let result = shuttle(&ring, &evt);
    ring.close();
    // Best effort: the client also learns from srv_live and the unmap notification.
    let _ = evt.notify();
    let _ = xs.rm(path);
    // Unmaps and releases the page; `ring` points into it and is not used again.
    drop(shared);
    result
}

/// Waits for the client, then moves bytes between it and QEMU until either side leaves.
fn shuttle(ring: &Ring, evt: &EvtChn) -> Result<(), Error> {
    while ring.peer() == Peer::Waiting {
        sys::poll_readable(&[evt.as_raw_fd()], 1000)
            .map_err(|e| Error::io("waiting for the vchan client", e))?;
        evt.ack()
            .map_err(|e| Error::io("reading the event channel", e))?;
    }
    if ring.peer() != Peer::Connected {
        return Ok(());
    }
    let mut qemu = connect_qemu()?;
    qemu.set_nonblocking(true)
        .map_err(|e| Error::io("configuring the QMP socket", e))?;
    let mut to_qemu: Vec<u8> = Vec::new();
    let mut to_client: Vec<u8> = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        // Client -> QEMU.
        loop {
            let (n, notify) = ring.read(&mut buf);
            if notify {
                evt.notify()
                    .map_err(|e| Error::io("notifying the vchan client", e))?;
            }
            if n == 0 {
                break;
            }
            to_qemu.extend_from_slice(&buf[..n]);
        }
        while !to_qemu.is_empty() {
            match qemu.write(&to_qemu) {
                Ok(n) => drop(to_qemu.drain(..n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Error::io("writing to QEMU's monitor", e)),
            }
        }
        // QEMU -> client.
        let mut qemu_gone = false;
        if to_client.len() < 64 * 1024 {
            match qemu.read(&mut buf) {
                Ok(0) => qemu_gone = true,
                Ok(n) => to_client.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Error::io("reading QEMU's monitor", e)),
            }
        }
        while !to_client.is_empty() {
            let (n, notify) = ring.write(&to_client);
            if notify {
                evt.notify()
                    .map_err(|e| Error::io("notifying the vchan client", e))?;
            }
            if n == 0 {
                break;
            }
            to_client.drain(..n);
        }
        if ring.peer() != Peer::Connected || (qemu_gone && to_client.is_empty()) {
            return Ok(());
        }
        let ready = sys::poll_readable(&[evt.as_raw_fd(), qemu.as_raw_fd()], 500)
            .map_err(|e| Error::io("waiting for QMP traffic", e))?;
        if ready[0] {
            evt.ack()
                .map_err(|e| Error::io("reading the event channel", e))?;
        }
    }
}

fn connect_qemu() -> Result<UnixStream, Error> {
    let path = crate::dmargs::TOOLSTACK_QMP_SOCKET;
    let mut last = None;
    for _ in 0..50 {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::io(
        format!("connecting to QEMU's monitor at {path}"),
        last.unwrap_or_else(|| std::io::Error::other("timed out")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{libxl_store, GUEST, STUB};

    #[test]
    fn publishes_keys_for_the_client_only() {
        let xs = libxl_store(&["-xen-domid", "2"]);
        let path = format!("/local/domain/{STUB}/device-model/{GUEST}/qmp-vchan");
        let mut client = Client::new(xs.connect(STUB));
        publish(&mut client, &path, STUB, 0, 8, 23).unwrap();
        assert_eq!(xs.read(&format!("{path}/ring-ref")).unwrap(), b"8");
        assert_eq!(xs.read(&format!("{path}/event-channel")).unwrap(), b"23");
        let want = vec![Perm::new(STUB, Access::None), Perm::new(0, Access::Read)];
        assert_eq!(xs.get_perms(&format!("{path}/ring-ref")).unwrap(), want);
        assert_eq!(
            xs.get_perms(&format!("{path}/event-channel")).unwrap(),
            want
        );
        // The guest may read the device-model directory but not the channel.
        let mut guest = Client::new(xs.connect(GUEST));
        assert!(guest.read(&format!("{path}/ring-ref")).is_err());
    }

    #[test]
    fn republishing_replaces_the_old_channel() {
        let xs = libxl_store(&["-xen-domid", "2"]);
        let path = format!("/local/domain/{STUB}/device-model/{GUEST}/qmp-vchan");
        let mut client = Client::new(xs.connect(STUB));
        publish(&mut client, &path, STUB, 0, 8, 23).unwrap();
        client.rm(&path).unwrap();
        assert!(!xs.exists(&path));
        publish(&mut client, &path, STUB, 0, 9, 24).unwrap();
        assert_eq!(xs.read(&format!("{path}/ring-ref")).unwrap(), b"9");
    }
}
