//! Console output: the PV console ring for a domU, `HYPERVISOR_console_io` for dom0 (a domU
//! may not use console_io on a release build of Xen), or a device the architecture drives
//! (a dom0less domain on Arm has no ring, but Xen's emulated UART).

use core::fmt;
use core::sync::atomic::{fence, Ordering};

use xen_abi::io::console::XenconsInterface;

use crate::global::Global;
use crate::hypervisor;

/// Where console output goes.
#[derive(Clone, Copy)]
pub enum Sink {
    /// Nothing set up yet.
    None,
    /// `HYPERVISOR_console_io` (dom0).
    Hypervisor,
    /// The console ring page and the event channel that announces new output.
    Ring {
        ring: *mut XenconsInterface,
        evtchn: u32,
    },
    /// A device of the architecture's (aarch64: Xen's emulated UART), by its write function.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    Arch(fn(&[u8])),
}

static SINK: Global<Sink> = Global::new(Sink::None);

/// Selects the console; called once by the boot code.
#[cfg_attr(not(stubrt_image), allow(dead_code))]
pub(crate) fn init(sink: Sink) {
    if let Some(mut s) = SINK.try_lock() {
        *s = sink;
    }
}

fn sink() -> Sink {
    SINK.try_lock().map(|s| *s).unwrap_or(Sink::None)
}

/// Writes raw bytes to the console.
pub fn write_bytes(bytes: &[u8]) {
    match sink() {
        Sink::None => {}
        Sink::Hypervisor => {
            let _ = hypervisor::console_io_write(bytes);
        }
        Sink::Ring { ring, evtchn } => ring_write(ring, evtchn, bytes),
        Sink::Arch(write) => write(bytes),
    }
}

fn ring_write(ring: *mut XenconsInterface, evtchn: u32, mut bytes: &[u8]) {
    const SIZE: u32 = 2048;
    while !bytes.is_empty() {
        // SAFETY: `ring` is the console page the toolstack gave this domain, mapped for the
        // domain's life; xenconsoled only moves `out_cons`, we own `out_prod` and `out`.
        let (cons, prod) = unsafe {
            (
                core::ptr::addr_of!((*ring).out_cons).read_volatile(),
                core::ptr::addr_of!((*ring).out_prod).read_volatile(),
            )
        };
        fence(Ordering::SeqCst);
        let n = crate::ring::produce(prod, cons, SIZE, bytes, |i, b| {
            // SAFETY: as above; `i` < 2048, the size of `out`, and the slot is past what
            // xenconsoled may still read.
            unsafe { core::ptr::addr_of_mut!((*ring).out[i]).write_volatile(b) }
        });
        if n == 0 {
            let _ = hypervisor::evtchn_send(evtchn);
            crate::events::wait_any(&[evtchn], Some(10_000_000));
            continue;
        }
        fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { core::ptr::addr_of_mut!((*ring).out_prod).write_volatile(prod.wrapping_add(n)) };
        let _ = hypervisor::evtchn_send(evtchn);
        bytes = &bytes[n as usize..];
    }
}

/// Waits (at most about a second) until xenconsoled has read everything, so output written
/// just before shutdown is not lost.
pub fn flush() {
    if let Sink::Ring { ring, evtchn } = sink() {
        let deadline = crate::time::system_time_ns() + 1_000_000_000;
        loop {
            // SAFETY: as in `ring_write`.
            let (cons, prod) = unsafe {
                (
                    core::ptr::addr_of!((*ring).out_cons).read_volatile(),
                    core::ptr::addr_of!((*ring).out_prod).read_volatile(),
                )
            };
            if cons == prod || crate::time::system_time_ns() > deadline {
                break;
            }
            let _ = hypervisor::evtchn_send(evtchn);
            crate::events::wait_any(&[evtchn], Some(10_000_000));
        }
    }
}

/// `fmt::Write` adapter over the console.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // Format into a small buffer first so each call becomes one hypercall or ring update.
    let mut buf = LineBuf {
        buf: [0; 256],
        len: 0,
    };
    let _ = fmt::write(&mut buf, args);
    buf.flush();
}

struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl LineBuf {
    fn flush(&mut self) {
        write_bytes(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::write_bytes(b"\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
