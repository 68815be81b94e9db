//! A small runtime for Xen stub domains.
//!
//! One ELF boots as an x86_64 PV or PVH guest, another as an x86_32 PV guest, an arm64
//! Image as an aarch64 guest (`arch/`); then the runtime offers architecture-free
//! services: console, time, event channels (polled, upcalls masked), memory (a heap over all
//! of the domain's pages), grant tables, a xenstore client, xenbus front-end states and a
//! block front end.
//!
//! An application is a `no_std`, `no_main` binary that names its main function with
//! [`entry!`]; the runtime powers the domain off when it returns 0 and reports a crash
//! otherwise. The freestanding parts (boot code, panic handler, global allocator, C memory
//! functions) are compiled only when `STUBRT_IMAGE=1` (cfg `stubrt_image`), so the crate also
//! builds and unit-tests on the host.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
pub mod blkfront;
pub mod console;
pub mod events;
mod global;
pub mod gnttab;
pub mod hypervisor;
pub mod mm;
pub mod platform;
pub mod ring;
mod shared;
pub mod time;
pub mod xenbus;
pub mod xenstore;

pub use platform::{info, BootKind, Info};

/// Ends the domain: exit code 0 powers it off, anything else prints the code and reports a
/// crash to the toolstack.
pub fn exit(code: i32) -> ! {
    use xen_abi::sched::shutdown;
    if code != 0 {
        println!("stubrt: exit code {code}");
    }
    console::flush();
    let reason = if code == 0 {
        shutdown::POWEROFF
    } else {
        shutdown::CRASH
    };
    let err = hypervisor::shutdown(reason);
    println!("stubrt: shutdown failed: {err}");
    arch::halt_forever()
}

/// Names the application's main function: `stubrt::entry!(main);` with `fn main() -> i32`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        pub fn __stubrt_main() -> i32 {
            let main: fn() -> i32 = $main;
            main()
        }
    };
}

#[cfg(stubrt_image)]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("stubrt: panic: {info}");
    console::flush();
    let _ = hypervisor::shutdown(xen_abi::sched::shutdown::CRASH);
    arch::halt_forever()
}
