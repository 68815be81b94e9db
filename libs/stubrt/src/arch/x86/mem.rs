//! The copy and fill functions the compiler calls, with `rep movsb`/`rep stosb`, which also
//! keeps the optimiser from turning a byte loop back into a call to the function itself.

/// # Safety
///
/// The C contract: `dst` and `src` valid for `n` bytes and not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid; the direction flag is clear (the
    // ABI requires it at calls).
    unsafe {
        #[cfg(target_arch = "x86_64")]
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _, options(nostack, preserves_flags));
        // esi is LLVM's on x86_32: swap the source in around the copy.
        #[cfg(target_arch = "x86")]
        core::arch::asm!("xchg esi, {s}", "rep movsb", "xchg esi, {s}", s = inout(reg) src => _, inout("ecx") n => _, inout("edi") dst => _, options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
///
/// The C contract: `dst` and `src` valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copying is correct when dst is below src or the ranges are apart.
        return unsafe { memcpy(dst, src, n) };
    }
    if n > 0 {
        // SAFETY: the ranges overlap with dst above src: copy backwards from the last byte
        // with the direction flag set, and clear it again as the ABI requires.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            core::arch::asm!(
                "std", "rep movsb", "cld",
                inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                options(nostack)
            );
            #[cfg(target_arch = "x86")]
            core::arch::asm!(
                "xchg esi, {s}", "std", "rep movsb", "cld", "xchg esi, {s}",
                s = inout(reg) src.add(n - 1) => _, inout("ecx") n => _, inout("edi") dst.add(n - 1) => _,
                options(nostack)
            );
        }
    }
    dst
}

/// # Safety
///
/// The C contract: `dst` valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid; the direction flag is clear.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8, options(nostack, preserves_flags));
        #[cfg(target_arch = "x86")]
        core::arch::asm!("rep stosb", inout("ecx") n => _, inout("edi") dst => _, in("al") c as u8, options(nostack, preserves_flags));
    }
    dst
}
