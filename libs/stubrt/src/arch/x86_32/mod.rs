//! x86_32: a 32-bit PAE PV guest (PV only: Xen has no 32-bit PVH). Boot, the hypercall
//! sequence, and where PV maps grant frames; the PV memory code and PV entry are shared
//! with x86_64 (`arch/x86`).

#[cfg(stubrt_image)]
mod boot;

pub(crate) use super::x86::{grant_region, map_grant_frames};
pub use super::x86::{
    halt_forever, map_frame, rdtsc, system_time_ns, virt_to_frame, wallclock_base_ns, PvMemory,
};

/// Where grant-table frames are mapped for PV: the second GiB, which no pfn of a stub
/// domain reaches and which lies below Xen's part of the address space (0xf5800000 up).
pub(crate) const PV_GRANT_VA: u64 = 0x4000_0000;

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
    let args = [a1, a2, a3, a4, a5];
    let ret: isize;
    // SAFETY: the stub at `nr * 32` in the hypercall page is the hypervisor's calling
    // sequence; it takes arguments in ebx, ecx, edx, esi, edi and returns in eax. LLVM
    // keeps ebx and esi for itself, so they are saved around the call and loaded from
    // `args` here; edi (the pointer) is loaded last. The caller vouches for the arguments.
    unsafe {
        let stub = core::ptr::addr_of!(stubrt_hypercall_page) as usize + nr * 32;
        core::arch::asm!(
            "push ebx",
            "push esi",
            "mov ebx, [edi]",
            "mov ecx, [edi + 4]",
            "mov edx, [edi + 8]",
            "mov esi, [edi + 12]",
            "mov edi, [edi + 16]",
            "call eax",
            "pop esi",
            "pop ebx",
            inout("eax") stub => ret,
            inout("edi") args.as_ptr() => _,
            lateout("ecx") _,
            lateout("edx") _,
        );
    }
    ret
}

/// `HYPERVISOR_update_va_mapping`: maps `pte` at `va`; the 64-bit PAE entry travels in two
/// registers, low word first.
///
/// # Safety
///
/// As [`hypercall`]: whatever was mapped at `va` becomes unreachable through it.
pub(crate) unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> isize {
    let nr = xen_abi::hypercall::UPDATE_VA_MAPPING;
    let (low, high) = (pte as u32 as usize, (pte >> 32) as usize);
    // SAFETY: the caller vouches for the mapping.
    unsafe { super::hypercall(nr, va as usize, low, high, flags as usize, 0) }
}
