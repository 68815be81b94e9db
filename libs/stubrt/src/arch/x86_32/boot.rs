//! The entry point, the Xen ELF notes and the hypercall page of a 32-bit PAE PV guest.
//!
//! Xen enters `stubrt_pv_start` in 32-bit protected mode in ring 1 with paging on (PAE
//! page tables it built; virtual = pseudo-physical, as VIRT_BASE is 0), flat segments
//! loaded, and `%esi` pointing at `start_info`; it fills the hypercall page itself.

use super::STACK_SIZE;

core::arch::global_asm!(
    super::super::x86::xen_note_macros!(),
    r#"

    xen_note_str {note_guest_os}, stubrt
    xen_note_str {note_xen_version}, xen-3.0
    xen_note_str {note_loader}, generic
    xen_note_str {note_pae_mode}, yes
    xen_note {note_virt_base}, .long, 0
    xen_note {note_paddr_offset}, .long, 0
    xen_note {note_entry}, .long, stubrt_pv_start
    xen_note {note_hypercall_page}, .long, stubrt_hypercall_page

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

    .section .text.stubrt.boot, "ax"
    .code32
    .globl stubrt_pv_start
    stubrt_pv_start:
    cld
    mov $stubrt_stack_top, %esp
    /* cdecl: the start_info pointer on the stack, which stays 16-byte aligned at the call. */
    sub $12, %esp
    push %esi
    call stubrt_pv_main
    ud2
    .text
    "#,
    note_guest_os = const xen_abi::elfnote::GUEST_OS,
    note_xen_version = const xen_abi::elfnote::XEN_VERSION,
    note_loader = const xen_abi::elfnote::LOADER,
    note_pae_mode = const xen_abi::elfnote::PAE_MODE,
    note_virt_base = const xen_abi::elfnote::VIRT_BASE,
    note_paddr_offset = const xen_abi::elfnote::PADDR_OFFSET,
    note_entry = const xen_abi::elfnote::ENTRY,
    note_hypercall_page = const xen_abi::elfnote::HYPERCALL_PAGE,
    stack_size = const STACK_SIZE,
    options(att_syntax)
);
