//! The copy and fill functions the compiler calls, as assembly loops (16 bytes at a time, then
//! bytes), which also keeps the optimiser from turning a loop back into a call to the function
//! itself. Unaligned accesses are fine: all memory is mapped Normal with alignment checks off.

/// # Safety
///
/// The C contract: `dst` and `src` valid for `n` bytes and not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid for `n` bytes.
    unsafe {
        core::arch::asm!(
            "cmp {n}, #16",
            "b.lo 2f",
            "1:",
            "ldp {a}, {b}, [{s}], #16",
            "stp {a}, {b}, [{d}], #16",
            "sub {n}, {n}, #16",
            "cmp {n}, #16",
            "b.hs 1b",
            "2:",
            "cbz {n}, 4f",
            "3:",
            "ldrb {a:w}, [{s}], #1",
            "strb {a:w}, [{d}], #1",
            "subs {n}, {n}, #1",
            "b.ne 3b",
            "4:",
            n = inout(reg) n => _,
            s = inout(reg) src => _,
            d = inout(reg) dst => _,
            a = out(reg) _,
            b = out(reg) _,
            options(nostack),
        );
    }
    dst
}

/// # Safety
///
/// The C contract: `dst` and `src` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: copying forwards is correct when dst is below src or the ranges are apart.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: the ranges overlap with dst above src: copy backwards from the end, a byte at
    // a time; `n` > 0 here, since an empty range never overlaps.
    unsafe {
        core::arch::asm!(
            "1:",
            "ldrb {a:w}, [{s}, #-1]!",
            "strb {a:w}, [{d}, #-1]!",
            "subs {n}, {n}, #1",
            "b.ne 1b",
            n = inout(reg) n => _,
            s = inout(reg) src.add(n) => _,
            d = inout(reg) dst.add(n) => _,
            a = out(reg) _,
            options(nostack),
        );
    }
    dst
}

/// # Safety
///
/// The C contract: `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let word = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees the range is valid for `n` bytes.
    unsafe {
        core::arch::asm!(
            "cmp {n}, #16",
            "b.lo 2f",
            "1:",
            "stp {w}, {w}, [{d}], #16",
            "sub {n}, {n}, #16",
            "cmp {n}, #16",
            "b.hs 1b",
            "2:",
            "cbz {n}, 4f",
            "3:",
            "strb {w:w}, [{d}], #1",
            "subs {n}, {n}, #1",
            "b.ne 3b",
            "4:",
            n = inout(reg) n => _,
            d = inout(reg) dst => _,
            w = in(reg) word,
            options(nostack),
        );
    }
    dst
}
