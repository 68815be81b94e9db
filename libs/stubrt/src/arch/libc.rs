//! The C library functions the compiler and `core` call that need nothing of the
//! architecture (the precompiled `core` expects the C library's); each architecture's
//! `mem.rs` has the copy and fill functions.

/// # Safety
///
/// The C contract: `a` and `b` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`; the caller guarantees both ranges are valid.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
///
/// As [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// Unwinding never happens (panic = "abort"), but non-LTO builds of `core` still name it.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Unwinding never happens (panic = "abort"), but the precompiled `alloc` still links to it.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    super::halt_forever()
}

/// # Safety
///
/// The C contract: `s` points at a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees a terminator, so every byte up to it is readable.
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}
