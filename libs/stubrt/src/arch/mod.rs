//! Architecture-specific code. Each architecture module defines the same names: `hypercall`,
//! `system_time_ns` and `wallclock_base_ns` (the clocks), `halt_forever`, `virt_to_frame`
//! (the frame other domains use for a page), `grant_region` and `map_grant_frames` (where
//! the grant table's frames go), the boot entry points and their memory setup (which end in
//! `platform::start`). Nothing above `arch/` is per-architecture.

#[cfg(stubrt_image)]
mod libc;
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;
#[cfg(target_arch = "x86")]
mod x86_32;
#[cfg(target_arch = "x86")]
pub use self::x86_32::*;
#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use self::aarch64::*;

/// Host builds have no hypervisor: every hypercall fails with `-ENOSYS`.
///
/// # Safety
///
/// Always safe; `unsafe` to match the image build's signature.
#[cfg(not(stubrt_image))]
pub unsafe fn hypercall(
    _nr: usize,
    _a1: usize,
    _a2: usize,
    _a3: usize,
    _a4: usize,
    _a5: usize,
) -> isize {
    -(xen_abi::errno::ENOSYS as isize)
}
