//! `/init` of the ioemu device-model stub domain.
//!
//! The stub domain is a small Linux PV guest whose only job is to run QEMU for one HVM
//! guest, as described in "Toolstack to Linux ioemu stubdomain protocol" of Xen's
//! `docs/misc/stubdom.txt`. This crate holds the protocol logic, kept free of system
//! calls where possible so it can be tested against the in-memory xenstore of
//! `xenstore-proto`:
//!
//! - [`layout`]: which domain we serve and where its keys live;
//! - [`dmargs`]: reading QEMU's command line from `dm-argv` and completing it;
//! - [`nic`]: which tap devices QEMU creates and how they pair with the PV vifs;
//! - [`cdrom`]: keeping `/dev/xvdc` in a QEMU fdset for CD-ROM changes;
//! - [`qmp`]: a minimal QMP client that can pass file descriptors;
//! - [`report`]: the memory figures and the plain-word hints the init adds to QEMU's errors;
//! - [`vchan`]: the server side of the vchan shared ring, for the QMP proxy.
//!
//! `src/main.rs` and [`sys`] do the system work: mounts, device files, ioctls, processes.

pub mod cdrom;
pub mod dmargs;
pub mod error;
pub mod layout;
pub mod nic;
pub mod proxy;
pub mod qmp;
pub mod report;
pub mod sys;
pub mod vchan;

pub use error::Error;

/// A xenstore laid out the way libxl 4.17 leaves it when it unpauses a Linux device-model
/// stub domain (see `libxl__spawn_stub_dm` and `libxl__write_stub_dmargs`).
#[cfg(test)]
pub(crate) mod fixture {
    use xenstore_proto::testing::MemXenstore;
    use xenstore_proto::{Access, Perm};

    pub const STUB: u16 = 3;
    pub const GUEST: u16 = 2;
    pub const VM: &str = "/vm/5e5e5e5e-0000-4000-8000-000000000001";

    /// The store with `args` as `dm-argv/001`, `002`, ...
    pub fn libxl_store(args: &[&str]) -> MemXenstore {
        let xs = MemXenstore::new();
        xs.introduce_domain(GUEST).unwrap();
        xs.introduce_domain(STUB).unwrap();
        xs.write(&format!("/local/domain/{GUEST}/vm"), VM).unwrap();
        xs.set_perms(
            &format!("/local/domain/{GUEST}/vm"),
            &[Perm::new(GUEST, Access::None)],
        )
        .unwrap();
        xs.write(&format!("/local/domain/{STUB}/domid"), STUB.to_string())
            .unwrap();
        xs.write(&format!("/local/domain/{STUB}/target"), GUEST.to_string())
            .unwrap();
        let argv = format!("{VM}/image/dm-argv");
        xs.mkdir(&argv).unwrap();
        xs.set_perms(
            &argv,
            &[Perm::new(0, Access::None), Perm::new(STUB, Access::Read)],
        )
        .unwrap();
        for (i, arg) in args.iter().enumerate() {
            xs.write(&format!("{argv}/{:03}", i + 1), arg).unwrap();
        }
        let dm = format!("/local/domain/{STUB}/device-model/{GUEST}");
        xs.mkdir(&dm).unwrap();
        xs.set_perms(
            &dm,
            &[
                Perm::new(STUB, Access::None),
                Perm::new(GUEST, Access::Read),
            ],
        )
        .unwrap();
        xs.set_target(STUB, GUEST);
        xs
    }
}
