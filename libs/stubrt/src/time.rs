//! System time (nanoseconds since the hypervisor booted, from vCPU 0's time info and the TSC) and
//! wall-clock time (from the shared info page).

use core::ptr::addr_of;
use core::sync::atomic::{fence, Ordering};

use crate::shared::shared_info;
use xen_abi::SharedInfo;

/// Scales a TSC delta to nanoseconds the way `vcpu_time_info` describes.
pub fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let delta = if shift >= 0 {
        delta << shift
    } else {
        delta >> shift.unsigned_abs()
    };
    ((u128::from(delta) * u128::from(mul)) >> 32) as u64
}

/// Nanoseconds since the hypervisor booted (Xen's system time, not the domain's age).
pub fn system_time_ns() -> u64 {
    let si = shared_info();
    loop {
        // SAFETY: the shared info page lives for the whole program; Xen updates the time
        // fields under the version protocol, read here with volatile reads.
        let (v1, ts, sys, mul, shift) = unsafe {
            let t = addr_of!((*si).vcpu_info[0].time);
            let v1 = addr_of!((*t).version).read_volatile();
            fence(Ordering::SeqCst);
            (
                v1,
                addr_of!((*t).tsc_timestamp).read_volatile(),
                addr_of!((*t).system_time).read_volatile(),
                addr_of!((*t).tsc_to_system_mul).read_volatile(),
                addr_of!((*t).tsc_shift).read_volatile(),
            )
        };
        let tsc = crate::arch::rdtsc();
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        let v2 = unsafe { addr_of!((*si).vcpu_info[0].time.version).read_volatile() };
        if v1 & 1 == 0 && v1 == v2 {
            return sys.wrapping_add(scale_delta(tsc.wrapping_sub(ts), mul, shift));
        }
    }
}

/// Wall-clock time: seconds and nanoseconds since the Unix epoch.
pub fn wallclock() -> (u64, u32) {
    let si = shared_info();
    loop {
        // SAFETY: as in `system_time_ns`, for the wall-clock fields.
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
            let boot_ns = (u64::from(hi) << 32 | u64::from(sec)) * 1_000_000_000 + u64::from(nsec);
            let now = boot_ns + system_time_ns();
            return (now / 1_000_000_000, (now % 1_000_000_000) as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scale_delta;

    #[test]
    fn scaling_follows_the_xen_formula() {
        // (delta << shift) * mul / 2^32, with negative shifts dividing.
        for (delta, mul, shift, ns) in [
            (1000u64, 1u32 << 31, 0i8, 500u64),
            (1000, 1 << 31, 1, 1000),
            (1000, 1 << 31, -1, 250),
            (3_000_000_000, 0xaaaa_aaab, 0, 2_000_000_000),
        ] {
            assert_eq!(
                scale_delta(delta, mul, shift),
                ns,
                "{delta} {mul:#x} {shift}"
            );
        }
    }
}
