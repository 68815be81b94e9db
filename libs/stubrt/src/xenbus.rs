//! Xenbus: the state handshake between a front end (us) and a back end, through the `state`
//! nodes of both in xenstore.

use alloc::format;

use crate::xenstore::{self, Error, RingError};

pub use xen_abi::io::xenbus::{
    CLOSED, CLOSING, CONNECTED, INITIALISED, INITIALISING, INIT_WAIT, UNKNOWN,
};

/// Reads `<dir>/state`; a missing node reads as `UNKNOWN`.
pub fn state(dir: &str) -> Result<u32, Error> {
    match xenstore::read(&format!("{dir}/state")) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| Error::Transport(RingError::BadValue)),
        Err(e) if e.is_not_found() => Ok(UNKNOWN),
        Err(e) => Err(e),
    }
}

/// Writes our (front-end) `<dir>/state`.
pub fn switch_state(dir: &str, state: u32) -> Result<(), Error> {
    xenstore::write(&format!("{dir}/state"), &format!("{state}"))
}

/// Waits until `<dir>/state` satisfies `done`, or `timeout_ns` passes; returns the state.
pub fn wait_state(dir: &str, timeout_ns: u64, done: impl Fn(u32) -> bool) -> Result<u32, Error> {
    let path = format!("{dir}/state");
    let token = "stubrt-xenbus";
    xenstore::watch(&path, token)?;
    let deadline = crate::time::system_time_ns().saturating_add(timeout_ns);
    let result = loop {
        let s = state(dir)?;
        if done(s) {
            break Ok(s);
        }
        if crate::time::system_time_ns() >= deadline {
            break Err(Error::Transport(RingError::TimedOut));
        }
        // Any event (ours or not) is a reason to look again; the read above decides.
        if let Err(e) = xenstore::next_event() {
            break Err(e);
        }
    };
    let _ = xenstore::unwatch(&path, token);
    result
}
