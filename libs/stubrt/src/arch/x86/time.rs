//! Time on x86: Xen's system time from vCPU 0's time info in the shared info page and the
//! time stamp counter.

use core::ptr::addr_of;
use core::sync::atomic::{fence, Ordering};

use crate::shared::shared_info;

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
        let tsc = super::rdtsc();
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        let v2 = unsafe { addr_of!((*si).vcpu_info[0].time.version).read_volatile() };
        if v1 & 1 == 0 && v1 == v2 {
            return sys.wrapping_add(scale_delta(tsc.wrapping_sub(ts), mul, shift));
        }
    }
}

/// The time the shared info's wall clock counts from: Xen's system time on x86.
pub fn wallclock_base_ns() -> u64 {
    system_time_ns()
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
