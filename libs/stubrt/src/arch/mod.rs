//! Architecture-specific code. Each architecture module defines the same names: `hypercall`,
//! `rdtsc`, `halt_forever`, the boot entry points and its memory setup.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;
