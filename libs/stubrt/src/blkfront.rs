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
use crate::ring;
use crate::xenbus::{self, ConnectStep};
use crate::xenstore::{self, Error as XsError, RingError};

const RING_SIZE: u32 = ring_size(PAGE_SIZE, blkif::RING_ENTRY_SIZE) as u32;
const CONNECT_TIMEOUT_NS: u64 = 10_000_000_000;
const IO_TIMEOUT_NS: u64 = 30_000_000_000;
const CLOSE_TIMEOUT_NS: u64 = 2_000_000_000;

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
    backend: String,
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

/// Checks that `len` bytes are whole sectors of `sector_size` inside a disk of `sectors`
/// sectors when starting at `sector`; returns the number of sectors.
pub fn check_range(
    sector: u64,
    len: usize,
    sector_size: u32,
    sectors: u64,
) -> Result<u64, BlkError> {
    let ss = sector_size as usize;
    if ss == 0 || len % ss != 0 {
        return Err(BlkError::BadRange);
    }
    let count = (len / ss) as u64;
    match sector.checked_add(count) {
        Some(end) if end <= sectors => Ok(count),
        _ => Err(BlkError::BadRange),
    }
}

/// Splits a transfer of `len` bytes at `sector` (of `sector_size` bytes) into requests of at
/// most one page: (512-byte sector number, offset in the buffer, bytes). Ranges must have
/// passed [`check_range`].
pub fn split(
    sector: u64,
    len: usize,
    sector_size: u32,
) -> impl Iterator<Item = (u64, usize, usize)> {
    let per_sector = u64::from(sector_size / 512);
    let sectors_per_page = (PAGE_SIZE / sector_size.max(1) as usize) as u64;
    (0..len.div_ceil(PAGE_SIZE)).map(move |i| {
        let offset = i * PAGE_SIZE;
        let start = (sector + i as u64 * sectors_per_page) * per_sector;
        (start, offset, (len - offset).min(PAGE_SIZE))
    })
}

/// The ring request for `len` bytes (whole 512-byte sectors, at most a page) at 512-byte
/// sector `sector512` through the granted page `gref`; `len` 0 sends no segment (a flush).
pub fn build_request(
    op: u8,
    id: u64,
    sector512: u64,
    len: usize,
    gref: u32,
) -> Result<BlkifRequest, BlkError> {
    if len % 512 != 0 || len > PAGE_SIZE {
        return Err(BlkError::BadRange);
    }
    let mut req = BlkifRequest {
        operation: op,
        id,
        sector_number: sector512,
        ..Default::default()
    };
    if len > 0 {
        req.nr_segments = 1;
        req.seg[0] = BlkifRequestSegment {
            gref,
            first_sect: 0,
            // At most PAGE_SIZE / 512 - 1 = 7.
            last_sect: (len / 512 - 1) as u8,
        };
    }
    Ok(req)
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
        let buf_ref = match gnttab::grant_access(backend_id, buf.frame(), false) {
            Ok(r) => r,
            Err(e) => {
                // Nobody has seen the ring grant yet: take it back and free both pages.
                let _ = gnttab::end_access(ring_ref);
                return Err(e.into());
            }
        };
        let evtchn = match crate::events::evtchn_alloc_unbound(backend_id) {
            Ok(p) => p,
            Err(e) => {
                let _ = gnttab::end_access(ring_ref);
                let _ = gnttab::end_access(buf_ref);
                return Err(BlkError::Event(e));
            }
        };
        // From here on, dropping `disk` closes the connection and takes the grants back.
        let mut disk = Disk {
            dir: String::from(dir),
            backend,
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
        disk.connect()?;
        Ok(disk)
    }

    /// Runs the xenbus handshake with the back end until both are Connected.
    fn connect(&mut self) -> Result<(), BlkError> {
        let watch = xenbus::StateWatch::new(&self.backend)?;
        let deadline = crate::time::system_time_ns().saturating_add(CONNECT_TIMEOUT_NS);
        let mut front = xenbus::INITIALISING;
        loop {
            let back = xenbus::state(&self.backend)?;
            match xenbus::connect_step(front, back) {
                ConnectStep::Publish => {
                    let dir = &self.dir;
                    xenstore::write(&format!("{dir}/ring-ref"), &format!("{}", self.ring_ref))?;
                    xenstore::write(&format!("{dir}/event-channel"), &format!("{}", self.evtchn))?;
                    xenstore::write(&format!("{dir}/protocol"), blkif::PROTOCOL_NATIVE)?;
                    xenbus::switch_state(dir, xenbus::INITIALISED)?;
                    front = xenbus::INITIALISED;
                }
                ConnectStep::Connect => {
                    self.read_backend()?;
                    xenbus::switch_state(&self.dir, xenbus::CONNECTED)?;
                    front = xenbus::CONNECTED;
                }
                ConnectStep::Done => return Ok(()),
                ConnectStep::Fail => return Err(BlkError::NotConnected(back)),
                ConnectStep::Wait => match watch.wait(deadline) {
                    Ok(()) => {}
                    Err(XsError::Transport(RingError::TimedOut)) => {
                        return Err(BlkError::NotConnected(back))
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        }
    }

    /// Reads the connected back end's properties.
    fn read_backend(&mut self) -> Result<(), BlkError> {
        let backend = &self.backend;
        self.sectors = read_num(&format!("{backend}/sectors"), "sectors")?;
        self.sector_size =
            u32::try_from(read_num(&format!("{backend}/sector-size"), "sector-size")?)
                .ok()
                .filter(|s| s.is_power_of_two() && (512..=4096).contains(s))
                .ok_or(BlkError::BadNode("sector-size"))?;
        self.info = read_num(&format!("{backend}/info"), "info")
            .ok()
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(0);
        self.flush = read_num(
            &format!("{backend}/feature-flush-cache"),
            "feature-flush-cache",
        )
        .is_ok_and(|f| f == 1);
        Ok(())
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

    /// Reads whole sectors starting at `sector` into `buf`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        check_range(sector, buf.len(), self.sector_size, self.sectors)?;
        for (start, offset, len) in split(sector, buf.len(), self.sector_size) {
            self.request(blkif::BLKIF_OP_READ, start, len)?;
            buf[offset..offset + len].copy_from_slice(&self.buf.as_slice()[..len]);
        }
        Ok(())
    }

    /// Writes whole sectors from `buf` starting at `sector`.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        if self.read_only() {
            return Err(BlkError::ReadOnly);
        }
        check_range(sector, buf.len(), self.sector_size, self.sectors)?;
        for (start, offset, len) in split(sector, buf.len(), self.sector_size) {
            self.buf.as_mut_slice()[..len].copy_from_slice(&buf[offset..offset + len]);
            self.request(blkif::BLKIF_OP_WRITE, start, len)?;
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
        let req = build_request(op, self.next_id, sector512, len, self.buf_ref)?;
        self.next_id += 1;
        let slot = ring::slot(self.req_prod, RING_SIZE);
        // SAFETY: the ring page is ours; entries follow the 64-byte header, `slot` <
        // RING_SIZE entries fit in the page, and the back end reads only up to `req_prod`.
        unsafe {
            let entry = base
                .add(core::mem::size_of::<SringHeader>() + slot * blkif::RING_ENTRY_SIZE)
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
                let slot = ring::slot(self.rsp_cons, RING_SIZE);
                // SAFETY: as above, for a published response.
                let rsp = unsafe {
                    base.add(core::mem::size_of::<SringHeader>() + slot * blkif::RING_ENTRY_SIZE)
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
        let _ = xenbus::wait_state(&self.backend, CLOSE_TIMEOUT_NS, xenbus::let_go);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_page_ring_holds_32_requests() {
        assert_eq!(blkif::RING_ENTRY_SIZE, 112);
        assert_eq!(RING_SIZE, 32);
    }

    #[test]
    fn ranges_must_be_whole_sectors_inside_the_disk() {
        // (first sector, bytes, sector size, disk sectors, sectors or None for BadRange)
        for (sector, len, ss, sectors, want) in [
            (0u64, 512usize, 512u32, 16384u64, Some(1u64)),
            (0, 0, 512, 16384, Some(0)),
            (16383, 512, 512, 16384, Some(1)),
            (16383, 1024, 512, 16384, None),
            (16384, 512, 512, 16384, None),
            (0, 100, 512, 16384, None),
            (0, 4096, 4096, 2, Some(1)),
            (1, 8192, 4096, 2, None),
            (0, 512, 4096, 2, None),
            (u64::MAX, 512, 512, u64::MAX, None),
            (0, 512, 0, 10, None),
        ] {
            let got = check_range(sector, len, ss, sectors).ok();
            assert_eq!(got, want, "check_range({sector}, {len}, {ss}, {sectors})");
        }
    }

    #[test]
    fn transfers_split_into_page_sized_requests() {
        // (first sector, bytes, sector size, [(512-byte sector, offset, bytes)])
        type Piece = (u64, usize, usize);
        let cases: &[(u64, usize, u32, &[Piece])] = &[
            (0, 512, 512, &[(0, 0, 512)]),
            (3, 4096, 512, &[(3, 0, 4096)]),
            (3, 5120, 512, &[(3, 0, 4096), (11, 4096, 1024)]),
            (
                10,
                12288,
                512,
                &[(10, 0, 4096), (18, 4096, 4096), (26, 8192, 4096)],
            ),
            // 4 KiB sectors: one per page, numbered in 512-byte units on the ring.
            (2, 8192, 4096, &[(16, 0, 4096), (24, 4096, 4096)]),
            (0, 0, 512, &[]),
        ];
        for &(sector, len, ss, want) in cases {
            let got: Vec<_> = split(sector, len, ss).collect();
            assert_eq!(got, want, "split({sector}, {len}, {ss})");
        }
    }

    #[test]
    fn requests_describe_one_granted_page() {
        // (op, bytes, 512-byte sector, Some((nr_segments, last_sect)) or None for BadRange)
        for (op, len, sector, want) in [
            (blkif::BLKIF_OP_READ, 512usize, 0u64, Some((1u8, 0u8))),
            (blkif::BLKIF_OP_READ, 4096, 7, Some((1, 7))),
            (blkif::BLKIF_OP_WRITE, 1536, 100, Some((1, 2))),
            (blkif::BLKIF_OP_FLUSH_DISKCACHE, 0, 0, Some((0, 0))),
            (blkif::BLKIF_OP_READ, 100, 0, None),
            (blkif::BLKIF_OP_READ, 8192, 0, None),
        ] {
            match (build_request(op, 42, sector, len, 9), want) {
                (Ok(req), Some((nr, last))) => {
                    let desc = format!("op {op} len {len}");
                    assert_eq!(req.operation, op, "{desc}");
                    assert_eq!(req.id, 42, "{desc}");
                    assert_eq!(req.sector_number, sector, "{desc}");
                    assert_eq!(req.nr_segments, nr, "{desc}");
                    let seg = req.seg[0];
                    if nr == 1 {
                        assert_eq!((seg.gref, seg.first_sect, seg.last_sect), (9, 0, last));
                    } else {
                        assert_eq!((seg.gref, seg.first_sect, seg.last_sect), (0, 0, 0));
                    }
                }
                (Err(BlkError::BadRange), None) => {}
                (got, want) => panic!("op {op} len {len}: got {got:?}, want {want:?}"),
            }
        }
    }
}
