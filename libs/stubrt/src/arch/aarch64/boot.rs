//! The arm64 Image header, the entry point, the identity map and the exception vectors.
//!
//! Xen (for a dom0less domain) and libxl both load an arm64 Image `text_offset` bytes above
//! the start of guest RAM, which is fixed at 0x40000000 (`GUEST_RAM0_BASE`), and enter its
//! first byte at EL1 with the MMU and caches off, interrupts masked and the device tree's
//! address in `x0`. The image is linked there (`link.ld`) and checks it.
//!
//! Before any Rust runs, the boot code turns on the MMU with caches, using page tables that
//! are part of the image (assembled below, so nothing is written with caches off): the first
//! 4 GiB identity-mapped, guest RAM (1-4 GiB) and Xen's grant-table and magic-page windows
//! (0x38000000-0x3a000000: the console and xenstore rings) as normal write-back memory,
//! everything else in the first GiB (the GIC, the emulated UART) as device memory. Atomic
//! instructions need normal memory; so does the compiled code, which assumes unaligned
//! accesses work. It also enables the FP/SIMD registers, which the compiled `core` uses.

use super::{NORMAL_WINDOW, STACK_SIZE};

/// `MAIR_EL1`: attribute 0 device-nGnRE, attribute 1 normal write-back (read and write
/// allocate), inner and outer.
const MAIR: u64 = 0xff04;
/// `TCR_EL1`: 4 GiB of address space from TTBR0 (T0SZ 32, walks starting at level 1), 4 KiB
/// granules, walks cached write-back and inner shareable, TTBR1 walks off (EPD1); the
/// physical address size (IPS) is copied from `ID_AA64MMFR0_EL1` by the code.
const TCR: u64 = 32 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 30);
/// `SCTLR_EL1` bits set: MMU (M), data cache (C), instruction cache (I).
const SCTLR_SET: u64 = (1 << 0) | (1 << 2) | (1 << 12);
/// `SCTLR_EL1` bits cleared: alignment checks (A), write-implies-never-execute (WXN).
const SCTLR_CLEAR: u64 = (1 << 1) | (1 << 19);
/// A block descriptor of normal memory: valid block, attribute 1, inner shareable,
/// accessed; read-write and executable at EL1.
const NORMAL: u64 = 0x1 | (1 << 2) | (3 << 8) | (1 << 10);
/// The first GiB in 2 MiB blocks: device memory below the normal window, the window, device
/// memory above it.
const BLOCK: u64 = 1 << 21;
const BLOCKS_BELOW: u64 = NORMAL_WINDOW.0 / BLOCK;
const BLOCKS_NORMAL: u64 = (NORMAL_WINDOW.1 - NORMAL_WINDOW.0) / BLOCK;
const BLOCKS_ABOVE: u64 = 512 - BLOCKS_BELOW - BLOCKS_NORMAL;
/// A block descriptor of device memory: valid block, attribute 0, accessed, never
/// executable.
const DEVICE: u64 = 0x1 | (1 << 10) | (1 << 53) | (1 << 54);

core::arch::global_asm!(
    r#"
    .section .text.stubrt.boot, "ax"
    .globl stubrt_image_header
    stubrt_image_header:
    b stubrt_start
    .long 0
    .quad 0                       /* text_offset */
    .quad __stubrt_image_size     /* image_size: loaded bytes and .bss */
    .quad 2                       /* flags: little-endian, 4 KiB pages */
    .quad 0, 0, 0
    .ascii "ARM\x64"
    .long 0

    stubrt_start:
    mov x19, x0
    /* Linked for where the loader puts it: anything else would crash later, obscurely. */
    adr x9, stubrt_image_header
    ldr x10, =stubrt_image_header
    cmp x9, x10
    b.ne stubrt_stop

    mov x9, #(3 << 20)            /* CPACR_EL1.FPEN: FP/SIMD at EL1 and EL0 */
    msr cpacr_el1, x9
    ldr x9, ={mair}
    msr mair_el1, x9
    ldr x9, ={tcr}
    mrs x10, id_aa64mmfr0_el1
    and x10, x10, #7
    bfi x9, x10, #32, #3          /* IPS = PARange */
    msr tcr_el1, x9
    ldr x9, =stubrt_l1
    msr ttbr0_el1, x9
    isb
    tlbi vmalle1
    dsb nsh
    isb
    mrs x9, sctlr_el1
    ldr x10, ={sctlr_set}
    orr x9, x9, x10
    ldr x10, ={sctlr_clear}
    bic x9, x9, x10
    msr sctlr_el1, x9
    isb
    ic iallu
    dsb nsh
    isb

    ldr x9, =stubrt_vectors
    msr vbar_el1, x9
    isb

    /* Zero .bss (the stack is in it): Xen does not clear a domain's memory. */
    ldr x9, =__stubrt_bss_start
    ldr x10, =__stubrt_bss_end
    1:
    cmp x9, x10
    b.hs 2f
    stp xzr, xzr, [x9], #16
    b 1b
    2:
    ldr x9, =stubrt_stack_top
    mov sp, x9
    mov x0, x19
    bl stubrt_aarch64_main

    stubrt_stop:
    wfi
    b stubrt_stop

    /* Every exception is fatal: report it (on a fresh stack, the old one may be what
     * failed) and crash the domain. */
    stubrt_trap:
    mrs x1, esr_el1
    mrs x2, elr_el1
    mrs x3, far_el1
    ldr x9, =stubrt_stack_top
    mov sp, x9
    bl stubrt_aarch64_trap
    b stubrt_stop
    .ltorg

    .section .text.stubrt.vectors, "ax"
    .balign 2048
    stubrt_vectors:
    .irp kind, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 128
    mov x0, #\kind
    b stubrt_trap
    .endr

    .section .data.stubrt.page_tables, "aw"
    .balign 4096
    stubrt_l1:
    .quad stubrt_l2 + 3           /* 0-1 GiB: a table of 2 MiB blocks */
    .quad (1 << 30) + {normal}    /* 1-4 GiB: guest RAM */
    .quad (2 << 30) + {normal}
    .quad (3 << 30) + {normal}
    .fill 508, 8, 0
    .balign 4096
    stubrt_l2:
    .set stubrt_block, 0
    .rept {below}
    .quad stubrt_block + {device}
    .set stubrt_block, stubrt_block + {block}
    .endr
    .rept {window}                /* grant table, magic pages */
    .quad stubrt_block + {normal}
    .set stubrt_block, stubrt_block + {block}
    .endr
    .rept {above}
    .quad stubrt_block + {device}
    .set stubrt_block, stubrt_block + {block}
    .endr

    .section .bss.stubrt.stack, "aw", @nobits
    .balign 16
    .skip {stack_size}
    stubrt_stack_top:
    .text
    "#,
    mair = const MAIR,
    tcr = const TCR,
    sctlr_set = const SCTLR_SET,
    sctlr_clear = const SCTLR_CLEAR,
    normal = const NORMAL,
    device = const DEVICE,
    block = const BLOCK,
    below = const BLOCKS_BELOW,
    window = const BLOCKS_NORMAL,
    above = const BLOCKS_ABOVE,
    stack_size = const STACK_SIZE,
);

/// Where every exception ends: `kind` is the vector's number (current EL with SP0, SPx,
/// lower EL 64-bit, 32-bit; each synchronous, IRQ, FIQ, SError).
#[no_mangle]
extern "C" fn stubrt_aarch64_trap(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    panic!("exception {kind} (ESR {esr:#x}) at {elr:#x}, address {far:#x}");
}
