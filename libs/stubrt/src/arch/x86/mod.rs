//! What 64-bit and 32-bit x86 share: the PV memory code, the PV entry's Rust side, copy and
//! fill, time from the shared info and the time stamp counter. Each word size's module
//! (`x86_64`, `x86_32`) adds its boot code, hypercall sequence and address-space layout.

/// The assembler macros that write one Xen ELF note (`.note.Xen`: name "Xen", a type, a
/// payload), for both boot files' `global_asm!`: `xen_note TYPE, .long|.quad, VALUE` and
/// `xen_note_str TYPE, TEXT`.
#[cfg(stubrt_image)]
macro_rules! xen_note_macros {
    () => {
        r#"
    .macro xen_note_begin type
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 3f - 2f
    .long \type
    .asciz "Xen"
    .balign 4
    2:
    .endm
    .macro xen_note_end
    3: .balign 4
    .popsection
    .endm
    .macro xen_note type, payload_kind, payload
    xen_note_begin \type
    \payload_kind \payload
    xen_note_end
    .endm
    .macro xen_note_str type, text
    xen_note_begin \type
    .asciz "\text"
    xen_note_end
    .endm
"#
    };
}
#[cfg(stubrt_image)]
pub(super) use xen_note_macros;

#[cfg(stubrt_image)]
mod mem;
mod pv;
#[cfg(stubrt_image)]
mod pv_main;
mod time;

pub use pv::PvMemory;
pub use time::{system_time_ns, wallclock_base_ns};

use crate::global::Global;

/// A PV domain's memory (its pfn-to-mfn list and page tables), once boot set it up; none
/// for PVH.
static PV: Global<Option<PvMemory>> = Global::new(None);

/// The frame number other domains use for the page at `va`: the machine frame for PV, the
/// guest physical frame for PVH (virtual = physical there).
pub fn virt_to_frame(va: u64) -> u64 {
    if let Some(pv) = PV.try_lock().as_ref().and_then(|p| p.as_ref()) {
        return pv.pfn_to_mfn(va >> 12).unwrap_or(0);
    }
    va >> 12
}

/// Auto-translated x86 guests (PVH) have no grant region of their own: their grant frames
/// replace heap pages.
pub(crate) fn grant_region() -> Option<u64> {
    None
}

/// Maps the grant table's `frames` (as returned by `GNTTABOP_setup_table`, machine frames) for
/// PV at the architecture's `PV_GRANT_VA`; returns the virtual address of the first. PVH
/// does not use this.
pub(crate) fn map_grant_frames(frames: &[u64]) -> Option<u64> {
    let base = super::PV_GRANT_VA;
    let mut guard = PV.try_lock()?;
    let pv = guard.as_mut()?;
    for (i, &mfn) in frames.iter().enumerate() {
        pv.map_frame(base + (i as u64) * 4096, mfn).ok()?;
    }
    pv.finish().ok()?;
    Some(base)
}

/// Maps machine frame `mfn` at virtual address `va` (`HYPERVISOR_update_va_mapping`).
///
/// # Safety
///
/// Whatever was mapped at `va` becomes unreachable through `va`.
pub unsafe fn map_frame(
    va: u64,
    mfn: u64,
    writable: bool,
) -> Result<(), crate::hypervisor::XenError> {
    let flags = if writable { 0x63 } else { 0x21 };
    // SAFETY: the caller gives up the old mapping at `va`.
    let rc = unsafe { super::update_va_mapping(va, (mfn << 12) | flags, xen_abi::uvmf::INVLPG) };
    crate::hypervisor::check(rc).map(|_| ())
}

/// Reads the time stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads a counter into edx:eax.
    #[cfg(target_arch = "x86_64")]
    return unsafe { core::arch::x86_64::_rdtsc() };
    // SAFETY: as above.
    #[cfg(target_arch = "x86")]
    return unsafe { core::arch::x86::_rdtsc() };
}

/// Stops this vCPU for good, for when even the shutdown hypercall failed.
pub fn halt_forever() -> ! {
    loop {
        core::hint::spin_loop();
    }
}
