//! CD-ROM changes: keep `/dev/xvdc` in a QEMU fdset whose opaque string is
//! `stub-devid:<devid>`.
//!
//! To change the medium, a newer libxl (4.20) ejects it over QMP, removes the fdset it
//! finds by that opaque string, detaches the stub domain's PV disk, attaches the new one
//! and waits until an fdset with the opaque string appears again, then hands QEMU
//! `/dev/fdset/<id>`. The stub domain's part: whenever an `xvdc` with a live backend
//! exists, one fdset holds it; when its backend starts closing (or it disappears), the
//! fdset is removed so the descriptor no longer keeps the old disk busy. `xl cd-eject`
//! attaches an empty PV disk, which never becomes a block device, and libxl waits for
//! the fdset all the same: for an empty drive the fdset holds `/dev/null`, which nothing
//! opens (libxl gives QEMU no medium then).
//!
//! The decision is [`Tracker::step`], a pure function of what the init observes; the
//! observation reads xenstore ([`backend_closing`], [`empty_drive`]) and sysfs (which
//! devid is `xvdc`).

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
    /// No `xvdc`, but the CD-ROM drive's PV disk `devid` exists without a medium.
    Empty {
        /// The drive's device id.
        devid: u32,
    },
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open `/dev/xvdc` (or, for an empty drive, `/dev/null`) read-only and `add-fd` it
    /// with [`opaque`]`(devid)`.
    Add {
        /// The disk's device id.
        devid: u32,
        /// Whether the drive has a medium (`xvdc`).
        medium: bool,
    },
    /// `remove-fd` the fdset.
    Remove {
        /// The fdset QEMU assigned.
        fdset_id: i64,
    },
}

/// The fdset currently registered for the drive, if any: devid, fdset, whether it holds
/// a medium.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tracker {
    current: Option<(u32, i64, bool)>,
    last_seen: Option<Seen>,
}

impl Tracker {
    /// The action that brings QEMU's fdsets in line with `seen`, if any. Call again after
    /// reporting the outcome: a change of disk takes a removal, then an addition.
    pub fn step(&self, seen: Seen) -> Option<Action> {
        match (self.current, seen) {
            (Some((_, fdset_id, _)), Seen::Absent) => Some(Action::Remove { fdset_id }),
            (Some((have, fdset_id, medium)), Seen::Present { devid, closing }) => {
                (closing || have != devid || !medium).then_some(Action::Remove { fdset_id })
            }
            (Some((have, fdset_id, medium)), Seen::Empty { devid }) => {
                (have != devid || medium).then_some(Action::Remove { fdset_id })
            }
            (
                None,
                Seen::Present {
                    devid,
                    closing: false,
                },
            ) => Some(Action::Add {
                devid,
                medium: true,
            }),
            (None, Seen::Empty { devid }) => Some(Action::Add {
                devid,
                medium: false,
            }),
            (None, _) => None,
        }
    }

    /// Records an observation; true if it differs from the one before (worth a log line).
    pub fn observe(&mut self, seen: Seen) -> bool {
        self.last_seen.replace(seen) != Some(seen)
    }

    /// Records a successful `add-fd`.
    pub fn added(&mut self, devid: u32, fdset_id: i64, medium: bool) {
        self.current = Some((devid, fdset_id, medium));
    }

    /// Records a `remove-fd` (also when it failed: the fdset is not ours to retry).
    pub fn removed(&mut self) {
        self.current = None;
    }

    /// The registered disk, its fdset, and whether it holds a medium.
    pub fn current(&self) -> Option<(u32, i64, bool)> {
        self.current
    }
}

/// The CD-ROM drive whose PV disk has no medium (`xl cd-eject`): a `device-type` cdrom
/// vbd, not closing, whose backend names no file. libxl attaches a medium through a `vbd`
/// (blkback) backend, and an empty drive through dom0's QEMU (`qdisk`), which never
/// connects: the frontend's state is what says the drive is live.
pub fn empty_drive<T: Transport>(xs: &mut Client<T>) -> Option<u32> {
    let devids = xs.directory("device/vbd").ok()?;
    devids.iter().find_map(|d| {
        let devid: u32 = d.parse().ok()?;
        let front = |key: &str| format!("device/vbd/{d}/{key}");
        let kind = xs.read_string(&front("device-type")).ok()?;
        let state = xs.read_string(&front("state")).ok()?;
        let backend = xs.read_string(&front("backend")).ok()?;
        let params = xs
            .read_string(&format!("{backend}/params"))
            .unwrap_or_default();
        let live = matches!(state.trim(), "1" | "2" | "3" | "4");
        (kind == "cdrom" && live && no_file(&backend, &params)).then_some(devid)
    })
}

/// Whether a disk backend names no file: a `qdisk` one, or `params` empty but for a
/// `format:` prefix.
fn no_file(backend: &str, params: &str) -> bool {
    let file = params.rsplit_once(':').map_or(params, |(_, f)| f);
    backend.contains("/backend/qdisk/") || file.trim().is_empty()
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
        let add = |devid, medium| Some(Action::Add { devid, medium });
        let remove = Some(Action::Remove { fdset_id: 2 });
        type Case = (Option<(u32, i64, bool)>, Seen, Option<Action>);
        let cases: &[Case] = &[
            (None, Seen::Absent, None),
            (None, present(5632, false), add(5632, true)),
            (None, present(5632, true), None),
            (None, Seen::Empty { devid: 5632 }, add(5632, false)),
            (Some((5632, 2, true)), present(5632, false), None),
            (Some((5632, 2, true)), present(5632, true), remove.clone()),
            (Some((5632, 2, true)), Seen::Absent, remove.clone()),
            (Some((5632, 2, true)), present(2080, false), remove.clone()),
            (
                Some((5632, 2, true)),
                Seen::Empty { devid: 5632 },
                remove.clone(),
            ),
            (Some((5632, 2, false)), Seen::Empty { devid: 5632 }, None),
            (Some((5632, 2, false)), present(5632, false), remove.clone()),
            (Some((5632, 2, false)), Seen::Absent, remove.clone()),
        ];
        for (current, seen, want) in cases {
            let tracker = Tracker {
                current: *current,
                last_seen: None,
            };
            assert_eq!(tracker.step(*seen), *want, "{current:?} {seen:?}");
        }
    }

    #[test]
    fn insert_then_eject() {
        let mut t = Tracker::default();
        let seen = Seen::Present {
            devid: 5632,
            closing: false,
        };
        let add = |medium| {
            Some(Action::Add {
                devid: 5632,
                medium,
            })
        };
        assert_eq!(t.step(seen), add(true));
        t.added(5632, 2, true);
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
        assert_eq!(t.step(seen), add(true));
        t.added(5632, 3, true);
        assert_eq!(t.current(), Some((5632, 3, true)));
        // Ejected: the medium's disk goes, an empty one comes.
        assert_eq!(t.step(Seen::Absent), Some(Action::Remove { fdset_id: 3 }));
        t.removed();
        assert_eq!(t.step(Seen::Empty { devid: 5632 }), add(false));
        t.added(5632, 4, false);
        assert_eq!(t.step(Seen::Empty { devid: 5632 }), None);
        assert_eq!(opaque(5632), "stub-devid:5632");
        assert!(t.observe(Seen::Absent));
        assert!(!t.observe(Seen::Absent));
        assert!(t.observe(Seen::Empty { devid: 5632 }));
    }

    #[test]
    fn an_empty_drive_from_xenstore() {
        let xs = libxl_store(&["-xen-domid", "2"]);
        let front = format!("/local/domain/{STUB}/device/vbd/5632");
        let back = format!("/local/domain/0/backend/vbd/{STUB}/5632");
        xs.write(&format!("{front}/backend"), &back).unwrap();
        xs.write(&format!("{front}/device-type"), "cdrom").unwrap();
        xs.write(&format!("{front}/state"), "1").unwrap();
        let mut client = Client::new(xs.connect(STUB));
        // No backend the stub domain can read: no file.
        assert_eq!(empty_drive(&mut client), Some(5632));
        assert!(no_file("/local/domain/0/backend/qdisk/3/5632", "aio:/x"));
        assert!(no_file("/local/domain/0/backend/vbd/3/5632", "raw:"));
        assert!(!no_file("/local/domain/0/backend/vbd/3/5632", "/dev/loop0"));
        let readable = [Perm::new(0, Access::None), Perm::new(STUB, Access::Read)];
        xs.write(&format!("{back}/params"), "/tmp/cd.iso").unwrap();
        xs.set_perms(&back, &readable).unwrap();
        xs.set_perms(&format!("{back}/params"), &readable).unwrap();
        assert_eq!(empty_drive(&mut client), None, "a medium");
        xs.write(&format!("{back}/params"), "").unwrap();
        assert_eq!(empty_drive(&mut client), Some(5632));
        xs.write(&format!("{front}/state"), "5").unwrap();
        assert_eq!(empty_drive(&mut client), None, "closing");
        xs.write(&format!("{front}/state"), "1").unwrap();
        xs.write(&format!("{front}/device-type"), "disk").unwrap();
        assert_eq!(empty_drive(&mut client), None, "not a CD-ROM drive");
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
