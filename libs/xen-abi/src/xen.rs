//! Core structures from `xen/xen.h`, `xen/arch-x86/xen-x86_64.h`,
//! `xen/arch-x86/xen-x86_32.h` and `xen/arch-arm.h`.

use crate::{DomId, XenPfn, XenUlong};

pub const DOMID_SELF: DomId = 0x7ff0;
pub const PAGE_SHIFT: usize = 12;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// Virtual address at which Xen maps the read-only machine-to-physical table into every
/// x86_64 PV guest (`HYPERVISOR_VIRT_START`, also `MACH2PHYS_VIRT_START`).
#[cfg(not(any(target_arch = "x86", target_arch = "aarch64")))]
pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// The same for a 32-bit PAE PV guest (`__MACH2PHYS_VIRT_START` of `xen-x86_32.h`); the
/// hypervisor's own mappings start at `HYPERVISOR_VIRT_START_PAE`, 0xf5800000, too.
#[cfg(target_arch = "x86")]
pub const MACH2PHYS_VIRT_START: u64 = 0xf580_0000;

/// `XEN_LEGACY_MAX_VCPUS`: the vCPUs whose `vcpu_info` lives in [`SharedInfo`].
#[cfg(not(target_arch = "aarch64"))]
pub const LEGACY_MAX_VCPUS: usize = 32;
/// On Arm only vCPU 0's does.
#[cfg(target_arch = "aarch64")]
pub const LEGACY_MAX_VCPUS: usize = 1;

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

/// `struct start_info`: what a PV guest finds in `%rsi` (`%esi` for x86_32) at its entry
/// point.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    pub magic: [u8; 32],
    pub nr_pages: XenUlong,
    pub shared_info: XenUlong,
    pub flags: u32,
    pub store_mfn: XenPfn,
    pub store_evtchn: u32,
    pub console: StartInfoConsole,
    pub pt_base: XenUlong,
    pub nr_pt_frames: XenUlong,
    pub mfn_list: XenUlong,
    pub mod_start: XenUlong,
    pub mod_len: XenUlong,
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    pub first_p2m_pfn: XenUlong,
    pub nr_p2m_frames: XenUlong,
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

/// `struct arch_vcpu_info`.
#[cfg(not(target_arch = "aarch64"))]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArchVcpuInfo {
    pub cr2: XenUlong,
    #[cfg(not(target_arch = "x86"))]
    pub pad: XenUlong,
    /// x86_32: `pad[5]`.
    #[cfg(target_arch = "x86")]
    pub pad: [XenUlong; 5],
}

/// `struct arch_vcpu_info`: empty on Arm.
#[cfg(target_arch = "aarch64")]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArchVcpuInfo {}

/// `struct vcpu_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VcpuInfo {
    pub evtchn_upcall_pending: u8,
    pub evtchn_upcall_mask: u8,
    pub evtchn_pending_sel: XenUlong,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info`.
#[cfg(not(target_arch = "aarch64"))]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArchSharedInfo {
    pub max_pfn: XenUlong,
    pub pfn_to_mfn_frame_list_list: XenPfn,
    pub nmi_reason: XenUlong,
    pub p2m_cr3: XenUlong,
    pub p2m_vaddr: XenUlong,
    pub p2m_generation: XenUlong,
    /// x86_32 has no room for it in [`SharedInfo`].
    #[cfg(target_arch = "x86")]
    pub wc_sec_hi: u32,
}

/// `struct arch_shared_info`: empty on Arm.
#[cfg(target_arch = "aarch64")]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArchSharedInfo {}

/// Event channel bits per word of [`SharedInfo::evtchn_pending`] and `evtchn_mask`.
pub const EVTCHN_WORD_BITS: usize = XenUlong::BITS as usize;

/// `struct shared_info`: one page shared by Xen and the guest.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    pub evtchn_pending: [XenUlong; EVTCHN_WORD_BITS],
    pub evtchn_mask: [XenUlong; EVTCHN_WORD_BITS],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    #[cfg(not(target_arch = "x86"))]
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

impl SharedInfo {
    /// Where the wall clock's high seconds word is: in `arch` on x86_32, whose
    /// `shared_info` has no room for it.
    ///
    /// # Safety
    ///
    /// `si` must point into an allocation holding a whole `SharedInfo`.
    pub unsafe fn wc_sec_hi(si: *const SharedInfo) -> *const u32 {
        // SAFETY: the caller vouches that the field lies inside the allocation.
        unsafe {
            #[cfg(target_arch = "x86")]
            return core::ptr::addr_of!((*si).arch.wc_sec_hi);
            #[cfg(not(target_arch = "x86"))]
            return core::ptr::addr_of!((*si).wc_sec_hi);
        }
    }
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
    pub arg1: XenUlong,
    pub arg2: XenUlong,
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
