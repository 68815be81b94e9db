//! The C API of the stubrt runtime (`include/stubrt.h`). The printf family is C
//! (`csrc/printf.c`); everything else forwards to `stubrt`. The C stub domain's `main` is the
//! runtime's entry point.
// Host builds (tests, clippy) link std: a staticlib needs a panic handler and an allocator.
#![cfg_attr(stubrt_image, no_std)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use core::ffi::{c_char, c_int, c_void, CStr};

use stubrt::blkfront::{BlkError, Disk};
use stubrt::xenstore;

pub const ENOENT: c_int = 2;
pub const EIO: c_int = 5;
pub const ENOMEM: c_int = 12;
pub const ENODEV: c_int = 19;
pub const EINVAL: c_int = 22;
pub const ENOSPC: c_int = 28;
pub const ETIMEDOUT: c_int = 110;

#[cfg(stubrt_image)]
mod entry {
    extern "C" {
        /// The C stub domain's main function.
        fn main() -> core::ffi::c_int;
    }

    fn c_main() -> i32 {
        // SAFETY: `main` is the C program's entry point, taking no arguments.
        unsafe { main() }
    }

    stubrt::entry!(c_main);
}

fn xs_code(e: &xenstore::Error) -> c_int {
    if e.is_not_found() {
        return -ENOENT;
    }
    match e {
        xenstore::Error::Transport(xenstore::RingError::NoStore) => -ENODEV,
        xenstore::Error::Transport(xenstore::RingError::TimedOut) => -ETIMEDOUT,
        _ => -EIO,
    }
}

/// Borrows a C string as UTF-8.
///
/// # Safety
///
/// `s` is null or points at a NUL-terminated string that outlives the returned reference.
unsafe fn str_arg<'a>(s: *const c_char) -> Result<&'a str, c_int> {
    if s.is_null() {
        return Err(-EINVAL);
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| -EINVAL)
}

/// Copies `bytes` plus a NUL into `buf` of `size` bytes; returns the length or -ENOSPC.
///
/// # Safety
///
/// `buf` is valid for `size` bytes of writes.
unsafe fn copy_out(bytes: &[u8], buf: *mut c_char, size: usize) -> c_int {
    if buf.is_null() || bytes.len() >= size {
        return -ENOSPC;
    }
    // SAFETY: `bytes.len() + 1 <= size`, and the caller guarantees `size` writable bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    c_int::try_from(bytes.len()).unwrap_or(c_int::MAX)
}

/// # Safety
///
/// `buf` is valid for `len` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn stubrt_console_write(buf: *const c_char, len: usize) {
    if buf.is_null() {
        return;
    }
    // SAFETY: the caller guarantees `len` readable bytes.
    stubrt::console::write_bytes(unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) });
}

/// "pv", "pvh" or "aarch64", NUL-terminated and static.
#[no_mangle]
pub extern "C" fn stubrt_boot_kind() -> *const c_char {
    let kind: &'static CStr = match stubrt::info().map(|i| i.kind) {
        Some(stubrt::BootKind::Pvh) => c"pvh",
        Some(stubrt::BootKind::Pv) => c"pv",
        Some(stubrt::BootKind::Aarch64) => c"aarch64",
        None => c"unknown",
    };
    kind.as_ptr()
}

#[no_mangle]
pub extern "C" fn stubrt_time_ns() -> u64 {
    stubrt::time::system_time_ns()
}

#[no_mangle]
pub extern "C" fn stubrt_wallclock_s() -> u64 {
    stubrt::time::wallclock().0
}

#[no_mangle]
pub extern "C" fn stubrt_exit(code: c_int) -> ! {
    stubrt::exit(code)
}

#[no_mangle]
pub extern "C" fn stubrt_xs_available() -> c_int {
    c_int::from(xenstore::available())
}

#[no_mangle]
pub extern "C" fn stubrt_domid() -> c_int {
    match xenstore::domid() {
        Ok(d) => c_int::from(d),
        Err(e) => xs_code(&e),
    }
}

/// # Safety
///
/// `path` is a NUL-terminated string; `buf` is valid for `size` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn stubrt_xs_read(
    path: *const c_char,
    buf: *mut c_char,
    size: usize,
) -> c_int {
    // SAFETY: forwarded caller guarantees.
    let path = match unsafe { str_arg(path) } {
        Ok(p) => p,
        Err(e) => return e,
    };
    match xenstore::with(|c| c.read(path)) {
        // SAFETY: forwarded caller guarantee for `buf`.
        Ok(v) => unsafe { copy_out(&v, buf, size) },
        Err(e) => xs_code(&e),
    }
}

/// # Safety
///
/// `path` and `value` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn stubrt_xs_write(path: *const c_char, value: *const c_char) -> c_int {
    // SAFETY: forwarded caller guarantees.
    let (path, value) = match unsafe { (str_arg(path), str_arg(value)) } {
        (Ok(p), Ok(v)) => (p, v),
        _ => return -EINVAL,
    };
    match xenstore::write(path, value) {
        Ok(()) => 0,
        Err(e) => xs_code(&e),
    }
}

/// # Safety
///
/// `path` is a NUL-terminated string; `buf` is valid for `size` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn stubrt_xs_directory(
    path: *const c_char,
    buf: *mut c_char,
    size: usize,
) -> c_int {
    // SAFETY: forwarded caller guarantees.
    let path = match unsafe { str_arg(path) } {
        Ok(p) => p,
        Err(e) => return e,
    };
    let names = match xenstore::directory(path) {
        Ok(n) => n,
        Err(e) => return xs_code(&e),
    };
    let mut packed = String::new();
    for n in &names {
        packed.push_str(n);
        packed.push('\0');
    }
    if packed.len() > size || buf.is_null() {
        return -ENOSPC;
    }
    // SAFETY: `packed.len() <= size` and the caller guarantees `size` writable bytes.
    unsafe { core::ptr::copy_nonoverlapping(packed.as_ptr(), buf.cast::<u8>(), packed.len()) };
    c_int::try_from(names.len()).unwrap_or(c_int::MAX)
}

/// # Safety
///
/// `path` and `token` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn stubrt_xs_watch(path: *const c_char, token: *const c_char) -> c_int {
    // SAFETY: forwarded caller guarantees.
    match unsafe { (str_arg(path), str_arg(token)) } {
        (Ok(p), Ok(t)) => xenstore::watch(p, t).map_or_else(|e| xs_code(&e), |()| 0),
        _ => -EINVAL,
    }
}

/// # Safety
///
/// `path` and `token` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn stubrt_xs_unwatch(path: *const c_char, token: *const c_char) -> c_int {
    // SAFETY: forwarded caller guarantees.
    match unsafe { (str_arg(path), str_arg(token)) } {
        (Ok(p), Ok(t)) => xenstore::unwatch(p, t).map_or_else(|e| xs_code(&e), |()| 0),
        _ => -EINVAL,
    }
}

/// # Safety
///
/// `path` and `token` are valid for `path_size` and `token_size` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn stubrt_xs_read_watch(
    path: *mut c_char,
    path_size: usize,
    token: *mut c_char,
    token_size: usize,
) -> c_int {
    match xenstore::next_event() {
        Ok(ev) => {
            // SAFETY: forwarded caller guarantees.
            let p = unsafe { copy_out(ev.path.as_bytes(), path, path_size) };
            // SAFETY: forwarded caller guarantees.
            let t = unsafe { copy_out(ev.token.as_bytes(), token, token_size) };
            if p < 0 || t < 0 {
                -ENOSPC
            } else {
                0
            }
        }
        Err(e) => xs_code(&e),
    }
}

/// An open disk, behind the opaque `struct stubrt_blk`.
pub struct StubrtBlk(Disk);

fn blk_code(e: &BlkError) -> c_int {
    match e {
        BlkError::Xenstore(x) => xs_code(x),
        BlkError::NoMemory => -ENOMEM,
        BlkError::BadRange => -EINVAL,
        BlkError::TimedOut => -ETIMEDOUT,
        _ => -EIO,
    }
}

/// # Safety
///
/// `dir` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn stubrt_blk_open(dir: *const c_char) -> *mut StubrtBlk {
    // SAFETY: forwarded caller guarantee.
    let Ok(dir) = (unsafe { str_arg(dir) }) else {
        return core::ptr::null_mut();
    };
    match Disk::open(dir) {
        Ok(d) => Box::into_raw(Box::new(StubrtBlk(d))),
        Err(e) => {
            stubrt::println!("stubrt_blk_open({dir}): {e}");
            core::ptr::null_mut()
        }
    }
}

/// # Safety
///
/// `blk` comes from `stubrt_blk_open`; the out pointers are null or writable.
#[no_mangle]
pub unsafe extern "C" fn stubrt_blk_info(
    blk: *const StubrtBlk,
    sectors: *mut u64,
    sector_size: *mut u32,
    read_only: *mut c_int,
) -> c_int {
    // SAFETY: the caller guarantees `blk` is an open disk (or null).
    let Some(blk) = (unsafe { blk.as_ref() }) else {
        return -EINVAL;
    };
    // SAFETY: the caller guarantees each out pointer is null or writable.
    unsafe {
        if let Some(s) = sectors.as_mut() {
            *s = blk.0.sectors();
        }
        if let Some(s) = sector_size.as_mut() {
            *s = blk.0.sector_size();
        }
        if let Some(r) = read_only.as_mut() {
            *r = c_int::from(blk.0.read_only());
        }
    }
    0
}

/// # Safety
///
/// `blk` comes from `stubrt_blk_open`; `buf` is valid for `len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn stubrt_blk_read(
    blk: *mut StubrtBlk,
    sector: u64,
    buf: *mut c_void,
    len: usize,
) -> c_int {
    // SAFETY: the caller guarantees `blk` is an open disk (or null) and `buf` writable.
    let (Some(blk), false) = (unsafe { blk.as_mut() }, buf.is_null()) else {
        return -EINVAL;
    };
    // SAFETY: as above.
    let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
    blk.0
        .read(sector, out)
        .map_or_else(|e| blk_code(&e), |()| 0)
}

/// # Safety
///
/// `blk` comes from `stubrt_blk_open`; `buf` is valid for `len` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn stubrt_blk_write(
    blk: *mut StubrtBlk,
    sector: u64,
    buf: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: the caller guarantees `blk` is an open disk (or null) and `buf` readable.
    let (Some(blk), false) = (unsafe { blk.as_mut() }, buf.is_null()) else {
        return -EINVAL;
    };
    // SAFETY: as above.
    let data = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    blk.0
        .write(sector, data)
        .map_or_else(|e| blk_code(&e), |()| 0)
}

/// # Safety
///
/// `blk` comes from `stubrt_blk_open`.
#[no_mangle]
pub unsafe extern "C" fn stubrt_blk_flush(blk: *mut StubrtBlk) -> c_int {
    // SAFETY: the caller guarantees `blk` is an open disk (or null).
    let Some(blk) = (unsafe { blk.as_mut() }) else {
        return -EINVAL;
    };
    blk.0.flush().map_or_else(|e| blk_code(&e), |()| 0)
}

/// # Safety
///
/// `blk` comes from `stubrt_blk_open` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn stubrt_blk_close(blk: *mut StubrtBlk) {
    if !blk.is_null() {
        // SAFETY: the caller hands back the box from `stubrt_blk_open`.
        drop(unsafe { Box::from_raw(blk) });
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::{c_char, c_int, CStr};

    extern "C" {
        fn stubrt_snprintf(buf: *mut c_char, size: usize, fmt: *const c_char, ...) -> c_int;
    }

    /// Formats one value with the C printf and returns (text, returned length).
    macro_rules! c_fmt {
        ($size:expr, $fmt:expr $(, $arg:expr)*) => {{
            let mut buf = [0 as c_char; 64];
            let size: usize = $size;
            assert!(size <= buf.len());
            // SAFETY: `buf` has at least `size` bytes; the format's conversions match the
            // arguments passed (checked by each table row).
            let n = unsafe { stubrt_snprintf(buf.as_mut_ptr(), size, $fmt.as_ptr() $(, $arg)*) };
            // SAFETY: snprintf NUL-terminates within `size` (> 0) bytes.
            let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
            (text, n)
        }};
    }

    #[test]
    fn printf_conversions() {
        let cases: Vec<((String, c_int), &str)> = vec![
            (c_fmt!(64, c"plain"), "plain"),
            (c_fmt!(64, c"%d", -42 as c_int), "-42"),
            (
                c_fmt!(
                    64,
                    c"%i|%5d|%-5d|%05d",
                    7 as c_int,
                    42 as c_int,
                    42 as c_int,
                    -42 as c_int
                ),
                "7|   42|42   |-0042",
            ),
            (
                c_fmt!(64, c"%u %x %X", 4_000_000_000u32, 0xbeefu32, 0xbeefu32),
                "4000000000 beef BEEF",
            ),
            (
                c_fmt!(64, c"%lu %ld", u64::MAX, i64::MIN),
                "18446744073709551615 -9223372036854775808",
            ),
            (
                c_fmt!(64, c"%llu %llx", 1u64 << 40, 0xdead_beef_cafeu64),
                "1099511627776 deadbeefcafe",
            ),
            (c_fmt!(64, c"%02x%02x", 0x5u32, 0xabu32), "05ab"),
            (
                c_fmt!(
                    64,
                    c"[%s] [%6s] [%-4s]",
                    c"hi".as_ptr(),
                    c"abc".as_ptr(),
                    c"x".as_ptr()
                ),
                "[hi] [   abc] [x   ]",
            ),
            (c_fmt!(64, c"%c%c %%", b'o' as c_int, b'k' as c_int), "ok %"),
            (c_fmt!(64, c"%p", 0x1000usize as *const u8), "0x1000"),
            (c_fmt!(64, c"%s", std::ptr::null::<c_char>()), "(null)"),
            (c_fmt!(64, c"%q"), "%q"),
        ];
        for ((text, n), want) in cases {
            assert_eq!(text, want);
            assert_eq!(n as usize, want.len(), "{want}");
        }
    }

    #[test]
    fn printf_truncates_and_reports_full_length() {
        assert_eq!(
            c_fmt!(6, c"%s world", c"hello".as_ptr()),
            ("hello".to_string(), 11)
        );
        assert_eq!(c_fmt!(1, c"%d", 12345 as c_int), (String::new(), 5));
    }
}
