//! Global state of a single-vCPU, interrupt-free runtime.

use core::cell::{RefCell, RefMut};

/// A global cell. The runtime runs on one vCPU with event upcalls masked and no interrupt
/// handlers, so there is never concurrent access; `RefCell` still catches re-entrant use.
pub struct Global<T>(RefCell<T>);

// SAFETY: there is exactly one thread of execution (one vCPU, no interrupt or upcall
// handlers), so the value is never accessed from two contexts at once.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(value: T) -> Self {
        Global(RefCell::new(value))
    }

    /// Borrows the value; `None` if it is already borrowed (re-entrant use).
    pub fn try_lock(&self) -> Option<RefMut<'_, T>> {
        self.0.try_borrow_mut().ok()
    }
}
