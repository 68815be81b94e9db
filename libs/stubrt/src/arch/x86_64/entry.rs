//! The x86_64 PVH entry point's Rust side (`hvm_start_info`): console, shared info,
//! xenstore and memory found the way PVH hands them over, then the common start of day
//! (`platform::start`). The PV entry is shared with x86_32 (`arch/x86/pv_main.rs`).

use crate::console::{self, Sink};
use crate::hypervisor;
use crate::platform::{start, BootKind, Info};
use xen_abi::hvm::{self, HvmMemmapTableEntry, HvmStartInfo};
use xen_abi::memory::E820Entry;
use xen_abi::sif;

extern "C" {
    static __stubrt_image_end: u8;
}

fn image_end() -> u64 {
    core::ptr::addr_of!(__stubrt_image_end) as u64
}

/// PVH entry, called from `boot.rs` with the physical address of `hvm_start_info`.
#[no_mangle]
extern "C" fn stubrt_pvh_main(start_info: u64) -> ! {
    if !crate::arch::pvh_init_hypercall_page() {
        crate::arch::halt_forever();
    }
    // SAFETY: Xen passes the physical address of a valid hvm_start_info, identity-mapped
    // by the boot code.
    let si = unsafe { (start_info as *const HvmStartInfo).read() };
    let dom0 = si.flags & sif::INITDOMAIN != 0;
    // SAFETY: the shared-info page is reserved for this; nothing uses it yet.
    let mapped = unsafe {
        hypervisor::add_to_physmap(
            xen_abi::memory::mapspace::SHARED_INFO,
            0,
            crate::shared::page_addr() >> 12,
        )
    };
    let param = |i| hypervisor::hvm_get_param(i).unwrap_or(0);
    let below_4g = |pfn: u64| pfn != 0 && pfn < (1 << 20);
    let (con_pfn, con_evtchn) = (
        param(hvm::HVM_PARAM_CONSOLE_PFN),
        param(hvm::HVM_PARAM_CONSOLE_EVTCHN),
    );
    if !dom0 && below_4g(con_pfn) {
        console::init(Sink::Ring {
            ring: (con_pfn << 12) as *mut _,
            evtchn: con_evtchn as u32,
        });
    } else {
        console::init(Sink::Hypervisor);
    }
    if let Err(e) = mapped {
        crate::println!("stubrt: cannot map shared info: {e}");
        crate::exit(1);
    }
    let (store_pfn, store_evtchn) = (
        param(hvm::HVM_PARAM_STORE_PFN),
        param(hvm::HVM_PARAM_STORE_EVTCHN),
    );
    let store = (!dom0 && below_4g(store_pfn)).then_some((store_pfn << 12, store_evtchn as u32));

    // The memory map: from hvm_start_info (version 1 and later), else from Xen
    // (Xen 4.17 gives a PVH dom0 a version 0 start info).
    let mut map = [E820Entry::default(); 64];
    let mut n = 0;
    if si.version >= 1 && si.memmap_paddr != 0 {
        n = (si.memmap_entries as usize).min(map.len());
        for (i, slot) in map[..n].iter_mut().enumerate() {
            // SAFETY: Xen provides `memmap_entries` entries at `memmap_paddr`, below 4 GiB
            // (identity-mapped) in practice; `i` is below that count.
            let e = unsafe {
                (si.memmap_paddr as *const HvmMemmapTableEntry)
                    .add(i)
                    .read()
            };
            *slot = E820Entry {
                addr: e.addr,
                size: e.size,
                kind: e.kind,
            };
        }
    } else if let Ok(got) = hypervisor::memory_map(&mut map) {
        n = got;
    }
    // The heap: the largest RAM range above the image and below 4 GiB (the identity map's
    // end).
    let mut ram = [(0u64, 0u64); 64];
    let mut banks = 0;
    for e in &map[..n] {
        let (addr, size, kind) = (e.addr, e.size, e.kind);
        if kind == hvm::HVM_MEMMAP_TYPE_RAM {
            ram[banks] = (addr, addr.saturating_add(size));
            banks += 1;
        }
    }
    let ram = &ram[..banks];
    let total = ram.iter().map(|(s, e)| (e - s) / 4096).sum();
    let best = crate::mm::largest_free(ram, &[(0, image_end())], 1 << 32);
    start(
        Info {
            kind: BootKind::Pvh,
            dom0,
            nr_pages: total,
            store,
        },
        best,
    )
}
