//! Grant tables, version 1: let another domain map or copy pages of ours.

use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU16, Ordering};

use xen_abi::grant_table::{gtf, GrantEntryV1, NR_RESERVED_ENTRIES};
use xen_abi::memory::mapspace;
use xen_abi::{XenPfn, XenUlong};

use crate::global::Global;
use crate::hypervisor::{self, XenError};

/// Grant-table frames to set up: 4 frames give 2048 entries.
const FRAMES: usize = 4;
const ENTRIES_PER_FRAME: u32 = 4096 / core::mem::size_of::<GrantEntryV1>() as u32;

/// Errors of the grant table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// Setting up the table failed.
    Setup(XenError),
    /// The table could not be mapped.
    Map,
    /// All entries are in use.
    Full,
    /// The other domain still has the page mapped.
    InUse,
}

impl core::fmt::Display for GrantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantError::Setup(e) => write!(f, "grant table setup failed: {e}"),
            GrantError::Map => f.write_str("cannot map the grant table"),
            GrantError::Full => f.write_str("grant table full"),
            GrantError::InUse => f.write_str("grant still in use"),
        }
    }
}

struct Table {
    entries: *mut GrantEntryV1,
    free: Vec<u32>,
}

static TABLE: Global<Option<Table>> = Global::new(None);

fn setup() -> Result<Table, GrantError> {
    let pv = crate::info().is_some_and(|i| i.kind == crate::BootKind::Pv);
    let entries = if pv {
        let mut frames: [XenPfn; FRAMES] = [0; FRAMES];
        hypervisor::gnttab_setup(&mut frames).map_err(GrantError::Setup)?;
        crate::arch::map_grant_frames(&frames.map(xen_abi::widen)).ok_or(GrantError::Map)?
    } else {
        // Auto-translated guests place the frames themselves: in the region the
        // architecture reserves for them (Arm's device tree names one), else over heap
        // pages, which Xen's grant-table frames replace.
        let base = match crate::arch::grant_region() {
            Some(base) => base as usize,
            None => {
                let layout = core::alloc::Layout::from_size_align(FRAMES * 4096, 4096)
                    .map_err(|_| GrantError::Map)?;
                // The pages are never freed: Xen's grant frames replace them.
                crate::mm::alloc(layout).ok_or(GrantError::Map)?.as_ptr() as usize
            }
        };
        for i in 0..FRAMES {
            // SAFETY: the frames at `base` are reserved for the grant table (a region
            // nothing else uses, or heap pages that are never freed).
            unsafe {
                hypervisor::add_to_physmap(
                    mapspace::GRANT_TABLE,
                    i as XenUlong,
                    ((base >> 12) + i) as XenPfn,
                )
            }
            .map_err(GrantError::Setup)?;
        }
        base as u64
    };
    let total = FRAMES as u32 * ENTRIES_PER_FRAME;
    Ok(Table {
        entries: entries as *mut GrantEntryV1,
        free: (NR_RESERVED_ENTRIES..total).rev().collect(),
    })
}

fn with_table<R>(f: impl FnOnce(&mut Table) -> Result<R, GrantError>) -> Result<R, GrantError> {
    let mut guard = TABLE.try_lock().ok_or(GrantError::Map)?;
    if guard.is_none() {
        *guard = Some(setup()?);
    }
    match guard.as_mut() {
        Some(t) => f(t),
        None => Err(GrantError::Map),
    }
}

/// Grants domain `domid` access to `frame` (see [`crate::mm::Page::frame`]).
pub fn grant_access(domid: u16, frame: u64, readonly: bool) -> Result<u32, GrantError> {
    with_table(|t| {
        let gref = t.free.pop().ok_or(GrantError::Full)?;
        let frame = u32::try_from(frame).map_err(|_| GrantError::Map)?;
        // SAFETY: `gref` is below the table's entry count and unused; the table is mapped
        // for the program's life. The flags are written last, after a fence, as the
        // protocol requires.
        unsafe {
            let e = t.entries.add(gref as usize);
            core::ptr::addr_of_mut!((*e).frame).write_volatile(frame);
            core::ptr::addr_of_mut!((*e).domid).write_volatile(domid);
            fence(Ordering::SeqCst);
            let flags = gtf::PERMIT_ACCESS | if readonly { gtf::READONLY } else { 0 };
            core::ptr::addr_of_mut!((*e).flags).write_volatile(flags);
        }
        Ok(gref)
    })
}

/// Revokes grant `gref`; fails with [`GrantError::InUse`] while the other side maps it.
pub fn end_access(gref: u32) -> Result<(), GrantError> {
    with_table(|t| {
        if gref < NR_RESERVED_ENTRIES || gref >= FRAMES as u32 * ENTRIES_PER_FRAME {
            return Err(GrantError::Map);
        }
        // SAFETY: `gref` is in range; Xen updates the flags atomically, so view them as an
        // atomic for the compare-and-swap.
        let flags = unsafe {
            AtomicU16::from_ptr(core::ptr::addr_of_mut!(
                (*t.entries.add(gref as usize)).flags
            ))
        };
        let mut cur = flags.load(Ordering::SeqCst);
        loop {
            if cur & (gtf::READING | gtf::WRITING) != 0 {
                return Err(GrantError::InUse);
            }
            match flags.compare_exchange(cur, 0, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        t.free.push(gref);
        Ok(())
    })
}
