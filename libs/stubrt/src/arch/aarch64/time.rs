//! Time on Arm: the generic timer's virtual counter, which starts when the domain is created.
//! Xen's system time (what `SCHEDOP_poll` deadlines are in) is that plus a constant, learnt
//! once at boot from the runstate area: Xen writes its system time there whenever the vCPU
//! is scheduled.

use core::sync::atomic::{AtomicU64, Ordering};

/// Xen's system time at the virtual counter's zero, in nanoseconds.
static OFFSET_NS: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds since the domain was created (the virtual counter, `CNTVCT_EL0`).
fn counter_ns() -> u64 {
    #[cfg(target_arch = "aarch64")]
    {
        let (ticks, freq): (u64, u64);
        // SAFETY: reading the counter and its frequency has no side effects; the `isb`
        // keeps the read from being taken early.
        unsafe {
            core::arch::asm!("isb", "mrs {t}, cntvct_el0", "mrs {f}, cntfrq_el0", t = out(reg) ticks, f = out(reg) freq, options(nomem, nostack));
        }
        if freq == 0 {
            return 0;
        }
        (u128::from(ticks) * 1_000_000_000 / u128::from(freq)) as u64
    }
    #[cfg(not(target_arch = "aarch64"))]
    0
}

/// Nanoseconds since the hypervisor booted (Xen's system time).
pub fn system_time_ns() -> u64 {
    counter_ns().wrapping_add(OFFSET_NS.load(Ordering::Relaxed))
}

/// The time the shared info's wall clock counts from: on Arm Xen writes there the wall
/// time of the domain's creation, the virtual counter's zero.
pub fn wallclock_base_ns() -> u64 {
    counter_ns()
}

/// Learns Xen's system time: registers a runstate area, blocks for a moment (a poll on no
/// ports with a deadline already past) so that Xen schedules the vCPU again and writes the
/// time it did, and keeps the difference to the counter. Without it deadlines are simply
/// early and waits poll more often.
#[cfg(stubrt_image)]
pub(crate) fn calibrate() {
    use crate::shared::Page;
    use xen_abi::vcpu::VcpuRunstateInfo;
    // Xen keeps writing the area at every schedule: it must live for the whole program.
    static AREA: Page = Page::zeroed();
    let area = AREA.as_ptr().cast::<VcpuRunstateInfo>();
    // SAFETY: the page is reserved for Xen's runstate writes for the program's life.
    if unsafe { crate::hypervisor::register_runstate_area(area) }.is_err() {
        return;
    }
    let _ = crate::hypervisor::poll(&mut [], 1);
    // SAFETY: the area is mapped and Xen writes it whole while this vCPU is not running.
    let entry = unsafe { core::ptr::addr_of!((*area).state_entry_time).read_volatile() };
    OFFSET_NS.store(entry.saturating_sub(counter_ns()), Ordering::Relaxed);
}
