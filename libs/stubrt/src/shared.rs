//! The shared info page: a page of our image that the boot code turns into Xen's shared
//! info (PV: remapped onto its machine frame; PVH: replaced with `XENMAPSPACE_shared_info`).

use core::cell::UnsafeCell;

use xen_abi::{SharedInfo, EVTCHN_WORD_BITS};

/// An atomic guest word: how Xen and the guest share event-channel bits.
#[cfg(target_pointer_width = "64")]
pub(crate) type AtomicWord = core::sync::atomic::AtomicU64;
#[cfg(target_pointer_width = "32")]
pub(crate) type AtomicWord = core::sync::atomic::AtomicU32;

/// A page of the image that Xen writes (the shared info, a runstate area).
#[repr(C, align(4096))]
pub(crate) struct Page(UnsafeCell<[u8; 4096]>);

// SAFETY: the page is only accessed through raw pointers with volatile or atomic accesses,
// by one vCPU (and by Xen, which is what those accesses are for).
unsafe impl Sync for Page {}

impl Page {
    pub(crate) const fn zeroed() -> Self {
        Page(UnsafeCell::new([0; 4096]))
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.0.get().cast()
    }
}

pub(crate) static SHARED_INFO_PAGE: Page = Page::zeroed();

/// The page's address, for the boot code to map Xen's shared info there.
#[cfg_attr(not(stubrt_image), allow(dead_code))]
pub(crate) fn page_addr() -> u64 {
    SHARED_INFO_PAGE.as_ptr() as u64
}

pub(crate) fn shared_info() -> *mut SharedInfo {
    SHARED_INFO_PAGE.as_ptr().cast()
}

/// The word of `evtchn_pending` (or `evtchn_mask`) that holds `port`'s bit, and the bit.
pub(crate) fn pending_word(
    port: u32,
    mask: bool,
) -> Option<(&'static AtomicWord, xen_abi::XenUlong)> {
    let bits = EVTCHN_WORD_BITS as u32;
    let idx = usize::try_from(port / bits)
        .ok()
        .filter(|&i| i < EVTCHN_WORD_BITS)?;
    let bit = 1 << (port % bits);
    let si = shared_info();
    // SAFETY: `idx` is below the length of both arrays; the shared info page lives for the
    // whole program and Xen updates these words atomically, so viewing them as atomics is
    // sound.
    unsafe {
        let word = if mask {
            core::ptr::addr_of_mut!((*si).evtchn_mask[idx])
        } else {
            core::ptr::addr_of_mut!((*si).evtchn_pending[idx])
        };
        Some((AtomicWord::from_ptr(word), bit))
    }
}
