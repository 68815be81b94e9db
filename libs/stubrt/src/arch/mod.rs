//! Architecture-specific code. Each architecture module defines the same names: `hypercall`,
//! `rdtsc`, `halt_forever`, `virt_to_frame` (the frame other domains use for a page),
//! `map_grant_frames` (where the grant table's frames go), the boot entry points and their
//! memory setup (which end in `platform::start`). Nothing above `arch/` is per-architecture.

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
mod x86;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;
#[cfg(target_arch = "x86")]
mod x86_32;
#[cfg(target_arch = "x86")]
pub use self::x86_32::*;
