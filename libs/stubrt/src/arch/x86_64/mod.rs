//! x86_64: boot for PV and PVH, the hypercall sequence, and where PV maps grant frames.
//! The PV memory code and PV entry are shared with x86_32 (`arch/x86`).

#[cfg(stubrt_image)]
mod boot;
#[cfg(stubrt_image)]
mod entry;

pub(crate) use super::x86::{grant_region, map_grant_frames};
pub use super::x86::{
    halt_forever, map_frame, rdtsc, system_time_ns, virt_to_frame, wallclock_base_ns, PvMemory,
};

/// Where grant-table frames are mapped for PV: an address range no pfn reaches.
pub(crate) const PV_GRANT_VA: u64 = 0x80_0000_0000;

/// Size of the boot stack, which is also the only stack.
pub const STACK_SIZE: usize = 64 * 1024;

#[cfg(stubrt_image)]
extern "C" {
    /// The page of hypercall stubs (32 bytes each), defined in `boot.rs`.
    static stubrt_hypercall_page: u8;
}

/// Issues hypercall `nr` with up to five arguments.
///
/// # Safety
///
/// The arguments must be valid for that hypercall: pointers must point at live, correctly
/// typed memory for the duration of the call, and the call must not break the memory the
/// program relies on (e.g. unmapping pages that are in use).
#[cfg(stubrt_image)]
pub unsafe fn hypercall(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> isize {
    let ret: isize;
    // SAFETY: the stub at `nr * 32` in the hypercall page is the hypervisor's calling
    // sequence; it takes arguments in rdi, rsi, rdx, r10, r8, returns in rax and may
    // clobber rcx and r11 (and the argument registers on debug builds of Xen). The caller
    // vouches for the arguments.
    unsafe {
        let stub = core::ptr::addr_of!(stubrt_hypercall_page) as usize + nr * 32;
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inout("rdi") a1 => _,
            inout("rsi") a2 => _,
            inout("rdx") a3 => _,
            inout("r10") a4 => _,
            inout("r8") a5 => _,
            lateout("rax") ret,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// `HYPERVISOR_update_va_mapping`: maps `pte` at `va` (the entry fits one register).
///
/// # Safety
///
/// As [`hypercall`]: whatever was mapped at `va` becomes unreachable through it.
pub(crate) unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> isize {
    let nr = xen_abi::hypercall::UPDATE_VA_MAPPING;
    // SAFETY: the caller vouches for the mapping.
    unsafe { super::hypercall(nr, va as usize, pte as usize, flags as usize, 0, 0) }
}

/// Points the PVH hypercall page MSR (from CPUID leaf `base + 2` of Xen's leaves) at our
/// hypercall page so that Xen fills it with `vmcall`/`vmmcall` stubs.
#[cfg(stubrt_image)]
pub fn pvh_init_hypercall_page() -> bool {
    use core::arch::x86_64::__cpuid;
    let mut base = 0x4000_0000u32;
    while base < 0x4001_0000 {
        // SAFETY: CPUID is always available in long mode and has no side effects. (Newer
        // compilers consider `__cpuid` safe, older ones do not.)
        #[allow(unused_unsafe)]
        let leaf = unsafe { __cpuid(base) };
        // "XenVMMXenVMM" in ebx, ecx, edx.
        if leaf.ebx == 0x566e_6558
            && leaf.ecx == 0x65584d4d
            && leaf.edx == 0x4d4d_566e
            && leaf.eax >= base + 2
        {
            // SAFETY: as above.
            #[allow(unused_unsafe)]
            let pages = unsafe { __cpuid(base + 2) };
            let page = core::ptr::addr_of!(stubrt_hypercall_page) as u64;
            // SAFETY: writing Xen's hypercall MSR with the (identity-mapped, so physical)
            // address of a page reserved for this purpose; Xen only writes that page.
            unsafe {
                core::arch::asm!(
                    "wrmsr",
                    in("ecx") pages.ebx,
                    in("eax") page as u32,
                    in("edx") (page >> 32) as u32,
                    options(nostack)
                );
            }
            return true;
        }
        base += 0x100;
    }
    false
}
