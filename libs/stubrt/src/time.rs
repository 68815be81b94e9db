//! System time (nanoseconds since the hypervisor booted, the clock `SCHEDOP_poll` deadlines
//! are in; each architecture reads it its own way) and wall-clock time (from the shared info
//! page).

use core::ptr::addr_of;
use core::sync::atomic::{fence, Ordering};

use crate::shared::shared_info;
use xen_abi::SharedInfo;

/// Nanoseconds since the hypervisor booted (Xen's system time, not the domain's age).
pub fn system_time_ns() -> u64 {
    crate::arch::system_time_ns()
}

/// Wall-clock time: seconds and nanoseconds since the Unix epoch.
pub fn wallclock() -> (u64, u32) {
    let si = shared_info();
    loop {
        // SAFETY: the shared info page lives for the whole program; Xen updates the
        // wall-clock fields under the version protocol, read here with volatile reads.
        let (v1, sec, hi, nsec) = unsafe {
            let v1 = addr_of!((*si).wc_version).read_volatile();
            fence(Ordering::SeqCst);
            (
                v1,
                addr_of!((*si).wc_sec).read_volatile(),
                SharedInfo::wc_sec_hi(si).read_volatile(),
                addr_of!((*si).wc_nsec).read_volatile(),
            )
        };
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        let v2 = unsafe { addr_of!((*si).wc_version).read_volatile() };
        if v1 & 1 == 0 && v1 == v2 {
            let base_ns = (u64::from(hi) << 32 | u64::from(sec)) * 1_000_000_000 + u64::from(nsec);
            let now = base_ns + crate::arch::wallclock_base_ns();
            return (now / 1_000_000_000, (now % 1_000_000_000) as u32);
        }
    }
}
