//! Plain, line-based messages for humans and CI logs.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A step that is starting or done, e.g. `build rust-stubdom x86_64-pv`.
pub fn step(msg: &str) {
    if !quiet() {
        eprintln!("  {msg}");
    }
}

pub fn warn(msg: &str) {
    eprintln!("warning: {msg}");
}
