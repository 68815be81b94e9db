//! PV memory: Xen maps only the boot region (image, start info, page tables and some padding);
//! the rest of the domain's pages must be mapped by the guest through `mmu_update`, because a
//! PV guest's page tables are read-only to it.
//!
//! The layout is the simplest one: VIRT_BASE is 0, so the virtual address of pseudo-physical
//! frame `pfn` is `pfn << 12`. Page-table frames are pseudo-physical pages too; Xen's
//! machine-to-physical table turns the machine frame in an entry back into a pfn.
//!
//! x86_64 has four levels of tables; 32-bit PV guests run with PAE, three levels of the same
//! 8-byte entries, the top one of four entries that may carry no flag but present. The p2m
//! and m2p tables hold the guest's words (`XenUlong`: 4 bytes on x86_32).

use xen_abi::{
    hypercall, uvmf, MmuUpdate, XenUlong, DOMID_SELF, MACH2PHYS_VIRT_START, MMU_NORMAL_PT_UPDATE,
};

const PRESENT: u64 = 1;
const RW: u64 = 2;
const USER: u64 = 4;
const ACCESSED: u64 = 0x20;
const DIRTY: u64 = 0x40;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const TABLE_FLAGS: u64 = PRESENT | RW | USER | ACCESSED | DIRTY;
const PAGE_FLAGS: u64 = PRESENT | RW | ACCESSED | DIRTY;

/// Levels of page tables.
#[cfg(target_arch = "x86_64")]
const LEVELS: u32 = 4;
#[cfg(target_arch = "x86")]
const LEVELS: u32 = 3;

/// Flags of an entry at `level` (1: the L2 entry naming an L1 table) that points to a table.
const fn table_flags(level: u32) -> u64 {
    if cfg!(target_arch = "x86") && level == LEVELS - 1 {
        // PAE's top-level entries have their other flag bits reserved.
        PRESENT
    } else {
        TABLE_FLAGS
    }
}

/// Pages kept back after mapping all memory, to become page tables of later mappings.
const TABLE_POOL: u64 = 8;

/// Number of page-table writes sent in one `mmu_update`.
const BATCH: usize = 128;

/// Errors of PV page-table updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvMapError {
    /// The hypervisor refused an update (negative errno).
    Hypercall(isize),
    /// No mapped page is left to become a page table.
    OutOfTablePages,
}

/// The guest's view of its PV memory: the p2m list, the page tables Xen built, and the first
/// pfn not used by the boot region.
pub struct PvMemory {
    p2m: *const XenUlong,
    nr_pages: u64,
    l4_va: u64,
    next_free_pfn: u64,
    /// After `map_all`: the end of the pages kept back for later page tables (the heap
    /// starts there); 0 before.
    pool_end: u64,
    batch: [MmuUpdate; BATCH],
    queued: usize,
}

impl PvMemory {
    /// # Safety
    ///
    /// The arguments must come from this domain's `start_info`: `mfn_list` the virtual address
    /// of the p2m list with `nr_pages` entries, `pt_base` the virtual address of the live L4
    /// table, and `first_free_pfn` the first pfn after the boot region.
    pub unsafe fn new(mfn_list: u64, nr_pages: u64, pt_base: u64, first_free_pfn: u64) -> Self {
        PvMemory {
            p2m: mfn_list as usize as *const XenUlong,
            nr_pages,
            l4_va: pt_base,
            next_free_pfn: first_free_pfn,
            pool_end: 0,
            batch: [MmuUpdate { ptr: 0, val: 0 }; BATCH],
            queued: 0,
        }
    }

    /// The machine frame behind pseudo-physical frame `pfn`.
    pub fn pfn_to_mfn(&self, pfn: u64) -> Option<u64> {
        if pfn >= self.nr_pages {
            return None;
        }
        // SAFETY: the p2m list has `nr_pages` entries and stays mapped for the domain's life
        // (`new`'s contract); `pfn` is in range.
        Some(xen_abi::widen(unsafe {
            self.p2m.add(pfn as usize).read_volatile()
        }))
    }

    /// The pseudo-physical frame of machine frame `mfn`, from Xen's read-only m2p table.
    pub fn mfn_to_pfn(mfn: u64) -> u64 {
        // SAFETY: Xen maps the machine-to-physical table read-only at MACH2PHYS_VIRT_START in
        // every PV guest, covering all machine frames the guest can hold.
        let entry = unsafe {
            (MACH2PHYS_VIRT_START as usize as *const XenUlong)
                .add(mfn as usize)
                .read_volatile()
        };
        xen_abi::widen(entry)
    }

    /// The machine address of a byte of a mapped pseudo-physical page.
    fn virt_to_machine(&self, va: u64) -> Result<u64, PvMapError> {
        let mfn = self
            .pfn_to_mfn(va >> 12)
            .ok_or(PvMapError::OutOfTablePages)?;
        Ok((mfn << 12) | (va & 0xfff))
    }

    fn flush(&mut self) -> Result<(), PvMapError> {
        if self.queued == 0 {
            return Ok(());
        }
        let mut done = 0u32;
        // SAFETY: `batch[..queued]` holds page-table writes that only map frames of this
        // domain that nothing else maps, at addresses nothing uses yet.
        let rc = unsafe {
            crate::arch::hypercall(
                hypercall::MMU_UPDATE,
                self.batch.as_ptr() as usize,
                self.queued,
                core::ptr::addr_of_mut!(done) as usize,
                usize::from(DOMID_SELF),
                0,
            )
        };
        self.queued = 0;
        if rc < 0 {
            return Err(PvMapError::Hypercall(rc));
        }
        Ok(())
    }

    fn queue(&mut self, ptr: u64, val: u64) -> Result<(), PvMapError> {
        self.batch[self.queued] = MmuUpdate {
            ptr: ptr | MMU_NORMAL_PT_UPDATE,
            val,
        };
        self.queued += 1;
        if self.queued == BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Turns the next free (mapped) page into an empty page table hooked into `entry_va`, an
    /// entry of a table at `level`.
    fn new_table(&mut self, entry_va: u64, level: u32) -> Result<u64, PvMapError> {
        self.flush()?;
        let pfn = self.next_free_pfn;
        if self.pool_end != 0 && pfn >= self.pool_end {
            return Err(PvMapError::OutOfTablePages);
        }
        let mfn = self.pfn_to_mfn(pfn).ok_or(PvMapError::OutOfTablePages)?;
        let va = pfn << 12;
        // SAFETY: `pfn` is the first free page of the boot region or of what this code mapped
        // before; nothing else uses it, and it is mapped writable at `va`.
        unsafe { core::ptr::write_bytes(va as usize as *mut u8, 0, 4096) };
        // SAFETY: remapping our own, unused page read-only, as Xen requires of page tables.
        let rc = unsafe {
            crate::arch::update_va_mapping(va, (mfn << 12) | PRESENT | ACCESSED, uvmf::INVLPG)
        };
        if rc < 0 {
            return Err(PvMapError::Hypercall(rc));
        }
        self.next_free_pfn += 1;
        let entry = (mfn << 12) | table_flags(level);
        self.queue(self.virt_to_machine(entry_va)?, entry)?;
        self.flush()?;
        Ok(entry)
    }

    /// Maps machine frame `mfn` at virtual address `va`, creating page tables as needed.
    /// Returns `false` if `va` was already mapped (it is left alone). Updates are batched:
    /// call [`PvMemory::finish`] before touching the new mappings.
    pub fn map_frame(&mut self, va: u64, mfn: u64) -> Result<bool, PvMapError> {
        let mut table = self.l4_va;
        for level in (1..LEVELS).rev() {
            let entry_va = table + ((va >> (12 + 9 * level)) & 511) * 8;
            // SAFETY: `table` is a live page table of this domain, mapped (read-only) at its
            // pfn's address; `entry_va` is inside it.
            let mut entry = unsafe { (entry_va as usize as *const u64).read_volatile() };
            if entry & PRESENT == 0 {
                entry = self.new_table(entry_va, level)?;
            }
            table = Self::mfn_to_pfn((entry & ADDR_MASK) >> 12) << 12;
        }
        let pte_va = table + ((va >> 12) & 511) * 8;
        // SAFETY: as above, for the L1 table.
        let pte = unsafe { (pte_va as usize as *const u64).read_volatile() };
        if pte & PRESENT != 0 {
            return Ok(false);
        }
        self.queue(self.virt_to_machine(pte_va)?, (mfn << 12) | PAGE_FLAGS)?;
        Ok(true)
    }

    /// Sends the queued updates.
    pub fn finish(&mut self) -> Result<(), PvMapError> {
        self.flush()
    }

    /// Maps every page of the domain at its pfn's address and returns the free pages,
    /// `[first, end)` as virtual addresses, less a few kept back for later page tables.
    pub fn map_all(&mut self) -> Result<(u64, u64), PvMapError> {
        let mut pfn = self.next_free_pfn;
        while pfn < self.nr_pages {
            let mfn = self.pfn_to_mfn(pfn).ok_or(PvMapError::OutOfTablePages)?;
            self.map_frame(pfn << 12, mfn)?;
            pfn += 1;
        }
        self.finish()?;
        // Keep pages back for the tables of later mappings (grant frames need up to three).
        self.pool_end = (self.next_free_pfn + TABLE_POOL).min(self.nr_pages);
        Ok((self.pool_end << 12, self.nr_pages << 12))
    }
}
