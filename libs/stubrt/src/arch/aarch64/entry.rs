//! The aarch64 entry point's Rust side: the device tree read for memory, Xen's grant-table
//! region and the emulated UART; shared info mapped; the clock calibrated; the console and
//! xenstore rings from HVM parameters; then the common start of day (`platform::start`).

use core::sync::atomic::{AtomicU64, Ordering};

use fdt::Fdt;
use xen_abi::hvm;

use crate::console::{self, Sink};
use crate::hypervisor;
use crate::platform::{start, BootKind, Info};

use super::NORMAL_WINDOW;

extern "C" {
    static __stubrt_image_start: u8;
    static __stubrt_image_end: u8;
}

/// What boot takes from the device tree.
struct Board {
    /// RAM banks: (start, end).
    ram: [(u64, u64); 4],
    banks: usize,
    /// The first range of `/hypervisor`'s `reg`: where grant-table frames go.
    grant_region: Option<u64>,
    /// Xen's emulated SBSA UART (`vpl011`), if the domain has one.
    uart: Option<u64>,
    /// The device tree itself and an initial ramdisk: memory the heap must not take.
    dtb: (u64, u64),
    initrd: Option<(u64, u64)>,
}

fn read_board(dtb: u64) -> Option<Board> {
    // SAFETY: Xen passes the address of a valid flattened device tree in guest RAM, which
    // nothing overwrites while boot reads it (the heap excludes it).
    let fdt = unsafe { Fdt::from_ptr(dtb as *const u8) }.ok()?;
    let mut board = Board {
        ram: [(0, 0); 4],
        banks: 0,
        grant_region: None,
        uart: None,
        dtb: (dtb, dtb + fdt.total_size() as u64),
        initrd: None,
    };
    for node in fdt.find_all_nodes("/memory") {
        for r in node.reg().into_iter().flatten() {
            if board.banks < board.ram.len() {
                let start = r.starting_address as u64;
                board.ram[board.banks] = (start, start + r.size.unwrap_or(0) as u64);
                board.banks += 1;
            }
        }
    }
    board.grant_region = fdt
        .find_node("/hypervisor")
        .and_then(|n| n.reg()?.next())
        .map(|r| r.starting_address as u64)
        .filter(|&a| a >= NORMAL_WINDOW.0 && a < NORMAL_WINDOW.1);
    board.uart = fdt
        .find_compatible(&["arm,sbsa-uart"])
        .and_then(|n| n.reg()?.next())
        .map(|r| r.starting_address as u64);
    if let Some(chosen) = fdt.find_node("/chosen") {
        let cell = |name| {
            let p = chosen.property(name)?;
            match p.value.len() {
                4 => Some(u64::from(u32::from_be_bytes(p.value.try_into().ok()?))),
                8 => Some(u64::from_be_bytes(p.value.try_into().ok()?)),
                _ => None,
            }
        };
        if let (Some(s), Some(e)) = (cell("linux,initrd-start"), cell("linux,initrd-end")) {
            board.initrd = Some((s, e));
        }
    }
    Some(board)
}

/// The emulated UART's address, for [`uart_write`].
static UART: AtomicU64 = AtomicU64::new(0);

/// Writes to Xen's emulated SBSA UART: one byte store per character to its data register,
/// after the transmit FIFO has room. Each access traps to Xen, so it must be a single plain
/// load or store.
fn uart_write(bytes: &[u8]) {
    let base = UART.load(Ordering::Relaxed);
    for &b in bytes {
        // SAFETY: `base` is the UART's MMIO window from the device tree, mapped as device
        // memory: offset 0x18 is the flag register (bit 5: transmit FIFO full), 0 the data
        // register.
        unsafe {
            while core::ptr::read_volatile((base + 0x18) as *const u32) & (1 << 5) != 0 {}
            core::ptr::write_volatile(base as *mut u32, u32::from(b));
        }
    }
}

/// The aarch64 entry, called from `boot.rs` with the device tree's address, the MMU on.
#[no_mangle]
extern "C" fn stubrt_aarch64_main(dtb: u64) -> ! {
    let board = read_board(dtb);
    // SAFETY: the shared-info page is reserved for this; nothing uses it yet.
    let mapped = unsafe {
        hypervisor::add_to_physmap(
            xen_abi::memory::mapspace::SHARED_INFO,
            0,
            crate::shared::page_addr() >> 12,
        )
    };
    super::calibrate();
    let param = |i| hypervisor::hvm_get_param(i).unwrap_or(0);
    // `~0` marks rings a dom0less domain only gets once a dom0 connects.
    let page = |pfn: u64| (pfn != 0 && pfn != u64::MAX).then_some(pfn << 12);
    let uart = board.as_ref().and_then(|b| b.uart);
    match (page(param(hvm::HVM_PARAM_CONSOLE_PFN)), uart) {
        (Some(ring), _) => console::init(Sink::Ring {
            ring: ring as *mut _,
            evtchn: param(hvm::HVM_PARAM_CONSOLE_EVTCHN) as u32,
        }),
        (None, Some(base)) => {
            UART.store(base, Ordering::Relaxed);
            console::init(Sink::Arch(uart_write));
        }
        (None, None) => console::init(Sink::Hypervisor),
    }
    if let Err(e) = mapped {
        crate::println!("stubrt: cannot map shared info: {e}");
        crate::exit(1);
    }
    let Some(board) = board else {
        crate::println!("stubrt: no readable device tree at {dtb:#x}");
        crate::exit(1);
    };
    if let Some(mut g) = super::GRANT_REGION.try_lock() {
        *g = board.grant_region;
    }
    let store = page(param(hvm::HVM_PARAM_STORE_PFN))
        .map(|ring| (ring, param(hvm::HVM_PARAM_STORE_EVTCHN) as u32));
    let image = (
        core::ptr::addr_of!(__stubrt_image_start) as u64,
        core::ptr::addr_of!(__stubrt_image_end) as u64,
    );
    let used = [image, board.dtb, board.initrd.unwrap_or((0, 0))];
    let ram = &board.ram[..board.banks];
    let heap = crate::mm::largest_free(ram, &used, 1 << 32);
    let nr_pages = ram.iter().map(|(s, e)| (e - s) / 4096).sum();
    start(
        Info {
            kind: BootKind::Aarch64,
            dom0: false,
            nr_pages,
            store,
        },
        heap,
    )
}
