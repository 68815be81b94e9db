//! Checks every structure size, field offset and constant of this crate against Xen's C
//! public headers: a C program prints each C expression of the table, and the test compares
//! the printed values with the Rust side. For the other architectures (x86_32, aarch64) the
//! expressions are compiled to assembly for that architecture, and their values become a
//! file of constant assertions that every build of the crate for it compiles.
//!
//! The headers come from Debian's `libxen-dev` of the Xen version the project tests with;
//! `cargo xtask test` sets `XEN_INCLUDE_DIR` to the build environment's include folder (its
//! pinned libxen-dev) and compiles with the build environment's C compilers.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use xen_abi::event_channel::*;
use xen_abi::grant_table::*;
use xen_abi::hvm::*;
use xen_abi::io::blkif::*;
use xen_abi::io::console::XenconsInterface;
use xen_abi::io::ring::{ring_size, SringHeader};
use xen_abi::io::xenstore::*;
use xen_abi::memory::*;
use xen_abi::sched::*;
use xen_abi::vcpu::*;
use xen_abi::*;

/// The architectures the table is checked for: the host's by running a C program, the
/// others from assembly (see [`check_cross_layout`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Arch {
    X86_64,
    X86_32,
    Aarch64,
}

use Arch::*;

/// Every architecture: the default of a check.
const ALL: &[Arch] = &[X86_64, X86_32, Aarch64];
/// The x86 PV and PVH interfaces (start info, the PV MMU, E820, ELF notes): Arm guests
/// have none of them.
const X86: &[Arch] = &[X86_64, X86_32];

/// The architecture this test runs on.
const HOST: Arch = if cfg!(target_arch = "x86") {
    X86_32
} else if cfg!(target_arch = "aarch64") {
    Aarch64
} else {
    X86_64
};

/// One check: a C expression (evaluated as an unsigned 64-bit number), the Rust value on
/// this host, the Rust expression itself (for the assertion files, see
/// [`check_cross_layout`]) and the architectures whose headers and Rust definitions have it.
struct Check {
    c: String,
    rust: u64,
    rust_src: String,
    archs: &'static [Arch],
}

fn check(c: impl Into<String>, rust: impl TryInto<u64>, rust_src: impl Into<String>) -> Check {
    let rust = match rust.try_into() {
        Ok(v) => v,
        Err(_) => panic!("table value does not fit in u64"),
    };
    Check {
        c: c.into(),
        rust,
        rust_src: rust_src.into(),
        archs: ALL,
    }
}

/// The checks `add` pushes hold only on `archs`.
fn only(table: &mut Vec<Check>, archs: &'static [Arch], add: impl FnOnce(&mut Vec<Check>)) {
    let start = table.len();
    add(table);
    for c in &mut table[start..] {
        c.archs = archs;
    }
}

/// Each field's `offsetof` in a C type, against the Rust struct.
macro_rules! fields {
    ($table:ident, $rust:ty, $c:literal { $($rf:ident => $cf:literal),* $(,)? }) => {
        $( $table.push(check(
            concat!("offsetof(", $c, ", ", $cf, ")"),
            offset_of!($rust, $rf),
            concat!("offset_of!(", stringify!($rust), ", ", stringify!($rf), ")"),
        )); )*
    };
}

/// `sizeof` of a C type and each field's `offsetof`, against the Rust struct.
macro_rules! layout {
    ($table:ident, $rust:ty, $c:literal { $($fields:tt)* }) => {
        $table.push(check(
            concat!("sizeof(", $c, ")"),
            size_of::<$rust>(),
            concat!("size_of::<", stringify!($rust), ">()"),
        ));
        fields!($table, $rust, $c { $($fields)* });
    };
}

/// C expressions and the Rust values they must equal (constant Rust expressions).
macro_rules! consts {
    ($table:ident, $($c:expr => $rust:expr),* $(,)?) => {
        $( $table.push(check($c, $rust, stringify!($rust))); )*
    };
}

/// Every check, in the order of the assertion files; each architecture's are those that
/// name it (see [`table_for`]).
fn table() -> Vec<Check> {
    let mut t = Vec::new();
    only(&mut t, X86, |t| {
        layout!(t, StartInfo, "struct start_info" {
            magic => "magic", nr_pages => "nr_pages", shared_info => "shared_info",
            flags => "flags", store_mfn => "store_mfn", store_evtchn => "store_evtchn",
            console => "console", pt_base => "pt_base", nr_pt_frames => "nr_pt_frames",
            mfn_list => "mfn_list", mod_start => "mod_start", mod_len => "mod_len",
            cmd_line => "cmd_line", first_p2m_pfn => "first_p2m_pfn",
            nr_p2m_frames => "nr_p2m_frames",
        });
        consts!(t,
            "sizeof(((struct start_info *)0)->console)" => size_of::<StartInfoConsole>(),
            "offsetof(struct start_info, console.domU.evtchn) - offsetof(struct start_info, console)"
                => offset_of!(StartInfoConsoleDomU, evtchn),
            "offsetof(struct start_info, console.dom0.info_size) - offsetof(struct start_info, console)"
                => offset_of!(StartInfoConsoleDom0, info_size),
        );
    });
    layout!(t, VcpuTimeInfo, "struct vcpu_time_info" {
        version => "version", tsc_timestamp => "tsc_timestamp", system_time => "system_time",
        tsc_to_system_mul => "tsc_to_system_mul", tsc_shift => "tsc_shift", flags => "flags",
        pad1 => "pad1",
    });
    // Arm's `arch_vcpu_info` and `arch_shared_info` are empty.
    layout!(t, ArchVcpuInfo, "struct arch_vcpu_info" {});
    only(&mut t, X86, |t| {
        fields!(t, ArchVcpuInfo, "struct arch_vcpu_info" { cr2 => "cr2", pad => "pad" });
    });
    layout!(t, VcpuInfo, "struct vcpu_info" {
        evtchn_upcall_pending => "evtchn_upcall_pending",
    });
    only(&mut t, X86, |t| {
        fields!(t, VcpuInfo, "struct vcpu_info" { evtchn_upcall_mask => "evtchn_upcall_mask" });
    });
    // Arm has no PV upcall mask (`XEN_HAVE_PV_UPCALL_MASK`): the byte is `pad0` there.
    only(&mut t, &[Aarch64], |t| {
        fields!(t, VcpuInfo, "struct vcpu_info" { evtchn_upcall_mask => "pad0" });
    });
    fields!(t, VcpuInfo, "struct vcpu_info" {
        evtchn_pending_sel => "evtchn_pending_sel", arch => "arch", time => "time",
    });
    layout!(t, ArchSharedInfo, "struct arch_shared_info" {});
    only(&mut t, X86, |t| {
        fields!(t, ArchSharedInfo, "struct arch_shared_info" {
            max_pfn => "max_pfn", pfn_to_mfn_frame_list_list => "pfn_to_mfn_frame_list_list",
            nmi_reason => "nmi_reason", p2m_cr3 => "p2m_cr3", p2m_vaddr => "p2m_vaddr",
            p2m_generation => "p2m_generation",
        });
    });
    layout!(t, SharedInfo, "struct shared_info" {
        vcpu_info => "vcpu_info", evtchn_pending => "evtchn_pending",
        evtchn_mask => "evtchn_mask", wc_version => "wc_version", wc_sec => "wc_sec",
        wc_nsec => "wc_nsec",
    });
    // x86_32 keeps `wc_sec_hi` in `arch_shared_info` (checked at the end of the table):
    // its `shared_info` has no room for it.
    only(&mut t, &[X86_64, Aarch64], |t| {
        fields!(t, SharedInfo, "struct shared_info" { wc_sec_hi => "wc_sec_hi" });
    });
    fields!(t, SharedInfo, "struct shared_info" { arch => "arch" });
    only(&mut t, X86, |t| {
        layout!(t, MmuUpdate, "struct mmu_update" { ptr => "ptr", val => "val" });
        layout!(t, MmuextOp, "struct mmuext_op" { cmd => "cmd", arg1 => "arg1", arg2 => "arg2" });
    });
    layout!(t, EvtchnAllocUnbound, "struct evtchn_alloc_unbound" {
        dom => "dom", remote_dom => "remote_dom", port => "port",
    });
    layout!(t, EvtchnBindInterdomain, "struct evtchn_bind_interdomain" {
        remote_dom => "remote_dom", remote_port => "remote_port", local_port => "local_port",
    });
    layout!(t, EvtchnBindVirq, "struct evtchn_bind_virq" {
        virq => "virq", vcpu => "vcpu", port => "port",
    });
    layout!(t, EvtchnClose, "struct evtchn_close" { port => "port" });
    layout!(t, EvtchnSend, "struct evtchn_send" { port => "port" });
    layout!(t, EvtchnUnmask, "struct evtchn_unmask" { port => "port" });
    layout!(t, SchedShutdown, "struct sched_shutdown" { reason => "reason" });
    layout!(t, SchedPoll, "struct sched_poll" {
        ports => "ports", nr_ports => "nr_ports", timeout => "timeout",
    });
    layout!(t, VcpuRunstateInfo, "struct vcpu_runstate_info" {
        state => "state", state_entry_time => "state_entry_time", time => "time",
    });
    layout!(t, VcpuRegisterRunstateMemoryArea, "struct vcpu_register_runstate_memory_area" {
        addr => "addr",
    });
    layout!(t, GrantEntryV1, "struct grant_entry_v1" {
        flags => "flags", domid => "domid", frame => "frame",
    });
    layout!(t, GnttabSetupTable, "struct gnttab_setup_table" {
        dom => "dom", nr_frames => "nr_frames", status => "status", frame_list => "frame_list",
    });
    layout!(t, GnttabQuerySize, "struct gnttab_query_size" {
        dom => "dom", nr_frames => "nr_frames", max_nr_frames => "max_nr_frames",
        status => "status",
    });
    layout!(t, XenMemoryReservation, "struct xen_memory_reservation" {
        extent_start => "extent_start", nr_extents => "nr_extents",
        extent_order => "extent_order", mem_flags => "mem_flags", domid => "domid",
    });
    layout!(t, XenAddToPhysmap, "struct xen_add_to_physmap" {
        domid => "domid", size => "size", space => "space", idx => "idx", gpfn => "gpfn",
    });
    only(&mut t, X86, |t| {
        layout!(t, XenMemoryMap, "struct xen_memory_map" {
            nr_entries => "nr_entries", buffer => "buffer",
        });
        // Xen's E820 entries are the packed, 20-byte BIOS layout.
        consts!(t, "20" => size_of::<E820Entry>());
    });
    layout!(t, XenHvmParam, "struct xen_hvm_param" {
        domid => "domid", index => "index", value => "value",
    });
    // PVH's start of day (`xen/arch-x86/hvm/start_info.h`).
    only(&mut t, X86, |t| {
        layout!(t, HvmStartInfo, "struct hvm_start_info" {
            magic => "magic", version => "version", flags => "flags", nr_modules => "nr_modules",
            modlist_paddr => "modlist_paddr", cmdline_paddr => "cmdline_paddr",
            rsdp_paddr => "rsdp_paddr", memmap_paddr => "memmap_paddr",
            memmap_entries => "memmap_entries", reserved => "reserved",
        });
        layout!(t, HvmModlistEntry, "struct hvm_modlist_entry" {
            paddr => "paddr", size => "size", cmdline_paddr => "cmdline_paddr",
            reserved => "reserved",
        });
        layout!(t, HvmMemmapTableEntry, "struct hvm_memmap_table_entry" {
            addr => "addr", size => "size", kind => "type", reserved => "reserved",
        });
    });
    layout!(t, XenconsInterface, "struct xencons_interface" {
        r#in => "in", out => "out", in_cons => "in_cons", in_prod => "in_prod",
        out_cons => "out_cons", out_prod => "out_prod",
    });
    layout!(t, XenstoreDomainInterface, "struct xenstore_domain_interface" {
        req => "req", rsp => "rsp", req_cons => "req_cons", req_prod => "req_prod",
        rsp_cons => "rsp_cons", rsp_prod => "rsp_prod", server_features => "server_features",
        connection => "connection", error => "error",
    });
    layout!(t, XsdSockmsg, "struct xsd_sockmsg" {
        kind => "type", req_id => "req_id", tx_id => "tx_id", len => "len",
    });
    layout!(t, BlkifRequestSegment, "struct blkif_request_segment" {
        gref => "gref", first_sect => "first_sect", last_sect => "last_sect",
    });
    layout!(t, BlkifRequest, "struct blkif_request" {
        operation => "operation", nr_segments => "nr_segments", handle => "handle",
        id => "id", sector_number => "sector_number", seg => "seg",
    });
    layout!(t, BlkifResponse, "struct blkif_response" {
        id => "id", operation => "operation", status => "status",
    });
    // The shared ring: header fields, then the entries. `struct blkif_sring` ends in the
    // ring entries, so only the header's fields compare.
    consts!(t,
        "offsetof(struct blkif_sring, ring)" => size_of::<SringHeader>(),
        "offsetof(struct blkif_sring, req_prod)" => offset_of!(SringHeader, req_prod),
        "offsetof(struct blkif_sring, req_event)" => offset_of!(SringHeader, req_event),
        "offsetof(struct blkif_sring, rsp_prod)" => offset_of!(SringHeader, rsp_prod),
        "offsetof(struct blkif_sring, rsp_event)" => offset_of!(SringHeader, rsp_event),
        "offsetof(struct blkif_sring, pvt)" => offset_of!(SringHeader, pvt),
        "offsetof(struct blkif_sring, __pad)" => offset_of!(SringHeader, pad),
        "__CONST_RING_SIZE(blkif, 4096)" => ring_size(4096, RING_ENTRY_SIZE),
    );

    consts!(
        t,
        "__HYPERVISOR_mmu_update" => hypercall::MMU_UPDATE,
        "__HYPERVISOR_memory_op" => hypercall::MEMORY_OP,
        "__HYPERVISOR_update_va_mapping" => hypercall::UPDATE_VA_MAPPING,
        "__HYPERVISOR_set_timer_op" => hypercall::SET_TIMER_OP,
        "__HYPERVISOR_xen_version" => hypercall::XEN_VERSION,
        "__HYPERVISOR_console_io" => hypercall::CONSOLE_IO,
        "__HYPERVISOR_grant_table_op" => hypercall::GRANT_TABLE_OP,
        "__HYPERVISOR_vm_assist" => hypercall::VM_ASSIST,
        "__HYPERVISOR_vcpu_op" => hypercall::VCPU_OP,
        "__HYPERVISOR_mmuext_op" => hypercall::MMUEXT_OP,
        "__HYPERVISOR_sched_op" => hypercall::SCHED_OP,
        "__HYPERVISOR_callback_op" => hypercall::CALLBACK_OP,
        "__HYPERVISOR_event_channel_op" => hypercall::EVENT_CHANNEL_OP,
        "__HYPERVISOR_physdev_op" => hypercall::PHYSDEV_OP,
        "__HYPERVISOR_hvm_op" => hypercall::HVM_OP,
        "CONSOLEIO_write" => console_io::WRITE,
        "CONSOLEIO_read" => console_io::READ,
        "XENVER_version" => xen_version::VERSION,
        "XENVER_get_features" => xen_version::GET_FEATURES,
        "XENFEAT_auto_translated_physmap" => features::AUTO_TRANSLATED_PHYSMAP,
        "XENFEAT_dom0" => features::DOM0,
        "DOMID_SELF" => DOMID_SELF,
        "XEN_LEGACY_MAX_VCPUS" => LEGACY_MAX_VCPUS,
    );
    // The PV guest's start of day and MMU.
    only(&mut t, X86, |t| {
        consts!(
            t,
            "MAX_GUEST_CMDLINE" => MAX_GUEST_CMDLINE,
            "HYPERVISOR_VIRT_START" => MACH2PHYS_VIRT_START,
            "SIF_PRIVILEGED" => sif::PRIVILEGED,
            "SIF_INITDOMAIN" => sif::INITDOMAIN,
            "SIF_MOD_START_PFN" => sif::MOD_START_PFN,
            "MMU_NORMAL_PT_UPDATE" => MMU_NORMAL_PT_UPDATE,
            "MMU_MACHPHYS_UPDATE" => MMU_MACHPHYS_UPDATE,
            "MMUEXT_PIN_L1_TABLE" => mmuext::PIN_L1_TABLE,
            "MMUEXT_PIN_L4_TABLE" => mmuext::PIN_L4_TABLE,
            "MMUEXT_UNPIN_TABLE" => mmuext::UNPIN_TABLE,
            "MMUEXT_NEW_BASEPTR" => mmuext::NEW_BASEPTR,
            "MMUEXT_TLB_FLUSH_LOCAL" => mmuext::TLB_FLUSH_LOCAL,
            "MMUEXT_INVLPG_LOCAL" => mmuext::INVLPG_LOCAL,
            "UVMF_INVLPG" => uvmf::INVLPG,
            "UVMF_TLB_FLUSH" => uvmf::TLB_FLUSH,
            "UVMF_ALL" => uvmf::ALL,
            "VMASST_TYPE_writable_pagetables" => vmasst::TYPE_WRITABLE_PAGETABLES,
        );
    });
    consts!(
        t,
        "EVTCHNOP_bind_interdomain" => EVTCHNOP_BIND_INTERDOMAIN,
        "EVTCHNOP_bind_virq" => EVTCHNOP_BIND_VIRQ,
        "EVTCHNOP_close" => EVTCHNOP_CLOSE,
        "EVTCHNOP_send" => EVTCHNOP_SEND,
        "EVTCHNOP_status" => EVTCHNOP_STATUS,
        "EVTCHNOP_alloc_unbound" => EVTCHNOP_ALLOC_UNBOUND,
        "EVTCHNOP_unmask" => EVTCHNOP_UNMASK,
        "VIRQ_TIMER" => virq::TIMER,
        "VIRQ_DEBUG" => virq::DEBUG,
        "VIRQ_CONSOLE" => virq::CONSOLE,
        "VIRQ_DOM_EXC" => virq::DOM_EXC,
        "SCHEDOP_yield" => SCHEDOP_YIELD,
        "SCHEDOP_block" => SCHEDOP_BLOCK,
        "SCHEDOP_shutdown" => SCHEDOP_SHUTDOWN,
        "SCHEDOP_poll" => SCHEDOP_POLL,
        "SHUTDOWN_poweroff" => shutdown::POWEROFF,
        "SHUTDOWN_reboot" => shutdown::REBOOT,
        "SHUTDOWN_suspend" => shutdown::SUSPEND,
        "SHUTDOWN_crash" => shutdown::CRASH,
        "SHUTDOWN_watchdog" => shutdown::WATCHDOG,
        "VCPUOP_register_runstate_memory_area" => VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
        "RUNSTATE_running" => runstate::RUNNING,
        "RUNSTATE_runnable" => runstate::RUNNABLE,
        "RUNSTATE_blocked" => runstate::BLOCKED,
        "RUNSTATE_offline" => runstate::OFFLINE,
        "GNTTABOP_map_grant_ref" => GNTTABOP_MAP_GRANT_REF,
        "GNTTABOP_unmap_grant_ref" => GNTTABOP_UNMAP_GRANT_REF,
        "GNTTABOP_setup_table" => GNTTABOP_SETUP_TABLE,
        "GNTTABOP_query_size" => GNTTABOP_QUERY_SIZE,
        "GNTTABOP_set_version" => GNTTABOP_SET_VERSION,
        "GTF_invalid" => gtf::INVALID,
        "GTF_permit_access" => gtf::PERMIT_ACCESS,
        "GTF_accept_transfer" => gtf::ACCEPT_TRANSFER,
        "GTF_type_mask" => gtf::TYPE_MASK,
        "GTF_readonly" => gtf::READONLY,
        "GTF_reading" => gtf::READING,
        "GTF_writing" => gtf::WRITING,
        "GNTTAB_NR_RESERVED_ENTRIES" => NR_RESERVED_ENTRIES,
        "GNTST_okay" => GNTST_OKAY as i64 as u64,
        "XENMEM_increase_reservation" => XENMEM_INCREASE_RESERVATION,
        "XENMEM_decrease_reservation" => XENMEM_DECREASE_RESERVATION,
        "XENMEM_maximum_ram_page" => XENMEM_MAXIMUM_RAM_PAGE,
        "XENMEM_current_reservation" => XENMEM_CURRENT_RESERVATION,
        "XENMEM_maximum_reservation" => XENMEM_MAXIMUM_RESERVATION,
        "XENMEM_populate_physmap" => XENMEM_POPULATE_PHYSMAP,
        "XENMEM_add_to_physmap" => XENMEM_ADD_TO_PHYSMAP,
    );
    only(&mut t, X86, |t| {
        consts!(t, "XENMEM_memory_map" => XENMEM_MEMORY_MAP);
    });
    consts!(
        t,
        "XENMAPSPACE_shared_info" => mapspace::SHARED_INFO,
        "XENMAPSPACE_grant_table" => mapspace::GRANT_TABLE,
        "XENMAPSPACE_gmfn" => mapspace::GMFN,
        "HVMOP_set_param" => HVMOP_SET_PARAM,
        "HVMOP_get_param" => HVMOP_GET_PARAM,
        "HVM_PARAM_STORE_PFN" => HVM_PARAM_STORE_PFN,
        "HVM_PARAM_STORE_EVTCHN" => HVM_PARAM_STORE_EVTCHN,
        "HVM_PARAM_CONSOLE_PFN" => HVM_PARAM_CONSOLE_PFN,
        "HVM_PARAM_CONSOLE_EVTCHN" => HVM_PARAM_CONSOLE_EVTCHN,
    );
    only(&mut t, X86, |t| {
        consts!(
            t,
            "XEN_HVM_START_MAGIC_VALUE" => HVM_START_MAGIC_VALUE,
            "XEN_HVM_MEMMAP_TYPE_RAM" => HVM_MEMMAP_TYPE_RAM,
            "XEN_HVM_MEMMAP_TYPE_RESERVED" => HVM_MEMMAP_TYPE_RESERVED,
            "XEN_HVM_MEMMAP_TYPE_ACPI" => HVM_MEMMAP_TYPE_ACPI,
        );
    });
    consts!(
        t,
        "XENSTORE_RING_SIZE" => XENSTORE_RING_SIZE,
        "XENSTORE_PAYLOAD_MAX" => XENSTORE_PAYLOAD_MAX,
        "BLKIF_OP_READ" => BLKIF_OP_READ,
        "BLKIF_OP_WRITE" => BLKIF_OP_WRITE,
        "BLKIF_OP_WRITE_BARRIER" => BLKIF_OP_WRITE_BARRIER,
        "BLKIF_OP_FLUSH_DISKCACHE" => BLKIF_OP_FLUSH_DISKCACHE,
        "BLKIF_OP_DISCARD" => BLKIF_OP_DISCARD,
        "BLKIF_MAX_SEGMENTS_PER_REQUEST" => BLKIF_MAX_SEGMENTS_PER_REQUEST,
        "(uint64_t)(int64_t)BLKIF_RSP_EOPNOTSUPP" => BLKIF_RSP_EOPNOTSUPP as i64 as u64,
        "(uint64_t)(int64_t)BLKIF_RSP_ERROR" => BLKIF_RSP_ERROR as i64 as u64,
        "BLKIF_RSP_OKAY" => BLKIF_RSP_OKAY as u64,
        "VDISK_CDROM" => VDISK_CDROM,
        "VDISK_REMOVABLE" => VDISK_REMOVABLE,
        "VDISK_READONLY" => VDISK_READONLY,
        "XenbusStateUnknown" => io::xenbus::UNKNOWN,
        "XenbusStateInitialising" => io::xenbus::INITIALISING,
        "XenbusStateInitWait" => io::xenbus::INIT_WAIT,
        "XenbusStateInitialised" => io::xenbus::INITIALISED,
        "XenbusStateConnected" => io::xenbus::CONNECTED,
        "XenbusStateClosing" => io::xenbus::CLOSING,
        "XenbusStateClosed" => io::xenbus::CLOSED,
        "XenbusStateReconfiguring" => io::xenbus::RECONFIGURING,
        "XenbusStateReconfigured" => io::xenbus::RECONFIGURED,
    );
    // The ELF notes of an x86 PV or PVH kernel; an Arm guest is an `Image`.
    only(&mut t, X86, |t| {
        consts!(
            t,
            "XEN_ELFNOTE_INFO" => elfnote::INFO,
            "XEN_ELFNOTE_ENTRY" => elfnote::ENTRY,
            "XEN_ELFNOTE_HYPERCALL_PAGE" => elfnote::HYPERCALL_PAGE,
            "XEN_ELFNOTE_VIRT_BASE" => elfnote::VIRT_BASE,
            "XEN_ELFNOTE_PADDR_OFFSET" => elfnote::PADDR_OFFSET,
            "XEN_ELFNOTE_XEN_VERSION" => elfnote::XEN_VERSION,
            "XEN_ELFNOTE_GUEST_OS" => elfnote::GUEST_OS,
            "XEN_ELFNOTE_GUEST_VERSION" => elfnote::GUEST_VERSION,
            "XEN_ELFNOTE_LOADER" => elfnote::LOADER,
            "XEN_ELFNOTE_PAE_MODE" => elfnote::PAE_MODE,
            "XEN_ELFNOTE_FEATURES" => elfnote::FEATURES,
            "XEN_ELFNOTE_BSD_SYMTAB" => elfnote::BSD_SYMTAB,
            "XEN_ELFNOTE_HV_START_LOW" => elfnote::HV_START_LOW,
            "XEN_ELFNOTE_L1_MFN_VALID" => elfnote::L1_MFN_VALID,
            "XEN_ELFNOTE_SUSPEND_CANCEL" => elfnote::SUSPEND_CANCEL,
            "XEN_ELFNOTE_INIT_P2M" => elfnote::INIT_P2M,
            "XEN_ELFNOTE_MOD_START_PFN" => elfnote::MOD_START_PFN,
            "XEN_ELFNOTE_SUPPORTED_FEATURES" => elfnote::SUPPORTED_FEATURES,
            "XEN_ELFNOTE_PHYS32_ENTRY" => elfnote::PHYS32_ENTRY,
        );
    });
    // x86_32's `wc_sec_hi` (see `struct shared_info` above); the Rust field exists only
    // there, so its host value is a stand-in.
    only(&mut t, &[X86_32], |t| {
        t.push(check(
            "offsetof(struct arch_shared_info, wc_sec_hi)",
            0u64,
            "offset_of!(ArchSharedInfo, wc_sec_hi)",
        ));
    });
    t
}

const HEADERS: &[&str] = &[
    "xen/xen.h",
    "xen/version.h",
    "xen/features.h",
    "xen/elfnote.h",
    "xen/event_channel.h",
    "xen/sched.h",
    "xen/vcpu.h",
    "xen/grant_table.h",
    "xen/memory.h",
    "xen/hvm/hvm_op.h",
    "xen/hvm/params.h",
    "xen/arch-x86/hvm/start_info.h",
    "xen/io/console.h",
    "xen/io/xs_wire.h",
    "xen/io/blkif.h",
    "xen/io/xenbus.h",
];

fn include_dir() -> PathBuf {
    match std::env::var_os("XEN_INCLUDE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "XEN_INCLUDE_DIR is not set: run `cargo xtask test` (which extracts the pinned \
             libxen-dev) or set XEN_INCLUDE_DIR to the folder that holds xen/xen.h"
        ),
    }
}

/// The Xen headers the checks read, after the C headers they need.
fn headers() -> String {
    let mut src = String::from(
        "#include <stdint.h>\n#include <stddef.h>\n#define __XEN_INTERFACE_VERSION__ 0x00040e00\n",
    );
    for h in HEADERS {
        src.push_str(&format!("#include <{h}>\n"));
    }
    src
}

/// The C compiler: `cargo xtask test` names the build environment's here.
fn c_compiler() -> String {
    std::env::var("XEN_ABI_CC")
        .or_else(|_| std::env::var("CC"))
        .unwrap_or_else(|_| "cc".into())
}

fn c_program(table: &[Check]) -> String {
    let mut src = String::from("#include <stdio.h>\n") + &headers();
    src.push_str("int main(void) {\n");
    for c in table {
        src.push_str(&format!(
            "  printf(\"%llu\\n\", (unsigned long long)({}));\n",
            c.c
        ));
    }
    src.push_str("  return 0;\n}\n");
    src
}

fn run_c(include: &Path, src: &str) -> Vec<u64> {
    let dir = std::env::temp_dir().join(format!("xen-abi-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temporary folder");
    let c_file = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&c_file, src).expect("write C program");
    let cc = c_compiler();
    // Static, so the program runs on the host whichever C library compiled it.
    let out = Command::new(&cc)
        .arg("-std=gnu11")
        .arg("-static")
        .arg("-I")
        .arg(include)
        .arg(&c_file)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "compiling the layout program against {} failed:\n{}",
        include.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run layout program");
    assert!(run.status.success(), "layout program failed");
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(run.stdout)
        .expect("layout program prints ASCII")
        .lines()
        .map(|l| l.parse().expect("layout program prints numbers"))
        .collect()
}

#[test]
fn layout_matches_xen_public_headers() {
    let include = include_dir();
    assert!(
        include.join("xen/xen.h").is_file(),
        "XEN_INCLUDE_DIR={} has no xen/xen.h",
        include.display()
    );
    let table = table_for(HOST);
    let c_values = run_c(&include, &c_program(&table));
    assert_eq!(
        c_values.len(),
        table.len(),
        "layout program printed a wrong number of lines"
    );
    let mismatches: Vec<String> = table
        .iter()
        .zip(&c_values)
        .filter(|(check, c)| check.rust != **c)
        .map(|(check, c)| format!("{}: C {} != Rust {}", check.c, c, check.rust))
        .collect();
    assert!(
        mismatches.is_empty(),
        "ABI mismatches:\n{}",
        mismatches.join("\n")
    );
}

/// An architecture whose layout is checked from assembly: the table's values for it become
/// `file`, constant assertions that every build of the crate for it compiles. The file must
/// be what the headers say (`XEN_ABI_BLESS=1` rewrites it).
struct Cross {
    arch: Arch,
    /// Its `target_arch`, as the file's header names it.
    name: &'static str,
    /// How the headers were compiled, for the file's header.
    compiled: &'static str,
    /// The generated file, under the crate.
    file: &'static str,
    /// The C compiler's flags for the architecture.
    flags: &'static [&'static str],
}

/// The 32-bit side: Xen's headers compiled for i386 (`-m32`, to assembly only, so no 32-bit
/// C library is needed), by the build environment's C compiler.
#[test]
fn layout_x86_32_matches_xen_public_headers() {
    let x86_32 = Cross {
        arch: X86_32,
        name: "x86_32",
        compiled: "with `-m32`",
        file: "src/layout_x86_32.rs",
        flags: &["-m32"],
    };
    check_cross_layout(&x86_32, &c_compiler());
}

/// The arm64 side: Xen's headers compiled by the build environment's pinned cross compiler
/// (freestanding, to assembly only: the build environment has no arm64 C library).
#[test]
fn layout_aarch64_matches_xen_public_headers() {
    let Ok(cc) = std::env::var("XEN_ABI_AARCH64_CC") else {
        panic!(
            "XEN_ABI_AARCH64_CC is not set: run `cargo xtask test` (which names the build \
             environment's aarch64-linux-gnu-gcc) or set XEN_ABI_AARCH64_CC to an arm64 C \
             compiler"
        );
    };
    let aarch64 = Cross {
        arch: Aarch64,
        name: "aarch64",
        compiled: "for arm64",
        file: "src/layout_aarch64.rs",
        flags: &[],
    };
    check_cross_layout(&aarch64, &cc);
}

/// The checks that hold on `arch`: the one place the table is cut per architecture.
fn table_for(arch: Arch) -> Vec<Check> {
    table()
        .into_iter()
        .filter(|c| c.archs.contains(&arch))
        .collect()
}

/// Compiles the table of `cross` with `cc`, renders its assertion file and compares it with
/// the recorded one (after writing it, under `XEN_ABI_BLESS`).
fn check_cross_layout(cross: &Cross, cc: &str) {
    let include = include_dir();
    let table = table_for(cross.arch);
    let values = compile_c_values(cc, cross.flags, &include, &table);
    let text = assertion_file(cross, &table, &values);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(cross.file);
    if std::env::var_os("XEN_ABI_BLESS").is_some() {
        std::fs::write(&path, &text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let recorded = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        recorded == text,
        "{} does not match Xen's headers compiled {}; rerun with XEN_ABI_BLESS=1 and build \
         an {} image to check the Rust side",
        path.display(),
        cross.compiled,
        cross.name
    );
}

/// The assertion file of `cross`: one constant assertion per check, its value from the C side.
fn assertion_file(cross: &Cross, table: &[Check], values: &[u64]) -> String {
    let mut text = format!(
        "//! The {name} layout of the ABI: generated by `tests/layout.rs` from Xen's public\n\
         //! headers compiled {compiled} (`XEN_ABI_BLESS=1 cargo xtask test` rewrites it).\n\
         //! Each line is checked when the crate is compiled for {name}.\n\n",
        name = cross.name,
        compiled = cross.compiled,
    );
    text.push_str(
        "// Every value is compared as a u64, whatever its type.\n\
         #![allow(unused_imports, clippy::unnecessary_cast)]\n\n\
         use core::mem::{offset_of, size_of};\n\n\
         use crate::event_channel::*;\nuse crate::grant_table::*;\nuse crate::hvm::*;\n\
         use crate::io::blkif::*;\nuse crate::io::console::XenconsInterface;\n\
         use crate::io::ring::{ring_size, SringHeader};\nuse crate::io::xenstore::*;\n\
         use crate::memory::*;\nuse crate::sched::*;\nuse crate::vcpu::*;\nuse crate::*;\n\n",
    );
    for (check, value) in table.iter().zip(values) {
        text.push_str(&format!(
            "// {}\nconst _: () = assert!({} as u64 == {value:#x});\n",
            check.c,
            check.rust_src.trim_end_matches(" as u64")
        ));
    }
    text
}

/// Each expression of the table as `cc` with `flags` sees it, compiled to assembly only (no
/// C library or linker for the architecture is needed): the values come out of the
/// assembly as `.ascii "@@ HIGH LOW"` lines, two 32-bit halves, which every architecture's
/// immediates can hold.
fn compile_c_values(cc: &str, flags: &[&str], include: &Path, table: &[Check]) -> Vec<u64> {
    let mut src = headers();
    src.push_str("void layout(void) {\n");
    for c in table {
        src.push_str(&format!(
            "  __asm__ volatile(\".ascii \\\"@@ %c0 %c1\\\"\" :: \"i\"((uint32_t)((uint64_t)({0}) >> 32)), \"i\"((uint32_t)(uint64_t)({0})));\n",
            c.c
        ));
    }
    src.push_str("}\n");
    // One folder per compilation: the tests run side by side.
    static COMPILATIONS: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "xen-abi-layout-asm-{}-{}",
        std::process::id(),
        COMPILATIONS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temporary folder");
    let c_file = dir.join("layout.c");
    std::fs::write(&c_file, &src).expect("write C file");
    let out = Command::new(cc)
        .args(flags)
        .args(["-std=gnu11", "-ffreestanding", "-S", "-o", "-", "-I"])
        .arg(include)
        .arg(&c_file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "compiling the layout expressions with `{cc} {}` against {} failed:\n{}",
        flags.join(" "),
        include.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let asm = String::from_utf8_lossy(&out.stdout);
    let values: Vec<u64> = asm
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".ascii \"@@ "))
        .map(|rest| {
            let mut halves = rest.trim_end_matches('"').split(' ').map(|h| {
                // GCC may print a 32-bit constant signed.
                h.parse::<i64>().expect("the assembly holds numbers") as u64 & 0xffff_ffff
            });
            let (high, low) = (halves.next().unwrap_or(0), halves.next().unwrap_or(0));
            high << 32 | low
        })
        .collect();
    assert_eq!(values.len(), table.len(), "the assembly lacks some values");
    values
}
