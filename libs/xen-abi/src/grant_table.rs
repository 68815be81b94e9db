//! Grant tables, version 1 (`xen/grant_table.h`), used with `HYPERVISOR_grant_table_op`.

use crate::{DomId, GuestHandle, XenPfn};

pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
pub const GNTTABOP_SET_VERSION: u32 = 8;

/// `grant_entry_v1.flags` bits (`GTF_*`).
pub mod gtf {
    pub const INVALID: u16 = 0;
    pub const PERMIT_ACCESS: u16 = 1;
    pub const ACCEPT_TRANSFER: u16 = 2;
    pub const TYPE_MASK: u16 = 3;
    pub const READONLY: u16 = 1 << 2;
    pub const READING: u16 = 1 << 3;
    pub const WRITING: u16 = 1 << 4;
}

/// Grant references below this are reserved for the toolstack (console, xenstore).
pub const NR_RESERVED_ENTRIES: u32 = 8;

/// `struct grant_entry_v1`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GrantEntryV1 {
    pub flags: u16,
    pub domid: DomId,
    /// The frame granted: a GMFN for PV, a GFN for PVH.
    pub frame: u32,
}

/// `struct gnttab_setup_table`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct GnttabSetupTable {
    pub dom: DomId,
    pub nr_frames: u32,
    /// Output: a `GNTST_*` code.
    pub status: i16,
    pub frame_list: GuestHandle<XenPfn>,
}

/// `struct gnttab_query_size`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GnttabQuerySize {
    pub dom: DomId,
    /// Output.
    pub nr_frames: u32,
    /// Output.
    pub max_nr_frames: u32,
    /// Output.
    pub status: i16,
}

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;
