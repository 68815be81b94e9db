//! Which guest this stub domain serves, and the xenstore paths of the protocol.

use xenstore_proto::{Client, Transport};

use crate::Error;

/// The domains involved and the guest's `/vm/<uuid>` path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// This stub domain.
    pub stubdom: u32,
    /// The HVM guest whose device model we run (`/local/domain/<stubdom>/target`).
    pub target: u32,
    /// The guest's VM path (`/local/domain/<target>/vm`), e.g. `/vm/<uuid>`.
    pub vm: String,
}

impl Layout {
    /// Reads the layout from xenstore: our own `domid`, our `target` (written by libxl
    /// before it unpauses us) and the target's `vm` path.
    pub fn discover<T: Transport>(xs: &mut Client<T>) -> Result<Self, Error>
    where
        T::Error: std::fmt::Display,
    {
        let stubdom = read_domid(xs, "domid")?;
        let target = read_domid(xs, "target")?;
        let vm_key = format!("/local/domain/{target}/vm");
        let vm = read_string(xs, &vm_key)?;
        if !vm.starts_with('/') {
            return Err(Error::BadValue {
                path: vm_key,
                value: vm,
                expected: "an absolute path",
            });
        }
        Ok(Layout {
            stubdom,
            target,
            vm,
        })
    }

    /// Directory holding QEMU's arguments, one key per argument.
    pub fn dm_argv(&self) -> String {
        format!("{}/image/dm-argv", self.vm)
    }

    /// Our device-model directory for the target; writable by us, created by libxl.
    pub fn device_model(&self) -> String {
        format!(
            "/local/domain/{}/device-model/{}",
            self.stubdom, self.target
        )
    }

    /// Where the QMP vchan server publishes its ring.
    pub fn qmp_vchan(&self) -> String {
        format!("{}/qmp-vchan", self.device_model())
    }

    /// Where QEMU reports `running`, and libxl waits for it.
    pub fn state(&self) -> String {
        format!("{}/state", self.device_model())
    }
}

/// Reads a key that must exist, as UTF-8.
pub fn read_string<T: Transport>(xs: &mut Client<T>, path: &str) -> Result<String, Error>
where
    T::Error: std::fmt::Display,
{
    let raw = xs.read(path).map_err(|e| Error::xs("read", path, &e))?;
    String::from_utf8(raw).map_err(|e| Error::BadValue {
        path: path.to_owned(),
        value: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        expected: "UTF-8 text",
    })
}

/// Reads a domain id (decimal, below `DOMID_FIRST_RESERVED`).
pub fn read_domid<T: Transport>(xs: &mut Client<T>, path: &str) -> Result<u32, Error>
where
    T::Error: std::fmt::Display,
{
    let text = read_string(xs, path)?;
    parse_domid(&text).ok_or(Error::BadValue {
        path: path.to_owned(),
        value: text,
        expected: "a domain id",
    })
}

/// Parses a decimal domain id, accepting only ids a real domain can have.
pub fn parse_domid(text: &str) -> Option<u32> {
    const DOMID_FIRST_RESERVED: u32 = 0x7ff0;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u32>()
        .ok()
        .filter(|&d| d < DOMID_FIRST_RESERVED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{libxl_store, VM};

    fn store(_stub: u32, _target: u32) -> xenstore_proto::testing::MemXenstore {
        libxl_store(&["-xen-domid", "2"])
    }

    #[test]
    fn discovers_target_and_paths() {
        let xs = store(3, 2);
        let mut client = Client::new(xs.connect(3));
        let layout = Layout::discover(&mut client).unwrap();
        assert_eq!(
            layout,
            Layout {
                stubdom: 3,
                target: 2,
                vm: VM.into()
            }
        );
        assert_eq!(layout.dm_argv(), format!("{VM}/image/dm-argv"));
        assert_eq!(
            layout.qmp_vchan(),
            "/local/domain/3/device-model/2/qmp-vchan"
        );
        assert_eq!(layout.state(), "/local/domain/3/device-model/2/state");
    }

    #[test]
    fn missing_target_is_reported_with_its_path() {
        let xs = store(3, 2);
        xs.rm("/local/domain/3/target").unwrap();
        let mut client = Client::new(xs.connect(3));
        let err = Layout::discover(&mut client).unwrap_err().to_string();
        assert!(err.contains("read of target"), "{err}");
    }

    #[test]
    fn domids_are_checked() {
        for (text, want) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("32751", Some(32751)),
            ("32752", None),
            ("", None),
            ("-1", None),
            ("1 ", None),
            ("0x1", None),
            ("99999999999", None),
        ] {
            assert_eq!(parse_domid(text), want, "{text:?}");
        }
    }

    #[test]
    fn relative_vm_path_is_rejected() {
        let xs = store(3, 2);
        xs.write("/local/domain/2/vm", "vm/abc").unwrap();
        let mut client = Client::new(xs.connect(3));
        assert!(matches!(
            Layout::discover(&mut client),
            Err(Error::BadValue { .. })
        ));
    }
}
