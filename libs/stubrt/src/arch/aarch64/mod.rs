//! aarch64: boot through the arm64 Image header with the device tree in `x0`, an identity
//! map with caches on, hypercalls with `hvc #0xEA1`, time from the generic timer's counter
//! (Xen's system time learnt once from the runstate area), grant frames in the region the
//! device tree's `/hypervisor` node names, and Xen's emulated SBSA UART as a console when the
//! domain has no PV console (a dom0less domain).

#[cfg(stubrt_image)]
mod boot;
#[cfg(stubrt_image)]
mod entry;
#[cfg(stubrt_image)]
mod mem;
mod time;

#[cfg(stubrt_image)]
pub(crate) use time::calibrate;
pub use time::{system_time_ns, wallclock_base_ns};

use crate::global::Global;

/// Xen's grant-table and magic-page windows of a guest's address space (`GUEST_GNTTAB_BASE`
/// to the end of `GUEST_MAGIC_BASE`'s): the boot code maps them as normal memory, the rest of
/// the first GiB as device memory.
pub(crate) const NORMAL_WINDOW: (u64, u64) = (0x3800_0000, 0x3a00_0000);

/// Size of the boot stack, which is also the only stack.
pub const STACK_SIZE: usize = 64 * 1024;

/// Where the grant table's frames go: the region of the `/hypervisor` node, set at boot.
static GRANT_REGION: Global<Option<u64>> = Global::new(None);

/// The guest frame at which the grant table's frames are to be mapped (from the device
/// tree), if boot found one.
pub(crate) fn grant_region() -> Option<u64> {
    GRANT_REGION.try_lock().and_then(|g| *g)
}

/// Grant tables are mapped by frame on Arm (auto-translated); nothing maps them by address.
pub(crate) fn map_grant_frames(_frames: &[u64]) -> Option<u64> {
    None
}

/// The frame other domains use for the page at `va`: the guest frame, as virtual addresses
/// are guest physical addresses here.
pub fn virt_to_frame(va: u64) -> u64 {
    va >> 12
}

/// Issues hypercall `nr` with up to five arguments.
///
/// # Safety
///
/// The arguments must be valid for that hypercall: pointers must point at live, correctly
/// typed memory for the duration of the call, and the call must not break the memory the
/// program relies on.
#[cfg(stubrt_image)]
pub unsafe fn hypercall(nr: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> isize {
    let ret: isize;
    // SAFETY: `hvc #0xEA1` is Xen's hypercall: number in x16, arguments in x0-x4, result in
    // x0; debug builds of Xen clobber the argument registers and x16. The caller vouches for
    // the arguments.
    unsafe {
        core::arch::asm!(
            "hvc #0xea1",
            inlateout("x0") a1 => ret,
            inlateout("x1") a2 => _,
            inlateout("x2") a3 => _,
            inlateout("x3") a4 => _,
            inlateout("x4") a5 => _,
            inlateout("x16") nr => _,
            options(nostack),
        );
    }
    ret
}

/// Stops this vCPU for good, for when even the shutdown hypercall failed.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: `wfi` only waits (Xen deschedules the vCPU); interrupts stay masked.
        #[cfg(stubrt_image)]
        unsafe {
            core::arch::asm!("wfi", options(nomem, nostack))
        };
        core::hint::spin_loop();
    }
}
