//! What boot found out, and the start-of-day sequence every architecture's boot protocols
//! end in (`arch::<arch>` has the entry points and their memory setup).

use crate::global::Global;

/// How the domain was booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootKind {
    Pv,
    Pvh,
    /// An aarch64 guest, booted through the arm64 Image protocol (auto-translated, as PVH).
    Aarch64,
}

/// Facts about the running domain.
#[derive(Debug, Clone, Copy)]
pub struct Info {
    pub kind: BootKind,
    /// Booted as the initial domain (no xenstore, console through the hypervisor).
    pub dom0: bool,
    /// Total pages of the domain.
    pub nr_pages: u64,
    /// The xenstore ring (virtual address) and its event channel, if the domain has one.
    pub store: Option<(u64, u32)>,
}

static INFO: Global<Option<Info>> = Global::new(None);

/// Facts about the running domain (`None` before boot finished, e.g. in host tests).
pub fn info() -> Option<Info> {
    INFO.try_lock().and_then(|i| *i)
}

/// The start of day after an entry point's own setup: upcalls masked (events are polled),
/// the boot facts recorded, the heap given its range, then the application's main.
#[cfg(stubrt_image)]
pub(crate) fn start(info: Info, heap: (u64, u64)) -> ! {
    // SAFETY: vcpu_info[0] of the shared page; masking upcalls is what SCHEDOP_poll needs
    // and keeps Xen from entering a handler we do not have.
    unsafe {
        core::ptr::addr_of_mut!((*crate::shared::shared_info()).vcpu_info[0].evtchn_upcall_mask)
            .write_volatile(1)
    };
    if let Some(mut g) = INFO.try_lock() {
        *g = Some(info);
    }
    // SAFETY: the boot protocol code computed a range of free, mapped pages.
    unsafe { crate::mm::init_heap(heap.0, heap.1) };
    // SAFETY: `__stubrt_main` is defined by the application through `entry!`.
    let code = unsafe { __stubrt_main() };
    crate::exit(code)
}

#[cfg(stubrt_image)]
extern "Rust" {
    /// The application's main function, defined by [`crate::entry!`].
    fn __stubrt_main() -> i32;
}
