//! Memory: one first-fit heap over all of the domain's free pages (the global allocator),
//! page-sized allocations for shared pages, and guest-frame lookups for grants.

use core::alloc::Layout;
use core::ptr::NonNull;

use linked_list_allocator::Heap;

use crate::global::Global;

pub const PAGE_SIZE: usize = 4096;

static HEAP: Global<Heap> = Global::new(Heap::empty());

/// Hands `[start, end)` to the heap; called once by the boot code.
///
/// # Safety
///
/// The range must be mapped, writable, unused by anything else, and stay so forever.
#[cfg_attr(not(stubrt_image), allow(dead_code))]
pub(crate) unsafe fn init_heap(start: u64, end: u64) {
    if let Some(mut heap) = HEAP.try_lock() {
        if end > start {
            // SAFETY: the caller hands over exclusive use of the range.
            unsafe { heap.init(start as *mut u8, (end - start) as usize) };
        }
    }
}

/// The largest page-aligned range of `ram` (banks as `(start, end)`) below `limit` that
/// overlaps none of the `used` ranges: where boot puts the heap (PVH and aarch64; PV, the
/// only kind on x86_32, finds its pages in its start info).
#[cfg_attr(any(not(stubrt_image), target_arch = "x86"), allow(dead_code))]
pub(crate) fn largest_free(ram: &[(u64, u64)], used: &[(u64, u64)], limit: u64) -> (u64, u64) {
    let mut best = (0, 0);
    for &(start, end) in ram {
        let end = end.min(limit);
        let mut lo = start;
        while lo < end {
            // The lowest used range that still overlaps [lo, end) ends this free piece.
            let next = used
                .iter()
                .filter(|&&(s, e)| e > lo && s < end)
                .min_by_key(|&&(s, _)| s);
            let (hi, resume) = match next {
                Some(&(s, e)) => (s.max(lo), e),
                None => (end, end),
            };
            let (a, b) = (lo.next_multiple_of(4096), hi & !0xfff);
            if b > a && b - a > best.1 - best.0 {
                best = (a, b);
            }
            lo = resume;
        }
    }
    best
}

/// Heap statistics: (bytes free, bytes total).
pub fn heap_stats() -> (usize, usize) {
    HEAP.try_lock().map_or((0, 0), |h| (h.free(), h.size()))
}

pub(crate) fn alloc(layout: Layout) -> Option<NonNull<u8>> {
    HEAP.try_lock()?.allocate_first_fit(layout).ok()
}

/// # Safety
///
/// `ptr` must come from [`alloc`] with the same `layout`.
pub(crate) unsafe fn dealloc(ptr: NonNull<u8>, layout: Layout) {
    if let Some(mut heap) = HEAP.try_lock() {
        // SAFETY: the caller guarantees `ptr` was allocated here with `layout`.
        unsafe { heap.deallocate(ptr, layout) };
    }
}

/// A zeroed, page-aligned page owned by the program (e.g. a ring or a block I/O buffer that
/// is granted to another domain).
pub struct Page {
    ptr: NonNull<u8>,
}

impl Page {
    const LAYOUT: Layout = match Layout::from_size_align(PAGE_SIZE, PAGE_SIZE) {
        Ok(l) => l,
        Err(_) => panic!("page layout"),
    };

    /// Allocates a zeroed page; `None` when memory is exhausted.
    pub fn new() -> Option<Page> {
        let ptr = alloc(Self::LAYOUT)?;
        // SAFETY: `ptr` is a fresh allocation of PAGE_SIZE bytes.
        unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, PAGE_SIZE) };
        Some(Page { ptr })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The guest frame number to grant (PV: machine frame; PVH: guest physical frame).
    pub fn frame(&self) -> u64 {
        crate::arch::virt_to_frame(self.ptr.as_ptr() as u64)
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the page is PAGE_SIZE bytes owned by `self`. Another domain may write it
        // while granted, but only while no request is outstanding do we read it.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), PAGE_SIZE) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, exclusively borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), PAGE_SIZE) }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: allocated in `Page::new` with `LAYOUT`.
        unsafe { dealloc(self.ptr, Self::LAYOUT) };
    }
}

/// The global allocator of image builds.
#[cfg(stubrt_image)]
mod global_alloc {
    use core::alloc::{GlobalAlloc, Layout};
    use core::ptr::NonNull;

    struct StubrtAlloc;

    // SAFETY: allocations come from the first-fit heap, which never hands out overlapping
    // blocks; deallocation gets back exactly what was allocated.
    unsafe impl GlobalAlloc for StubrtAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            super::alloc(layout).map_or(core::ptr::null_mut(), NonNull::as_ptr)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if let Some(p) = NonNull::new(ptr) {
                // SAFETY: the GlobalAlloc contract: `ptr` came from `alloc` with `layout`.
                unsafe { super::dealloc(p, layout) };
            }
        }
    }

    #[global_allocator]
    static ALLOCATOR: StubrtAlloc = StubrtAlloc;
}

#[cfg(test)]
mod tests {
    use super::largest_free;

    #[test]
    fn the_heap_avoids_what_boot_uses() {
        const M: u64 = 1 << 20;
        let ram = [(0x4000_0000, 0x4000_0000 + 32 * M)];
        // The image at the start of RAM, the device tree near its end (as Xen places it).
        let image = (0x4000_0000, 0x4000_0000 + 300 * 1024 + 5);
        let dtb = (0x4000_0000 + 30 * M, 0x4000_0000 + 30 * M + 0x1234);
        let heap = largest_free(&ram, &[image, dtb, (0, 0)], 1 << 32);
        assert_eq!(heap, (0x4004_c000, 0x4000_0000 + 30 * M));
        // Nothing used: the whole bank; a bank above the limit is cut at the limit.
        assert_eq!(largest_free(&ram, &[], 1 << 32), ram[0]);
        assert_eq!(
            largest_free(&[(0xf000_0000, 0x1_1000_0000)], &[], 1 << 32),
            (0xf000_0000, 1 << 32)
        );
        // Used ranges that cover everything, overlap each other or lie outside.
        assert_eq!(largest_free(&ram, &[(0, u64::MAX)], 1 << 32), (0, 0));
        let overlapping = [
            (0x4000_0000, 0x4000_0000 + 8 * M),
            (0x4000_0000 + 4 * M, 0x4000_0000 + 20 * M),
        ];
        assert_eq!(
            largest_free(&ram, &overlapping, 1 << 32),
            (0x4000_0000 + 20 * M, 0x4000_0000 + 32 * M)
        );
        // The larger of two banks wins.
        let two = [
            (0x4000_0000, 0x4000_0000 + M),
            (0x8000_0000, 0x8000_0000 + 2 * M),
        ];
        assert_eq!(largest_free(&two, &[], 1 << 32), two[1]);
    }
}
