//! The xenstore client: `xenstore-proto`'s client over the shared ring page.

use core::sync::atomic::{fence, Ordering};

use xen_abi::io::xenstore::{XenstoreDomainInterface, XENSTORE_RING_SIZE};
pub use xenstore_proto::{Client, Transport, WatchEvent};

use crate::global::Global;

/// Why the ring transport could not move bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The domain has no xenstore ring (e.g. dom0, or no toolstack).
    NoStore,
    /// No reply arrived before the deadline.
    TimedOut,
    /// A value did not have the expected form.
    BadValue,
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::NoStore => f.write_str("no xenstore ring"),
            RingError::TimedOut => f.write_str("xenstore timed out"),
            RingError::BadValue => f.write_str("unexpected xenstore value"),
        }
    }
}

/// A client error.
pub type Error = xenstore_proto::Error<RingError>;

/// The xenstore ring and its event channel.
pub struct Ring {
    ring: *mut XenstoreDomainInterface,
    evtchn: u32,
    /// How long a send or receive waits, in nanoseconds.
    pub timeout_ns: u64,
}

impl Ring {
    /// The ring boot found, if any.
    pub fn open() -> Result<Ring, RingError> {
        let (va, evtchn) = crate::info()
            .and_then(|i| i.store)
            .ok_or(RingError::NoStore)?;
        Ok(Ring {
            ring: va as *mut _,
            evtchn,
            timeout_ns: 10_000_000_000,
        })
    }

    /// The event channel, to wait for watch events together with other ports.
    pub fn evtchn(&self) -> u32 {
        self.evtchn
    }

    fn indexes(&self) -> (u32, u32, u32, u32) {
        // SAFETY: `ring` is the xenstore page the toolstack gave this domain, mapped for the
        // program's life; the indexes are read with volatile loads because xenstored moves
        // the producer/consumer it owns.
        let r = unsafe {
            (
                core::ptr::addr_of!((*self.ring).req_cons).read_volatile(),
                core::ptr::addr_of!((*self.ring).req_prod).read_volatile(),
                core::ptr::addr_of!((*self.ring).rsp_cons).read_volatile(),
                core::ptr::addr_of!((*self.ring).rsp_prod).read_volatile(),
            )
        };
        fence(Ordering::SeqCst);
        r
    }

    fn wait(&self, deadline: u64) -> Result<(), RingError> {
        let now = crate::time::system_time_ns();
        if now >= deadline {
            return Err(RingError::TimedOut);
        }
        crate::events::wait_any(&[self.evtchn], Some(deadline - now));
        Ok(())
    }
}

const SIZE: u32 = XENSTORE_RING_SIZE as u32;

impl Transport for Ring {
    type Error = RingError;

    fn send(&mut self, mut message: &[u8]) -> Result<(), RingError> {
        let deadline = crate::time::system_time_ns().saturating_add(self.timeout_ns);
        while !message.is_empty() {
            let (cons, prod, _, _) = self.indexes();
            let ring = self.ring;
            let n = crate::ring::produce(prod, cons, SIZE, message, |i, b| {
                // SAFETY: as in `indexes`; `i` < ring size and the slot is past what
                // xenstored may still read.
                unsafe { core::ptr::addr_of_mut!((*ring).req[i]).write_volatile(b) }
            });
            if n == 0 {
                self.wait(deadline)?;
                continue;
            }
            fence(Ordering::SeqCst);
            // SAFETY: as above; we own `req_prod`.
            unsafe {
                core::ptr::addr_of_mut!((*self.ring).req_prod).write_volatile(prod.wrapping_add(n))
            };
            let _ = crate::events::send(self.evtchn);
            message = &message[n as usize..];
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, RingError> {
        let deadline = crate::time::system_time_ns().saturating_add(self.timeout_ns);
        loop {
            let (_, _, cons, prod) = self.indexes();
            let ring = self.ring;
            let n = crate::ring::consume(prod, cons, SIZE, buf, |i| {
                // SAFETY: as in `indexes`; `i` < ring size; xenstored filled `rsp` up to
                // `rsp_prod`.
                unsafe { core::ptr::addr_of!((*ring).rsp[i]).read_volatile() }
            });
            if n == 0 {
                if buf.is_empty() {
                    return Ok(0);
                }
                self.wait(deadline)?;
                continue;
            }
            fence(Ordering::SeqCst);
            // SAFETY: as above; we own `rsp_cons`.
            unsafe {
                core::ptr::addr_of_mut!((*self.ring).rsp_cons).write_volatile(cons.wrapping_add(n))
            };
            let _ = crate::events::send(self.evtchn);
            return Ok(n as usize);
        }
    }
}

static CLIENT: Global<Option<Client<Ring>>> = Global::new(None);

/// Runs `f` with the domain's xenstore client, connecting on first use.
pub fn with<R>(f: impl FnOnce(&mut Client<Ring>) -> Result<R, Error>) -> Result<R, Error> {
    let mut guard = CLIENT
        .try_lock()
        .ok_or(xenstore_proto::Error::Transport(RingError::NoStore))?;
    if guard.is_none() {
        *guard = Some(Client::new(
            Ring::open().map_err(xenstore_proto::Error::Transport)?,
        ));
    }
    match guard.as_mut() {
        Some(c) => f(c),
        None => Err(xenstore_proto::Error::Transport(RingError::NoStore)),
    }
}

/// Whether this domain has a xenstore connection.
pub fn available() -> bool {
    crate::info().is_some_and(|i| i.store.is_some())
}

pub fn read(path: &str) -> Result<alloc::string::String, Error> {
    with(|c| c.read_string(path))
}

pub fn write(path: &str, value: &str) -> Result<(), Error> {
    with(|c| c.write(path, value))
}

pub fn directory(path: &str) -> Result<alloc::vec::Vec<alloc::string::String>, Error> {
    with(|c| c.directory(path))
}

pub fn watch(path: &str, token: &str) -> Result<(), Error> {
    with(|c| c.watch(path, token))
}

pub fn unwatch(path: &str, token: &str) -> Result<(), Error> {
    with(|c| c.unwatch(path, token))
}

/// The next watch event, waiting up to the ring's timeout.
pub fn next_event() -> Result<WatchEvent, Error> {
    with(|c| c.next_event())
}

/// The next watch event, waiting at most `timeout_ns` (instead of the ring's timeout).
pub fn next_event_within(timeout_ns: u64) -> Result<WatchEvent, Error> {
    with(|c| {
        let saved = c.transport().timeout_ns;
        c.transport_mut().timeout_ns = timeout_ns;
        let event = c.next_event();
        c.transport_mut().timeout_ns = saved;
        event
    })
}

/// This domain's id, from the `domid` key.
pub fn domid() -> Result<u16, Error> {
    let s = read("domid")?;
    s.trim()
        .parse()
        .map_err(|_| xenstore_proto::Error::Transport(RingError::BadValue))
}
