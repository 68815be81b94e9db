//! The shared info page: a page of our image that the boot code turns into Xen's shared
//! info (PV: remapped onto its machine frame; PVH: replaced with `XENMAPSPACE_shared_info`).

use core::cell::UnsafeCell;
use core::sync::atomic::AtomicU64;

use xen_abi::SharedInfo;

#[repr(C, align(4096))]
pub(crate) struct Page(UnsafeCell<[u8; 4096]>);

// SAFETY: the page is only accessed through raw pointers with volatile or atomic accesses,
// by one vCPU (and by Xen, which is what those accesses are for).
unsafe impl Sync for Page {}

pub(crate) static SHARED_INFO_PAGE: Page = Page(UnsafeCell::new([0; 4096]));

/// The page's address, for the boot code to map Xen's shared info there.
#[cfg_attr(not(stubrt_image), allow(dead_code))]
pub(crate) fn page_addr() -> u64 {
    SHARED_INFO_PAGE.0.get() as u64
}

pub(crate) fn shared_info() -> *mut SharedInfo {
    SHARED_INFO_PAGE.0.get().cast()
}

/// The word of `evtchn_pending` (or `evtchn_mask`) that holds `port`'s bit.
pub(crate) fn pending_word(port: u32, mask: bool) -> Option<&'static AtomicU64> {
    let idx = usize::try_from(port / 64).ok().filter(|&i| i < 64)?;
    let si = shared_info();
    // SAFETY: `idx` < 64, the length of both arrays; the shared info page lives for the whole
    // program and Xen updates these words atomically, so viewing them as atomics is sound.
    unsafe {
        let word = if mask {
            core::ptr::addr_of_mut!((*si).evtchn_mask[idx])
        } else {
            core::ptr::addr_of_mut!((*si).evtchn_pending[idx])
        };
        Some(AtomicU64::from_ptr(word))
    }
}
