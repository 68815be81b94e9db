//! Event channels, by polling: upcalls stay masked (the precompiled `core` uses SSE and the
//! red zone, so no handler may interrupt it) and the runtime blocks in `SCHEDOP_poll`.

use core::sync::atomic::Ordering;

use crate::hypervisor::{self, XenError};
use crate::shared::pending_word;

pub use crate::hypervisor::{
    evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_bind_virq, evtchn_close,
};

/// Notifies the other end of `port`.
pub fn send(port: u32) -> Result<(), XenError> {
    hypervisor::evtchn_send(port)
}

/// Clears `port`'s pending bit and says whether it was set.
pub fn test_and_clear(port: u32) -> bool {
    match pending_word(port, false) {
        Some((word, bit)) => word.fetch_and(!bit, Ordering::SeqCst) & bit != 0,
        None => false,
    }
}

/// Waits until one of `ports` is pending or `timeout_ns` has passed (`None`: forever).
/// Returns the first pending port, whose pending bit it clears.
pub fn wait_any(ports: &[u32], timeout_ns: Option<u64>) -> Option<u32> {
    let deadline = timeout_ns.map(|t| crate::time::system_time_ns().saturating_add(t));
    let mut list = [0u32; 16];
    let n = ports.len().min(list.len());
    list[..n].copy_from_slice(&ports[..n]);
    loop {
        if let Some(&p) = list[..n].iter().find(|&&p| test_and_clear(p)) {
            return Some(p);
        }
        if let Some(d) = deadline {
            if crate::time::system_time_ns() >= d {
                return None;
            }
        }
        // A zero deadline means "no timeout" to Xen, so never pass 0 for a real deadline.
        if hypervisor::poll(&mut list[..n], deadline.map_or(0, |d| d.max(1))).is_err() {
            // Polling is unavailable (e.g. upcalls not masked): fall back to yielding.
            hypervisor::yield_now();
        }
    }
}
