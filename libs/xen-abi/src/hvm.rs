//! HVM/PVH interfaces: `xen/hvm/hvm_op.h`, `xen/hvm/params.h` and the PVH start info of
//! `xen/arch-x86/hvm/start_info.h`.

use crate::DomId;

pub const HVMOP_SET_PARAM: u32 = 0;
pub const HVMOP_GET_PARAM: u32 = 1;

pub const HVM_PARAM_STORE_PFN: u32 = 1;
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct XenHvmParam {
    pub domid: DomId,
    pub pad: u16,
    pub index: u32,
    pub value: u64,
}

/// `XEN_HVM_START_MAGIC_VALUE`, found in `hvm_start_info.magic`.
pub const HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// `struct hvm_start_info`: what a PVH guest finds at the physical address in `%ebx`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HvmStartInfo {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub nr_modules: u32,
    pub modlist_paddr: u64,
    pub cmdline_paddr: u64,
    pub rsdp_paddr: u64,
    pub memmap_paddr: u64,
    pub memmap_entries: u32,
    pub reserved: u32,
}

/// `struct hvm_modlist_entry`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HvmModlistEntry {
    pub paddr: u64,
    pub size: u64,
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HvmMemmapTableEntry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
    pub reserved: u32,
}

/// `hvm_memmap_table_entry.type` values (E820 types).
pub const HVM_MEMMAP_TYPE_RAM: u32 = 1;
pub const HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
pub const HVM_MEMMAP_TYPE_ACPI: u32 = 3;
