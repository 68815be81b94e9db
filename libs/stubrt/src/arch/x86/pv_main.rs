//! The PV entry point's Rust side, for 64-bit and 32-bit PV alike: console, shared info,
//! xenstore and memory found in `start_info`, then the common start of day
//! (`platform::start`).

use super::{map_frame, PvMemory, PV};
use crate::console::{self, Sink};
use crate::platform::{start, BootKind, Info};
use xen_abi::{sif, StartInfo};

/// PV entry, called from the architecture's `boot.rs` with the `start_info` address.
#[no_mangle]
extern "C" fn stubrt_pv_main(si: *const StartInfo) -> ! {
    // SAFETY: Xen passes a valid, mapped start_info page to the PV entry point.
    let si = unsafe { si.read() };
    // `start_info`'s words are 32 bits on x86_32: widen them once.
    let w = xen_abi::widen;
    // SAFETY: the shared-info page is reserved for this; nothing uses it yet.
    let mapped = unsafe { map_frame(crate::shared::page_addr(), w(si.shared_info) >> 12, true) };
    let dom0 = si.flags & sif::INITDOMAIN != 0;
    if dom0 {
        console::init(Sink::Hypervisor);
    } else {
        // SAFETY: reading the domU view of the console union, which is what Xen fills for
        // domains other than dom0.
        let domu = unsafe { si.console.domu };
        let va = PvMemory::mfn_to_pfn(w(domu.mfn)) << 12;
        console::init(Sink::Ring {
            ring: va as *mut _,
            evtchn: domu.evtchn,
        });
    }
    if let Err(e) = mapped {
        crate::println!("stubrt: cannot map shared info: {e}");
        crate::exit(1);
    }
    let store = (!dom0 && si.store_mfn != 0)
        .then(|| (PvMemory::mfn_to_pfn(w(si.store_mfn)) << 12, si.store_evtchn));
    // SAFETY: the values come from this domain's start_info.
    let mut pv = unsafe {
        PvMemory::new(
            w(si.mfn_list),
            w(si.nr_pages),
            w(si.pt_base),
            (w(si.pt_base) >> 12) + w(si.nr_pt_frames),
        )
    };
    let heap = match pv.map_all() {
        Ok(range) => range,
        Err(e) => {
            crate::println!("stubrt: cannot map memory: {e:?}");
            crate::exit(1);
        }
    };
    if let Some(mut g) = PV.try_lock() {
        *g = Some(pv);
    }
    start(
        Info {
            kind: BootKind::Pv,
            dom0,
            nr_pages: w(si.nr_pages),
            store,
        },
        heap,
    )
}
