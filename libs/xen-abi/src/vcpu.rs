//! vCPU operations (`xen/vcpu.h`), used with `HYPERVISOR_vcpu_op`: only what the runtime
//! needs, the runstate area (on Arm the one way to learn Xen's system time).

pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;

/// `RUNSTATE_*`: what a vCPU is doing.
pub mod runstate {
    pub const RUNNING: i32 = 0;
    pub const RUNNABLE: i32 = 1;
    pub const BLOCKED: i32 = 2;
    pub const OFFLINE: i32 = 3;
}

/// `struct vcpu_runstate_info`: Xen rewrites it at every change of the vCPU's state;
/// `state_entry_time` is Xen's system time then.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VcpuRunstateInfo {
    pub state: i32,
    pub state_entry_time: u64,
    pub time: [u64; 4],
}

/// `struct vcpu_register_runstate_memory_area`: the area's (virtual) address, as the C
/// union's 64-bit member (`addr.p`), which makes it 8 bytes on every architecture.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct VcpuRegisterRunstateMemoryArea {
    pub addr: u64,
}
