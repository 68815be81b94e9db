//! Block front end: one disk per `device/vbd/<id>` directory, one request at a time through a
//! granted bounce page.

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::mem::ManuallyDrop;
use core::sync::atomic::{fence, Ordering};

use xen_abi::io::blkif::{self, BlkifRequest, BlkifRequestSegment, BlkifResponse};
use xen_abi::io::ring::{ring_size, SringHeader};

use crate::gnttab::{self, GrantError};
use crate::hypervisor::XenError;
use crate::mm::{Page, PAGE_SIZE};
use crate::xenbus;
use crate::xenstore::{self, Error as XsError};

const ENTRY_SIZE: usize = {
    let (a, b) = (
        core::mem::size_of::<BlkifRequest>(),
        core::mem::size_of::<BlkifResponse>(),
    );
    if a > b {
        a
    } else {
        b
    }
};
const RING_SIZE: u32 = ring_size(PAGE_SIZE, ENTRY_SIZE) as u32;
const CONNECT_TIMEOUT_NS: u64 = 10_000_000_000;
const IO_TIMEOUT_NS: u64 = 30_000_000_000;

/// What went wrong with a disk.
#[derive(Debug)]
pub enum BlkError {
    Xenstore(XsError),
    Grant(GrantError),
    Event(XenError),
    NoMemory,
    /// The back end did not reach Connected (its last state).
    NotConnected(u32),
    /// A value in xenstore is missing or malformed.
    BadNode(&'static str),
    /// The buffer is not a whole number of sectors, or the range is past the end.
    BadRange,
    /// The disk is read-only.
    ReadOnly,
    /// The back end answered with an error status.
    Io(i16),
    TimedOut,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkError::Xenstore(e) => write!(f, "xenstore: {e}"),
            BlkError::Grant(e) => write!(f, "{e}"),
            BlkError::Event(e) => write!(f, "event channel: {e}"),
            BlkError::NoMemory => f.write_str("out of memory"),
            BlkError::NotConnected(s) => write!(f, "back end did not connect (state {s})"),
            BlkError::BadNode(n) => write!(f, "bad xenstore node {n}"),
            BlkError::BadRange => f.write_str("bad sector range or buffer size"),
            BlkError::ReadOnly => f.write_str("disk is read-only"),
            BlkError::Io(s) => write!(f, "I/O error status {s}"),
            BlkError::TimedOut => f.write_str("request timed out"),
        }
    }
}

impl From<XsError> for BlkError {
    fn from(e: XsError) -> Self {
        BlkError::Xenstore(e)
    }
}

impl From<GrantError> for BlkError {
    fn from(e: GrantError) -> Self {
        BlkError::Grant(e)
    }
}

/// An open virtual block device.
pub struct Disk {
    dir: String,
    backend_id: u16,
    ring: ManuallyDrop<Page>,
    ring_ref: u32,
    evtchn: u32,
    buf: ManuallyDrop<Page>,
    buf_ref: u32,
    sectors: u64,
    sector_size: u32,
    info: u32,
    flush: bool,
    req_prod: u32,
    rsp_cons: u32,
    next_id: u64,
}

fn read_num(path: &str, what: &'static str) -> Result<u64, BlkError> {
    let s = xenstore::read(path)?;
    s.trim().parse().map_err(|_| BlkError::BadNode(what))
}

impl Disk {
    /// Connects to the back end of the front-end directory `dir` (e.g. `device/vbd/51712`).
    pub fn open(dir: &str) -> Result<Disk, BlkError> {
        let backend = xenstore::read(&format!("{dir}/backend"))?;
        let backend_id = u16::try_from(read_num(&format!("{dir}/backend-id"), "backend-id")?)
            .map_err(|_| BlkError::BadNode("backend-id"))?;
        let ring = Page::new().ok_or(BlkError::NoMemory)?;
        let buf = Page::new().ok_or(BlkError::NoMemory)?;
        let header = ring.as_ptr().cast::<SringHeader>();
        // SAFETY: `ring` is a fresh, zeroed page we own; the shared-ring header is at its start.
        unsafe {
            core::ptr::addr_of_mut!((*header).req_event).write_volatile(1);
            core::ptr::addr_of_mut!((*header).rsp_event).write_volatile(1);
        }
        let ring_ref = gnttab::grant_access(backend_id, ring.frame(), false)?;
        let buf_ref = gnttab::grant_access(backend_id, buf.frame(), false)?;
        let evtchn = crate::events::evtchn_alloc_unbound(backend_id).map_err(BlkError::Event)?;
        let mut disk = Disk {
            dir: String::from(dir),
            backend_id,
            ring: ManuallyDrop::new(ring),
            ring_ref,
            evtchn,
            buf: ManuallyDrop::new(buf),
            buf_ref,
            sectors: 0,
            sector_size: 512,
            info: 0,
            flush: false,
            req_prod: 0,
            rsp_cons: 0,
            next_id: 1,
        };
        xenstore::write(&format!("{dir}/ring-ref"), &format!("{ring_ref}"))?;
        xenstore::write(&format!("{dir}/event-channel"), &format!("{evtchn}"))?;
        xenstore::write(&format!("{dir}/protocol"), "x86_64-abi")?;
        xenbus::switch_state(dir, xenbus::INITIALISED)?;
        let state = xenbus::wait_state(&backend, CONNECT_TIMEOUT_NS, |s| s >= xenbus::CONNECTED)?;
        if state != xenbus::CONNECTED {
            return Err(BlkError::NotConnected(state));
        }
        disk.sectors = read_num(&format!("{backend}/sectors"), "sectors")?;
        disk.sector_size =
            u32::try_from(read_num(&format!("{backend}/sector-size"), "sector-size")?)
                .ok()
                .filter(|s| s.is_power_of_two() && (512..=4096).contains(s))
                .ok_or(BlkError::BadNode("sector-size"))?;
        disk.info = read_num(&format!("{backend}/info"), "info").unwrap_or(0) as u32;
        disk.flush = read_num(
            &format!("{backend}/feature-flush-cache"),
            "feature-flush-cache",
        )
        .unwrap_or(0)
            == 1;
        xenbus::switch_state(dir, xenbus::CONNECTED)?;
        Ok(disk)
    }

    /// Number of sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Bytes per sector.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    pub fn read_only(&self) -> bool {
        self.info & blkif::VDISK_READONLY != 0
    }

    /// The back end's domain.
    pub fn backend_id(&self) -> u16 {
        self.backend_id
    }

    fn check_range(&self, sector: u64, len: usize) -> Result<u64, BlkError> {
        let ss = self.sector_size as usize;
        if len % ss != 0 {
            return Err(BlkError::BadRange);
        }
        let count = (len / ss) as u64;
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(count),
            _ => Err(BlkError::BadRange),
        }
    }

    /// Reads whole sectors starting at `sector` into `buf`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.check_range(sector, buf.len())?;
        let per = u64::from(self.sector_size / 512);
        for (i, chunk) in buf.chunks_mut(PAGE_SIZE).enumerate() {
            let start = (sector + (i * PAGE_SIZE / self.sector_size as usize) as u64) * per;
            self.request(blkif::BLKIF_OP_READ, start, chunk.len())?;
            chunk.copy_from_slice(&self.buf.as_slice()[..chunk.len()]);
        }
        Ok(())
    }

    /// Writes whole sectors from `buf` starting at `sector`.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        if self.read_only() {
            return Err(BlkError::ReadOnly);
        }
        self.check_range(sector, buf.len())?;
        let per = u64::from(self.sector_size / 512);
        for (i, chunk) in buf.chunks(PAGE_SIZE).enumerate() {
            let start = (sector + (i * PAGE_SIZE / self.sector_size as usize) as u64) * per;
            self.buf.as_mut_slice()[..chunk.len()].copy_from_slice(chunk);
            self.request(blkif::BLKIF_OP_WRITE, start, chunk.len())?;
        }
        Ok(())
    }

    /// Asks the back end to flush its cache (a no-op if it does not offer flushing).
    pub fn flush(&mut self) -> Result<(), BlkError> {
        if !self.flush {
            return Ok(());
        }
        self.request(blkif::BLKIF_OP_FLUSH_DISKCACHE, 0, 0)
    }

    /// Sends one request of `len` bytes (at most a page) at 512-byte sector `sector512`
    /// through the bounce page, and waits for its response.
    fn request(&mut self, op: u8, sector512: u64, len: usize) -> Result<(), BlkError> {
        let base = self.ring.as_ptr();
        let header = base.cast::<SringHeader>();
        let mut req = BlkifRequest {
            operation: op,
            id: self.next_id,
            sector_number: sector512,
            ..Default::default()
        };
        self.next_id += 1;
        if len > 0 {
            req.nr_segments = 1;
            req.seg[0] = BlkifRequestSegment {
                gref: self.buf_ref,
                first_sect: 0,
                last_sect: (len / 512 - 1) as u8,
            };
        }
        let slot = (self.req_prod % RING_SIZE) as usize;
        // SAFETY: the ring page is ours; entries follow the 64-byte header, `slot` <
        // RING_SIZE entries fit in the page, and the back end reads only up to `req_prod`.
        unsafe {
            let entry = base
                .add(core::mem::size_of::<SringHeader>() + slot * ENTRY_SIZE)
                .cast::<BlkifRequest>();
            entry.write_volatile(req);
            fence(Ordering::SeqCst);
            self.req_prod = self.req_prod.wrapping_add(1);
            core::ptr::addr_of_mut!((*header).req_prod).write_volatile(self.req_prod);
        }
        fence(Ordering::SeqCst);
        crate::events::send(self.evtchn).map_err(BlkError::Event)?;
        let deadline = crate::time::system_time_ns().saturating_add(IO_TIMEOUT_NS);
        loop {
            // SAFETY: as above; the back end publishes responses up to `rsp_prod`.
            let prod = unsafe { core::ptr::addr_of!((*header).rsp_prod).read_volatile() };
            fence(Ordering::SeqCst);
            if prod != self.rsp_cons {
                let slot = (self.rsp_cons % RING_SIZE) as usize;
                // SAFETY: as above, for a published response.
                let rsp = unsafe {
                    base.add(core::mem::size_of::<SringHeader>() + slot * ENTRY_SIZE)
                        .cast::<BlkifResponse>()
                        .read_volatile()
                };
                self.rsp_cons = self.rsp_cons.wrapping_add(1);
                // SAFETY: as above; we own `rsp_event`.
                unsafe {
                    core::ptr::addr_of_mut!((*header).rsp_event)
                        .write_volatile(self.rsp_cons.wrapping_add(1))
                };
                if rsp.id != req.id {
                    continue;
                }
                return match rsp.status {
                    blkif::BLKIF_RSP_OKAY => Ok(()),
                    s => Err(BlkError::Io(s)),
                };
            }
            let now = crate::time::system_time_ns();
            if now >= deadline {
                return Err(BlkError::TimedOut);
            }
            crate::events::wait_any(&[self.evtchn], Some(deadline - now));
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        // Best effort: tell the back end we are going, then take the grants back.
        let _ = xenbus::switch_state(&self.dir, xenbus::CLOSING);
        let backend = xenstore::read(&format!("{}/backend", self.dir)).unwrap_or_default();
        if !backend.is_empty() {
            let _ = xenbus::wait_state(&backend, 2_000_000_000, |s| s >= xenbus::CLOSING);
        }
        let _ = xenbus::switch_state(&self.dir, xenbus::CLOSED);
        let _ = crate::events::evtchn_close(self.evtchn);
        let buf_back = gnttab::end_access(self.buf_ref).is_ok();
        let ring_back = gnttab::end_access(self.ring_ref).is_ok();
        // While the back end still maps a page, leak it rather than reuse memory it can write.
        if buf_back {
            // SAFETY: `buf` is dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.buf) };
        }
        if ring_back {
            // SAFETY: `ring` is dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.ring) };
        }
    }
}
