//! Scheduler operations (`xen/sched.h`), used with `HYPERVISOR_sched_op`.

use crate::{EvtchnPort, GuestHandle};

pub const SCHEDOP_YIELD: u32 = 0;
pub const SCHEDOP_BLOCK: u32 = 1;
pub const SCHEDOP_SHUTDOWN: u32 = 2;
pub const SCHEDOP_POLL: u32 = 3;

/// Shutdown reasons (`SHUTDOWN_*`).
pub mod shutdown {
    pub const POWEROFF: u32 = 0;
    pub const REBOOT: u32 = 1;
    pub const SUSPEND: u32 = 2;
    pub const CRASH: u32 = 3;
    pub const WATCHDOG: u32 = 4;
}

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedShutdown {
    pub reason: u32,
}

/// `struct sched_poll`: block until one of `ports` is pending or system time reaches
/// `timeout` (absolute, nanoseconds; 0 means no timeout).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SchedPoll {
    pub ports: GuestHandle<EvtchnPort>,
    pub nr_ports: u32,
    pub timeout: u64,
}
