//! The Xen hypervisor ABI as seen by an x86 guest (64-bit PV or PVH, 32-bit PAE PV) or an
//! aarch64 guest: hypercall numbers, the start-of-day and shared structures, event channel,
//! scheduler, vCPU, grant table and memory operations, and the console, xenstore and block
//! ring layouts.
//!
//! C's `unsigned long` fields are [`XenUlong`], so one definition serves both word sizes
//! (Arm's `xen_ulong_t` is 64 bits, as `unsigned long` is on aarch64); the few structures
//! whose x86_32 or Arm form differs in more than word size are `cfg`'d.
//!
//! Plain data only: no functions, no behaviour. Every structure mirrors the C definition in
//! Xen's public headers (`xen/*.h`, interface version `__XEN_LATEST_INTERFACE_VERSION__`)
//! and `tests/layout.rs` checks sizes and field offsets against those headers.
#![no_std]

pub mod elfnote;
pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod io;
pub mod memory;
pub mod sched;
pub mod vcpu;
pub mod xen;

// The 32-bit layout, checked against Xen's headers by tests/layout.rs.
#[cfg(target_arch = "x86")]
mod layout_x86_32;
// The arm64 layout, likewise.
#[cfg(target_arch = "aarch64")]
mod layout_aarch64;

pub use xen::*;

/// Domain identifier (`domid_t`).
pub type DomId = u16;
/// Event channel port (`evtchn_port_t`).
pub type EvtchnPort = u32;
/// Grant reference (`grant_ref_t`).
pub type GrantRef = u32;
/// C's `unsigned long` as Xen's x86 headers use it (and `xen_ulong_t` on x86): the
/// guest's word.
pub type XenUlong = core::ffi::c_ulong;
/// Guest/machine frame number (`xen_pfn_t`).
pub type XenPfn = XenUlong;

/// Widens a guest word to 64 bits: lossless on every target (a plain `u64::from` is a
/// no-op conversion on 64-bit ones).
#[allow(clippy::unnecessary_cast)] // the same type on 64-bit targets
pub const fn widen(word: XenUlong) -> u64 {
    word as u64
}

/// A guest handle (`XEN_GUEST_HANDLE(T)`): on x86 a plain pointer-sized field, on Arm a
/// 64-bit one (the same on aarch64).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct GuestHandle<T> {
    pub p: *mut T,
}

/// Hypercall numbers (`__HYPERVISOR_*`), each the index of a 32-byte stub in the hypercall page.
pub mod hypercall {
    pub const SET_TRAP_TABLE: usize = 0;
    pub const MMU_UPDATE: usize = 1;
    pub const SET_GDT: usize = 2;
    pub const STACK_SWITCH: usize = 3;
    pub const SET_CALLBACKS: usize = 4;
    pub const FPU_TASKSWITCH: usize = 5;
    pub const PLATFORM_OP: usize = 7;
    pub const MEMORY_OP: usize = 12;
    pub const MULTICALL: usize = 13;
    pub const UPDATE_VA_MAPPING: usize = 14;
    pub const SET_TIMER_OP: usize = 15;
    pub const XEN_VERSION: usize = 17;
    pub const CONSOLE_IO: usize = 18;
    pub const GRANT_TABLE_OP: usize = 20;
    pub const VM_ASSIST: usize = 21;
    pub const VCPU_OP: usize = 24;
    pub const SET_SEGMENT_BASE: usize = 25;
    pub const MMUEXT_OP: usize = 26;
    pub const SCHED_OP: usize = 29;
    pub const CALLBACK_OP: usize = 30;
    pub const EVENT_CHANNEL_OP: usize = 32;
    pub const PHYSDEV_OP: usize = 33;
    pub const HVM_OP: usize = 34;
}

/// `HYPERVISOR_console_io` commands.
pub mod console_io {
    pub const WRITE: u32 = 0;
    pub const READ: u32 = 1;
}

/// `HYPERVISOR_xen_version` commands.
pub mod xen_version {
    pub const VERSION: u32 = 0;
    pub const EXTRAVERSION: u32 = 1;
    pub const GET_FEATURES: u32 = 6;
}

/// Feature bits (`XENFEAT_*`) as reported by `XENVER_get_features` and listed in the
/// `SUPPORTED_FEATURES` ELF note.
pub mod features {
    pub const WRITABLE_PAGE_TABLES: u32 = 0;
    pub const WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
    pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
    pub const SUPERVISOR_MODE_KERNEL: u32 = 3;
    pub const PAE_PGDIR_ABOVE_4GB: u32 = 4;
    pub const HVM_CALLBACK_VECTOR: u32 = 8;
    pub const DOM0: u32 = 11;
}

/// Xen error numbers (`XEN_E*`) as returned, negated, by hypercalls.
pub mod errno {
    pub const EPERM: i32 = 1;
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const E2BIG: i32 = 7;
    pub const ENOMEM: i32 = 12;
    pub const EACCES: i32 = 13;
    pub const EFAULT: i32 = 14;
    pub const EBUSY: i32 = 16;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const ENOSPC: i32 = 28;
    pub const ENOSYS: i32 = 38;
    pub const EAGAIN: i32 = 11;
}
