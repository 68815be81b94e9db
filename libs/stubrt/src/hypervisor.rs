//! Typed hypercalls. Each wrapper takes references to correctly typed ABI structures, so the
//! unsafety of passing raw pointers to Xen stays in this file.

use core::fmt;

use xen_abi::event_channel as ev;
use xen_abi::{hypercall, sched};

use crate::arch;

/// A failed hypercall: Xen's negative errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XenError(pub i32);

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            xen_abi::errno::EPERM => "EPERM",
            xen_abi::errno::ENOENT => "ENOENT",
            xen_abi::errno::EINVAL => "EINVAL",
            xen_abi::errno::ENOMEM => "ENOMEM",
            xen_abi::errno::ENOSYS => "ENOSYS",
            xen_abi::errno::EFAULT => "EFAULT",
            xen_abi::errno::EBUSY => "EBUSY",
            xen_abi::errno::EACCES => "EACCES",
            _ => "",
        };
        write!(
            f,
            "xen error {}{}{}",
            self.0,
            if name.is_empty() { "" } else { " " },
            name
        )
    }
}

pub(crate) fn check(rc: isize) -> Result<isize, XenError> {
    if rc < 0 {
        Err(XenError(i32::try_from(-rc).unwrap_or(i32::MAX)))
    } else {
        Ok(rc)
    }
}

/// Issues a hypercall whose single in/out argument is `*arg`.
///
/// # Safety
///
/// `cmd` must be an operation of hypercall `nr` whose argument has type `T`, and the
/// operation must not change memory the program uses.
unsafe fn op<T>(nr: usize, cmd: u32, arg: &mut T) -> Result<isize, XenError> {
    // SAFETY: the caller vouches that `T` is the argument type of `cmd`; `arg` is a live,
    // exclusive reference for the duration of the call.
    check(unsafe { arch::hypercall(nr, cmd as usize, arg as *mut T as usize, 0, 0, 0) })
}

/// Writes to the hypervisor's console (only allowed for dom0 on release builds of Xen).
pub fn console_io_write(bytes: &[u8]) -> Result<(), XenError> {
    // SAFETY: Xen only reads `bytes.len()` bytes from `bytes`.
    check(unsafe {
        arch::hypercall(
            hypercall::CONSOLE_IO,
            xen_abi::console_io::WRITE as usize,
            bytes.len(),
            bytes.as_ptr() as usize,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// Shuts the domain down with a `SHUTDOWN_*` reason; returns only on failure.
pub fn shutdown(reason: u32) -> XenError {
    let mut arg = sched::SchedShutdown { reason };
    // SAFETY: SCHEDOP_shutdown takes a `sched_shutdown`.
    match unsafe { op(hypercall::SCHED_OP, sched::SCHEDOP_SHUTDOWN, &mut arg) } {
        Ok(_) => XenError(0),
        Err(e) => e,
    }
}

/// Gives up the CPU.
pub fn yield_now() {
    // SAFETY: SCHEDOP_yield takes no argument.
    let _ = unsafe {
        arch::hypercall(
            hypercall::SCHED_OP,
            sched::SCHEDOP_YIELD as usize,
            0,
            0,
            0,
            0,
        )
    };
}

/// Blocks until one of `ports` is pending or system time reaches `deadline_ns` (0: never).
pub fn poll(ports: &mut [u32], deadline_ns: u64) -> Result<(), XenError> {
    let mut arg = sched::SchedPoll {
        ports: xen_abi::GuestHandle {
            p: ports.as_mut_ptr(),
        },
        nr_ports: u32::try_from(ports.len()).map_err(|_| XenError(xen_abi::errno::EINVAL))?,
        timeout: deadline_ns,
    };
    // SAFETY: SCHEDOP_poll takes a `sched_poll`; Xen only reads the `ports` array.
    unsafe { op(hypercall::SCHED_OP, sched::SCHEDOP_POLL, &mut arg) }.map(|_| ())
}

/// Event channel operations.
pub fn evtchn_alloc_unbound(remote_dom: u16) -> Result<u32, XenError> {
    let mut arg = ev::EvtchnAllocUnbound {
        dom: xen_abi::DOMID_SELF,
        remote_dom,
        port: 0,
    };
    // SAFETY: EVTCHNOP_alloc_unbound takes an `evtchn_alloc_unbound`.
    unsafe {
        op(
            hypercall::EVENT_CHANNEL_OP,
            ev::EVTCHNOP_ALLOC_UNBOUND,
            &mut arg,
        )
    }?;
    Ok(arg.port)
}

pub fn evtchn_bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, XenError> {
    let mut arg = ev::EvtchnBindInterdomain {
        remote_dom,
        remote_port,
        local_port: 0,
    };
    // SAFETY: EVTCHNOP_bind_interdomain takes an `evtchn_bind_interdomain`.
    unsafe {
        op(
            hypercall::EVENT_CHANNEL_OP,
            ev::EVTCHNOP_BIND_INTERDOMAIN,
            &mut arg,
        )
    }?;
    Ok(arg.local_port)
}

pub fn evtchn_bind_virq(virq: u32) -> Result<u32, XenError> {
    let mut arg = ev::EvtchnBindVirq {
        virq,
        vcpu: 0,
        port: 0,
    };
    // SAFETY: EVTCHNOP_bind_virq takes an `evtchn_bind_virq`.
    unsafe {
        op(
            hypercall::EVENT_CHANNEL_OP,
            ev::EVTCHNOP_BIND_VIRQ,
            &mut arg,
        )
    }?;
    Ok(arg.port)
}

pub fn evtchn_send(port: u32) -> Result<(), XenError> {
    let mut arg = ev::EvtchnSend { port };
    // SAFETY: EVTCHNOP_send takes an `evtchn_send`.
    unsafe { op(hypercall::EVENT_CHANNEL_OP, ev::EVTCHNOP_SEND, &mut arg) }.map(|_| ())
}

pub fn evtchn_close(port: u32) -> Result<(), XenError> {
    let mut arg = ev::EvtchnClose { port };
    // SAFETY: EVTCHNOP_close takes an `evtchn_close`.
    unsafe { op(hypercall::EVENT_CHANNEL_OP, ev::EVTCHNOP_CLOSE, &mut arg) }.map(|_| ())
}

pub fn evtchn_unmask(port: u32) -> Result<(), XenError> {
    let mut arg = ev::EvtchnUnmask { port };
    // SAFETY: EVTCHNOP_unmask takes an `evtchn_unmask`.
    unsafe { op(hypercall::EVENT_CHANNEL_OP, ev::EVTCHNOP_UNMASK, &mut arg) }.map(|_| ())
}

/// Reads an HVM parameter of this domain (PVH).
pub fn hvm_get_param(index: u32) -> Result<u64, XenError> {
    let mut arg = xen_abi::hvm::XenHvmParam {
        domid: xen_abi::DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    // SAFETY: HVMOP_get_param takes an `xen_hvm_param`.
    unsafe { op(hypercall::HVM_OP, xen_abi::hvm::HVMOP_GET_PARAM, &mut arg) }?;
    Ok(arg.value)
}

/// Maps a Xen-owned page (shared info, grant frame) at guest frame `gpfn` (PVH).
///
/// # Safety
///
/// The page at `gpfn` is replaced: nothing may use its old contents any more.
pub unsafe fn add_to_physmap(
    space: u32,
    idx: xen_abi::XenUlong,
    gpfn: xen_abi::XenPfn,
) -> Result<(), XenError> {
    let mut arg = xen_abi::memory::XenAddToPhysmap {
        domid: xen_abi::DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    // SAFETY: XENMEM_add_to_physmap takes an `xen_add_to_physmap`; the caller gives up `gpfn`.
    unsafe {
        op(
            hypercall::MEMORY_OP,
            xen_abi::memory::XENMEM_ADD_TO_PHYSMAP,
            &mut arg,
        )
    }
    .map(|_| ())
}

/// Has Xen write this vCPU's runstate (`VcpuRunstateInfo`) to `area` at every change of
/// state, from now on.
///
/// # Safety
///
/// `area` must stay mapped, writable and otherwise unused for the rest of the program.
pub unsafe fn register_runstate_area(
    area: *mut xen_abi::vcpu::VcpuRunstateInfo,
) -> Result<(), XenError> {
    let mut arg = xen_abi::vcpu::VcpuRegisterRunstateMemoryArea { addr: area as u64 };
    // SAFETY: VCPUOP_register_runstate_memory_area takes the vCPU number and a
    // `vcpu_register_runstate_memory_area`; the caller hands `area` over to Xen.
    check(unsafe {
        arch::hypercall(
            hypercall::VCPU_OP,
            xen_abi::vcpu::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA as usize,
            0,
            &mut arg as *mut _ as usize,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// `GNTTABOP_query_size` and `GNTTABOP_setup_table` for this domain.
pub fn gnttab_setup(frames: &mut [xen_abi::XenPfn]) -> Result<(), XenError> {
    use xen_abi::grant_table as gt;
    let mut arg = gt::GnttabSetupTable {
        dom: xen_abi::DOMID_SELF,
        nr_frames: u32::try_from(frames.len()).map_err(|_| XenError(xen_abi::errno::EINVAL))?,
        status: 0,
        frame_list: xen_abi::GuestHandle {
            p: frames.as_mut_ptr(),
        },
    };
    // SAFETY: GNTTABOP_setup_table takes `count` (1) `gnttab_setup_table`s; Xen writes
    // `nr_frames` frame numbers into `frames`, which has exactly that many.
    let rc = unsafe {
        arch::hypercall(
            hypercall::GRANT_TABLE_OP,
            gt::GNTTABOP_SETUP_TABLE as usize,
            &mut arg as *mut gt::GnttabSetupTable as usize,
            1,
            0,
            0,
        )
    };
    check(rc)?;
    if arg.status != gt::GNTST_OKAY {
        return Err(XenError(i32::from(arg.status)));
    }
    Ok(())
}

/// Number of pages of this domain and its maximum (`XENMEM_current_reservation`).
pub fn current_reservation() -> Result<u64, XenError> {
    let mut dom = xen_abi::DOMID_SELF;
    // SAFETY: XENMEM_current_reservation takes a `domid_t`.
    unsafe {
        op(
            hypercall::MEMORY_OP,
            xen_abi::memory::XENMEM_CURRENT_RESERVATION,
            &mut dom,
        )
    }
    .map(|n| n as u64)
}

/// Reads this domain's E820 memory map (`XENMEM_memory_map`) into `entries`; returns how
/// many were written.
pub fn memory_map(entries: &mut [xen_abi::memory::E820Entry]) -> Result<usize, XenError> {
    let mut arg = xen_abi::memory::XenMemoryMap {
        nr_entries: u32::try_from(entries.len()).map_err(|_| XenError(xen_abi::errno::EINVAL))?,
        buffer: xen_abi::GuestHandle {
            p: entries.as_mut_ptr(),
        },
    };
    // SAFETY: XENMEM_memory_map takes an `xen_memory_map`; Xen writes at most `nr_entries`
    // entries into `entries`, which has that many.
    unsafe {
        op(
            hypercall::MEMORY_OP,
            xen_abi::memory::XENMEM_MEMORY_MAP,
            &mut arg,
        )
    }?;
    Ok((arg.nr_entries as usize).min(entries.len()))
}
