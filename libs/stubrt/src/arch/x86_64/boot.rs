//! Entry points, the Xen ELF notes and the hypercall page.
//!
//! One ELF serves both boot protocols:
//! - PV: Xen enters `stubrt_pv_start` in 64-bit mode with paging on (virtual = pseudo-physical,
//!   as VIRT_BASE is 0) and `%rsi` pointing at `start_info`; it fills the hypercall page itself.
//! - PVH: Xen enters `stubrt_pvh_start` in 32-bit protected mode with paging off and `%ebx`
//!   holding the physical address of `hvm_start_info`; we build an identity map of the first
//!   4 GiB with 2 MiB pages, enter long mode and enable SSE (the precompiled `core` uses it).

use super::STACK_SIZE;

core::arch::global_asm!(
    super::super::x86::xen_note_macros!(),
    r#"

    xen_note_str {note_guest_os}, stubrt
    xen_note_str {note_xen_version}, xen-3.0
    xen_note_str {note_loader}, generic
    xen_note {note_virt_base}, .quad, 0
    xen_note {note_paddr_offset}, .quad, 0
    xen_note {note_entry}, .quad, stubrt_pv_start
    xen_note {note_hypercall_page}, .quad, stubrt_hypercall_page
    xen_note {note_phys32_entry}, .long, stubrt_pvh_start
    xen_note {note_supported_features}, .long, {supported_features}

    .section .text.stubrt.hypercall_page, "ax"
    .balign 4096
    .globl stubrt_hypercall_page
    stubrt_hypercall_page:
    .fill 4096, 1, 0xcc

    .section .bss.stubrt.stack, "aw", @nobits
    .balign 16
    stubrt_stack_bottom:
    .skip {stack_size}
    stubrt_stack_top:

    .section .bss.stubrt.pvh_tables, "aw", @nobits
    .balign 4096
    stubrt_pvh_pml4: .skip 4096
    stubrt_pvh_pdpt: .skip 4096
    stubrt_pvh_pd: .skip 4 * 4096

    .section .rodata.stubrt.gdt, "a"
    .balign 16
    stubrt_pvh_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
    stubrt_pvh_gdt_end:
    stubrt_pvh_gdt_desc:
    .word stubrt_pvh_gdt_end - stubrt_pvh_gdt - 1
    .quad stubrt_pvh_gdt

    .section .text.stubrt.boot, "ax"
    .code64
    .globl stubrt_pv_start
    stubrt_pv_start:
    cld
    mov $stubrt_stack_top, %rsp
    mov %rsi, %rdi
    call stubrt_pv_main
    ud2

    .code32
    .globl stubrt_pvh_start
    stubrt_pvh_start:
    cli
    cld
    mov %ebx, %esi

    /* PML4[0] -> PDPT, PDPT[0..4] -> four page directories of 2 MiB pages. */
    mov $stubrt_pvh_pdpt + 3, %eax
    mov %eax, stubrt_pvh_pml4
    movl $0, stubrt_pvh_pml4 + 4
    xor %ecx, %ecx
    1:
    mov %ecx, %eax
    shl $12, %eax
    add $stubrt_pvh_pd + 3, %eax
    mov %eax, stubrt_pvh_pdpt(, %ecx, 8)
    movl $0, stubrt_pvh_pdpt + 4(, %ecx, 8)
    inc %ecx
    cmp $4, %ecx
    jne 1b
    xor %ecx, %ecx
    2:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, stubrt_pvh_pd(, %ecx, 8)
    movl $0, stubrt_pvh_pd + 4(, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    /* PAE, OSFXSR and OSXMMEXCPT; long mode; paging; SSE without emulation. */
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4
    mov $stubrt_pvh_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    and $~0x4, %eax
    or $0x80000003, %eax
    mov %eax, %cr0
    lgdt stubrt_pvh_gdt_desc
    ljmp $0x08, $3f

    .code64
    3:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $stubrt_stack_top, %rsp
    mov %esi, %edi
    call stubrt_pvh_main
    ud2
    .text
    "#,
    note_guest_os = const xen_abi::elfnote::GUEST_OS,
    note_xen_version = const xen_abi::elfnote::XEN_VERSION,
    note_loader = const xen_abi::elfnote::LOADER,
    note_virt_base = const xen_abi::elfnote::VIRT_BASE,
    note_paddr_offset = const xen_abi::elfnote::PADDR_OFFSET,
    note_entry = const xen_abi::elfnote::ENTRY,
    note_hypercall_page = const xen_abi::elfnote::HYPERCALL_PAGE,
    note_phys32_entry = const xen_abi::elfnote::PHYS32_ENTRY,
    note_supported_features = const xen_abi::elfnote::SUPPORTED_FEATURES,
    supported_features = const (1u32 << xen_abi::features::DOM0),
    stack_size = const STACK_SIZE,
    options(att_syntax)
);
