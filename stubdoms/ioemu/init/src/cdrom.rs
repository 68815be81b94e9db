//! CD-ROM changes: keep `/dev/xvdc` in a QEMU fdset whose opaque string is
//! `stub-devid:<devid>`.
//!
//! To change the medium, a newer libxl ejects it over QMP, detaches the stub domain's PV
//! disk, attaches the new one and finds the fdset by its opaque string to hand QEMU
//! `/dev/fdset/<id>`. The stub domain's part: whenever an `xvdc` with a live backend
//! exists, one fdset holds it; when its backend starts closing (or it disappears), the
//! fdset is removed so the descriptor no longer keeps the old disk busy.
//!
//! The decision is [`Tracker::step`], a pure function of what the init observes; the
//! observation reads xenstore ([`backend_closing`]) and sysfs (which devid is `xvdc`).

use xenstore_proto::{Client, Transport};

/// The opaque string libxl looks for.
pub fn opaque(devid: u32) -> String {
    format!("stub-devid:{devid}")
}

/// What the init sees of `/dev/xvdc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// No `xvdc`.
    Absent,
    /// `xvdc` is the PV disk `devid`; `closing` when its backend is going away.
    Present {
        /// The disk's device id (`device/vbd/<devid>`).
        devid: u32,
        /// Whether the backend state is Closing or Closed, or unreadable.
        closing: bool,
    },
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open `/dev/xvdc` read-only and `add-fd` it with [`opaque`]`(devid)`.
    Add {
        /// The disk's device id.
        devid: u32,
    },
    /// `remove-fd` the fdset.
    Remove {
        /// The fdset QEMU assigned.
        fdset_id: i64,
    },
}

/// The fdset currently holding `xvdc`, if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tracker {
    current: Option<(u32, i64)>,
}

impl Tracker {
    /// The action that brings QEMU's fdsets in line with `seen`, if any. Call again after
    /// reporting the outcome: a change of disk takes a removal, then an addition.
    pub fn step(&self, seen: Seen) -> Option<Action> {
        match (self.current, seen) {
            (Some((_, fdset_id)), Seen::Absent) => Some(Action::Remove { fdset_id }),
            (Some((have, fdset_id)), Seen::Present { devid, closing }) => {
                (closing || have != devid).then_some(Action::Remove { fdset_id })
            }
            (
                None,
                Seen::Present {
                    devid,
                    closing: false,
                },
            ) => Some(Action::Add { devid }),
            (None, _) => None,
        }
    }

    /// Records a successful `add-fd`.
    pub fn added(&mut self, devid: u32, fdset_id: i64) {
        self.current = Some((devid, fdset_id));
    }

    /// Records a `remove-fd` (also when it failed: the fdset is not ours to retry).
    pub fn removed(&mut self) {
        self.current = None;
    }

    /// The registered disk and fdset.
    pub fn current(&self) -> Option<(u32, i64)> {
        self.current
    }
}

/// Whether the backend of our PV disk `devid` is closing (XenbusState Closing = 5 or
/// Closed = 6) or cannot be read, which means the same to us.
pub fn backend_closing<T: Transport>(xs: &mut Client<T>, devid: u32) -> bool {
    let Ok(backend) = xs.read_string(&format!("device/vbd/{devid}/backend")) else {
        return true;
    };
    match xs.read_string(&format!("{backend}/state")) {
        Ok(state) => !matches!(state.trim(), "1" | "2" | "3" | "4"),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{libxl_store, STUB};
    use xenstore_proto::{Access, Perm};

    #[test]
    fn table() {
        let present = |devid, closing| Seen::Present { devid, closing };
        type Case = (Option<(u32, i64)>, Seen, Option<Action>);
        let cases: &[Case] = &[
            (None, Seen::Absent, None),
            (
                None,
                present(5632, false),
                Some(Action::Add { devid: 5632 }),
            ),
            (None, present(5632, true), None),
            (Some((5632, 2)), present(5632, false), None),
            (
                Some((5632, 2)),
                present(5632, true),
                Some(Action::Remove { fdset_id: 2 }),
            ),
            (
                Some((5632, 2)),
                Seen::Absent,
                Some(Action::Remove { fdset_id: 2 }),
            ),
            (
                Some((5632, 2)),
                present(2080, false),
                Some(Action::Remove { fdset_id: 2 }),
            ),
        ];
        for (current, seen, want) in cases {
            let tracker = Tracker { current: *current };
            assert_eq!(tracker.step(*seen), *want, "{current:?} {seen:?}");
        }
    }

    #[test]
    fn disk_change_is_remove_then_add() {
        let mut t = Tracker::default();
        let seen = Seen::Present {
            devid: 5632,
            closing: false,
        };
        assert_eq!(t.step(seen), Some(Action::Add { devid: 5632 }));
        t.added(5632, 2);
        // libxl detaches: the backend closes.
        assert_eq!(
            t.step(Seen::Present {
                devid: 5632,
                closing: true
            }),
            Some(Action::Remove { fdset_id: 2 })
        );
        t.removed();
        assert_eq!(t.step(Seen::Absent), None);
        // The new medium is attached with the same devid.
        assert_eq!(t.step(seen), Some(Action::Add { devid: 5632 }));
        t.added(5632, 3);
        assert_eq!(t.current(), Some((5632, 3)));
        assert_eq!(opaque(5632), "stub-devid:5632");
    }

    #[test]
    fn backend_state_from_xenstore() {
        let xs = libxl_store(&["-xen-domid", "2"]);
        let front = format!("/local/domain/{STUB}/device/vbd/5632");
        let back = format!("/local/domain/0/backend/vbd/{STUB}/5632");
        xs.write(&format!("{front}/backend"), &back).unwrap();
        xs.write(&format!("{back}/state"), "4").unwrap();
        xs.set_perms(
            &back,
            &[Perm::new(0, Access::None), Perm::new(STUB, Access::Read)],
        )
        .unwrap();
        xs.set_perms(
            &format!("{back}/state"),
            &[Perm::new(0, Access::None), Perm::new(STUB, Access::Read)],
        )
        .unwrap();
        let mut client = Client::new(xs.connect(STUB));
        assert!(!backend_closing(&mut client, 5632));
        for (state, closing) in [
            ("1", false),
            ("3", false),
            ("5", true),
            ("6", true),
            ("junk", true),
        ] {
            xs.write(&format!("{back}/state"), state).unwrap();
            assert_eq!(backend_closing(&mut client, 5632), closing, "{state}");
        }
        assert!(backend_closing(&mut client, 768), "unknown disk");
        xs.rm(&back).unwrap();
        assert!(backend_closing(&mut client, 5632), "backend gone");
    }
}
