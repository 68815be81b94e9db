//! Core structures from `xen/xen.h` and `xen/arch-x86/xen-x86_64.h`.

use crate::{DomId, XenPfn};

pub const DOMID_SELF: DomId = 0x7ff0;
pub const PAGE_SHIFT: usize = 12;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// Virtual address at which Xen maps the read-only machine-to-physical table into every
/// x86_64 PV guest (`HYPERVISOR_VIRT_START`, also `MACH2PHYS_VIRT_START`).
pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;

/// `XEN_LEGACY_MAX_VCPUS` on x86.
pub const LEGACY_MAX_VCPUS: usize = 32;

/// `MAX_GUEST_CMDLINE`.
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// `start_info.flags` bits (`SIF_*`).
pub mod sif {
    pub const PRIVILEGED: u32 = 1 << 0;
    pub const INITDOMAIN: u32 = 1 << 1;
    pub const MULTIBOOT_MOD: u32 = 1 << 2;
    pub const MOD_START_PFN: u32 = 1 << 3;
    pub const VIRT_P2M_4TOOLS: u32 = 1 << 4;
}

/// Console description inside [`StartInfo`]: a ring page for a domU, an offset into the
/// start info page for dom0.
#[repr(C)]
#[derive(Clone, Copy)]
pub union StartInfoConsole {
    pub domu: StartInfoConsoleDomU,
    pub dom0: StartInfoConsoleDom0,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StartInfoConsoleDomU {
    pub mfn: XenPfn,
    pub evtchn: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StartInfoConsoleDom0 {
    pub info_off: u32,
    pub info_size: u32,
}

/// `struct start_info`: what a PV guest finds in `%rsi` at its entry point.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    pub magic: [u8; 32],
    pub nr_pages: u64,
    pub shared_info: u64,
    pub flags: u32,
    pub store_mfn: XenPfn,
    pub store_evtchn: u32,
    pub console: StartInfoConsole,
    pub pt_base: u64,
    pub nr_pt_frames: u64,
    pub mfn_list: u64,
    pub mod_start: u64,
    pub mod_len: u64,
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    pub first_p2m_pfn: u64,
    pub nr_p2m_frames: u64,
}

/// `struct vcpu_time_info`: the per-vCPU system time parameters.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VcpuTimeInfo {
    pub version: u32,
    pub pad0: u32,
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` (x86_64).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub pad: u64,
}

/// `struct vcpu_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VcpuInfo {
    pub evtchn_upcall_pending: u8,
    pub evtchn_upcall_mask: u8,
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (x86_64).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArchSharedInfo {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: XenPfn,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

/// `struct shared_info`: one page shared by Xen and the guest.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    pub evtchn_pending: [u64; 64],
    pub evtchn_mask: [u64; 64],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

/// `struct mmu_update`: one page-table write for `HYPERVISOR_mmu_update`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MmuUpdate {
    pub ptr: u64,
    pub val: u64,
}

/// `mmu_update.ptr` command in its low bits.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
pub const MMU_MACHPHYS_UPDATE: u64 = 1;

/// `struct mmuext_op`; the unions are flattened to their pointer-sized storage.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct MmuextOp {
    pub cmd: u32,
    pub arg1: u64,
    pub arg2: u64,
}

pub mod mmuext {
    pub const PIN_L1_TABLE: u32 = 0;
    pub const PIN_L2_TABLE: u32 = 1;
    pub const PIN_L3_TABLE: u32 = 2;
    pub const PIN_L4_TABLE: u32 = 3;
    pub const UNPIN_TABLE: u32 = 4;
    pub const NEW_BASEPTR: u32 = 5;
    pub const TLB_FLUSH_LOCAL: u32 = 6;
    pub const INVLPG_LOCAL: u32 = 7;
}

/// `HYPERVISOR_update_va_mapping` flags (`UVMF_*`).
pub mod uvmf {
    pub const NONE: u64 = 0;
    pub const TLB_FLUSH: u64 = 1;
    pub const INVLPG: u64 = 2;
    pub const LOCAL: u64 = 0;
    pub const ALL: u64 = 1 << 2;
}

/// `HYPERVISOR_vm_assist` commands and types.
pub mod vmasst {
    pub const CMD_ENABLE: u32 = 0;
    pub const CMD_DISABLE: u32 = 1;
    pub const TYPE_WRITABLE_PAGETABLES: u32 = 2;
}
