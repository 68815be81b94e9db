//! Event channel operations (`xen/event_channel.h`), used with `HYPERVISOR_event_channel_op`.

use crate::{DomId, EvtchnPort};

pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
pub const EVTCHNOP_CLOSE: u32 = 3;
pub const EVTCHNOP_SEND: u32 = 4;
pub const EVTCHNOP_STATUS: u32 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
pub const EVTCHNOP_UNMASK: u32 = 9;

/// Virtual interrupts (`VIRQ_*`).
pub mod virq {
    pub const TIMER: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const CONSOLE: u32 = 2;
    pub const DOM_EXC: u32 = 3;
}

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnAllocUnbound {
    pub dom: DomId,
    pub remote_dom: DomId,
    /// Output.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: DomId,
    pub remote_port: EvtchnPort,
    /// Output.
    pub local_port: EvtchnPort,
}

/// `struct evtchn_bind_virq`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnBindVirq {
    pub virq: u32,
    pub vcpu: u32,
    /// Output.
    pub port: EvtchnPort,
}

/// `struct evtchn_close`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnClose {
    pub port: EvtchnPort,
}

/// `struct evtchn_send`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnSend {
    pub port: EvtchnPort,
}

/// `struct evtchn_unmask`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnUnmask {
    pub port: EvtchnPort,
}
