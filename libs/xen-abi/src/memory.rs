//! Memory operations (`xen/memory.h`), used with `HYPERVISOR_memory_op`.

use crate::{DomId, GuestHandle, XenPfn, XenUlong};

pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
pub const XENMEM_MEMORY_MAP: u32 = 9;

/// `xen_add_to_physmap.space` values (`XENMAPSPACE_*`).
pub mod mapspace {
    pub const SHARED_INFO: u32 = 0;
    pub const GRANT_TABLE: u32 = 1;
    pub const GMFN: u32 = 2;
}

/// `struct xen_memory_reservation`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XenMemoryReservation {
    pub extent_start: GuestHandle<XenPfn>,
    pub nr_extents: XenUlong,
    pub extent_order: u32,
    pub mem_flags: u32,
    pub domid: DomId,
}

/// `struct xen_add_to_physmap`: map a Xen-owned page (shared info, grant table frame) at a
/// guest frame of an auto-translated (PVH) guest.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenAddToPhysmap {
    pub domid: DomId,
    pub size: u16,
    pub space: u32,
    pub idx: XenUlong,
    pub gpfn: XenPfn,
}

/// `struct xen_memory_map`: `XENMEM_memory_map` fills `buffer` with up to `nr_entries`
/// E820 entries ([`E820Entry`]) and sets `nr_entries` to the number written.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct XenMemoryMap {
    pub nr_entries: u32,
    pub buffer: GuestHandle<E820Entry>,
}

/// One entry of the E820 memory map as Xen writes it: packed, 20 bytes.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}
