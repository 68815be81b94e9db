//! Xenbus: the state handshake between a front end (us) and a back end, through the `state`
//! nodes of both in xenstore. [`connect_step`] is the front end's side of the handshake as a
//! pure function; drivers run it each time the back end's state may have changed.

use alloc::format;
use alloc::string::String;

use crate::xenstore::{self, Error, RingError};

pub use xen_abi::io::xenbus::{
    CLOSED, CLOSING, CONNECTED, INITIALISED, INITIALISING, INIT_WAIT, RECONFIGURED, RECONFIGURING,
    UNKNOWN,
};

/// What a front end does next while connecting, given both ends' states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectStep {
    /// The back end waits for us: publish the ring references and event channel, then
    /// switch to Initialised.
    Publish,
    /// The back end is connected: read what it offers (size, features), then switch to
    /// Connected.
    Connect,
    /// Both ends are connected.
    Done,
    /// Nothing to do until the back end's state changes.
    Wait,
    /// The back end is going away or in a state a front end cannot connect from.
    Fail,
}

/// The front end's connection handshake: `front` is the state we published last, `back` the
/// back end's. The back end announces readiness with InitWait, which Linux back ends reach
/// before the guest starts; it connects once we are Initialised.
pub fn connect_step(front: u32, back: u32) -> ConnectStep {
    use ConnectStep::*;
    match (front, back) {
        (_, CLOSING | CLOSED) => Fail,
        (INITIALISING, UNKNOWN | INITIALISING) => Wait,
        // A back end still Connected from an earlier front end (e.g. after a restart) gets
        // our details too, as Linux front ends do.
        (INITIALISING, INIT_WAIT | INITIALISED | CONNECTED) => Publish,
        (INITIALISED, UNKNOWN | INITIALISING | INIT_WAIT | INITIALISED) => Wait,
        (INITIALISED, CONNECTED) => Connect,
        (CONNECTED, CONNECTED) => Done,
        _ => Fail,
    }
}

/// Whether a back end in state `back` has let go of a front end that switched to Closing.
pub fn let_go(back: u32) -> bool {
    matches!(back, CLOSING | CLOSED | UNKNOWN)
}

/// A readable name for a state, for messages.
pub fn state_name(state: u32) -> &'static str {
    match state {
        UNKNOWN => "Unknown",
        INITIALISING => "Initialising",
        INIT_WAIT => "InitWait",
        INITIALISED => "Initialised",
        CONNECTED => "Connected",
        CLOSING => "Closing",
        CLOSED => "Closed",
        RECONFIGURING => "Reconfiguring",
        RECONFIGURED => "Reconfigured",
        _ => "invalid",
    }
}

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

/// A watch on `<dir>/state`, removed on drop.
pub struct StateWatch {
    path: String,
    token: String,
}

impl StateWatch {
    pub fn new(dir: &str) -> Result<StateWatch, Error> {
        let path = format!("{dir}/state");
        // One token per path keeps concurrent watches (several disks) apart.
        let token = format!("stubrt:{path}");
        xenstore::watch(&path, &token)?;
        Ok(StateWatch { path, token })
    }

    /// Waits for the next watch event (any: the caller reads the state again), at most until
    /// system time `deadline_ns`.
    pub fn wait(&self, deadline_ns: u64) -> Result<(), Error> {
        let now = crate::time::system_time_ns();
        if now >= deadline_ns {
            return Err(Error::Transport(RingError::TimedOut));
        }
        xenstore::next_event_within(deadline_ns - now).map(|_| ())
    }
}

impl Drop for StateWatch {
    fn drop(&mut self) {
        let _ = xenstore::unwatch(&self.path, &self.token);
    }
}

/// Waits until `<dir>/state` satisfies `done`, or `timeout_ns` passes; returns the state.
pub fn wait_state(dir: &str, timeout_ns: u64, done: impl Fn(u32) -> bool) -> Result<u32, Error> {
    let watch = StateWatch::new(dir)?;
    let deadline = crate::time::system_time_ns().saturating_add(timeout_ns);
    loop {
        let s = state(dir)?;
        if done(s) {
            return Ok(s);
        }
        watch.wait(deadline)?;
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectStep::*;
    use super::*;

    #[test]
    fn connect_handshake() {
        // (ours, theirs, next step)
        for (front, back, want) in [
            // The back end is not there yet, or still setting up.
            (INITIALISING, UNKNOWN, Wait),
            (INITIALISING, INITIALISING, Wait),
            // It waits for our ring: publish it.
            (INITIALISING, INIT_WAIT, Publish),
            (INITIALISING, INITIALISED, Publish),
            // Published: wait for it to connect, then read its properties.
            (INITIALISED, INIT_WAIT, Wait),
            (INITIALISED, INITIALISED, Wait),
            (INITIALISED, CONNECTED, Connect),
            (CONNECTED, CONNECTED, Done),
            // Still connected to an earlier front end: publish, it reconnects.
            (INITIALISING, CONNECTED, Publish),
            // Going away at any point ends the attempt.
            (INITIALISING, CLOSING, Fail),
            (INITIALISED, CLOSED, Fail),
            (CONNECTED, CLOSING, Fail),
            // Falling back after we connected, reconfiguration, nonsense.
            (CONNECTED, INIT_WAIT, Fail),
            (INITIALISED, RECONFIGURING, Fail),
            (INITIALISING, 99, Fail),
            (UNKNOWN, INIT_WAIT, Fail),
        ] {
            assert_eq!(
                connect_step(front, back),
                want,
                "front {}, back {}",
                state_name(front),
                state_name(back)
            );
        }
    }

    #[test]
    fn a_closing_front_end_is_let_go() {
        for (back, want) in [
            (CONNECTED, false),
            (INIT_WAIT, false),
            (CLOSING, true),
            (CLOSED, true),
            (UNKNOWN, true),
        ] {
            assert_eq!(let_go(back), want, "back {}", state_name(back));
        }
    }

    #[test]
    fn a_driver_following_the_steps_connects() {
        // A scripted back end (the sequence a Linux blkback goes through) and a front end that
        // applies each step, as `blkfront::Disk::open` does.
        let backend = [INITIALISING, INIT_WAIT, INIT_WAIT, CONNECTED, CONNECTED];
        let mut front = INITIALISING;
        let mut seen = Vec::new();
        for &back in &backend {
            loop {
                let step = connect_step(front, back);
                seen.push(step);
                match step {
                    Publish => front = INITIALISED,
                    Connect => front = CONNECTED,
                    Wait | Done | Fail => break,
                }
            }
        }
        assert_eq!(front, CONNECTED);
        assert_eq!(
            seen,
            [Wait, Publish, Wait, Wait, Connect, Done, Done],
            "steps taken"
        );
    }
}
