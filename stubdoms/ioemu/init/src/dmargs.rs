//! QEMU's command line: read from `/vm/<uuid>/image/dm-argv/NNN`, completed for the stub
//! domain.
//!
//! libxl writes one key per argument, numbered from `001` with three zero-padded digits
//! (`%03d`, so the 1000th is `1000`); the program name is not stored. Keys are ordered by
//! their number, not as strings.

use xenstore_proto::{Client, Transport};

use crate::Error;

/// The argument libxl writes after `-incoming` when the guest is being restored; the stub
/// domain replaces it with `fd:N` for the file descriptor of console 2.
pub const RESTORE_PLACEHOLDER: &str = "$STUBDOM_RESTORE_INCOMING_ARG";

/// Path of the QMP socket the toolstack's vchan proxy is connected to.
pub const TOOLSTACK_QMP_SOCKET: &str = "/run/qmp-toolstack.sock";

/// Reads the arguments under `dir`, in numeric key order.
pub fn read<T: Transport>(xs: &mut Client<T>, dir: &str) -> Result<Vec<String>, Error>
where
    T::Error: std::fmt::Display,
{
    let names = xs.directory(dir).map_err(|e| {
        Error::Args(format!(
            "the toolstack left no QEMU command line at {dir} ({e}): this image is the \
             device model of libxl's Linux stub domain, which xl.cfg selects with \
             device_model_version = \"qemu-xen\" and device_model_stubdomain_override = 1"
        ))
    })?;
    let mut keyed = Vec::with_capacity(names.len());
    for name in names {
        let index = parse_index(&name).ok_or_else(|| Error::BadValue {
            path: format!("{dir}/{name}"),
            value: name.clone(),
            expected: "an argument number as the key name",
        })?;
        keyed.push((index, name));
    }
    keyed.sort_unstable();
    if keyed.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Error::Args(format!(
            "two keys under {dir} have the same number"
        )));
    }
    let mut args = Vec::with_capacity(keyed.len());
    for (_, name) in keyed {
        let path = format!("{dir}/{name}");
        args.push(crate::layout::read_string(xs, &path)?);
    }
    if args.is_empty() {
        return Err(Error::Args(format!("{dir} holds no arguments")));
    }
    Ok(args)
}

fn parse_index(name: &str) -> Option<u32> {
    if name.is_empty() || name.len() > 9 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Whether the toolstack asks QEMU to load the guest's state from console 2.
pub fn wants_restore(args: &[String]) -> bool {
    args.iter().any(|a| a == RESTORE_PLACEHOLDER)
}

/// Replaces every [`RESTORE_PLACEHOLDER`] with `fd:<fd>`. Without a restore descriptor a
/// placeholder is an error: QEMU would wait for a state that never comes.
pub fn substitute_restore(args: &mut [String], restore_fd: Option<i32>) -> Result<(), Error> {
    for arg in args.iter_mut().filter(|a| *a == RESTORE_PLACEHOLDER) {
        let fd = restore_fd.ok_or_else(|| {
            Error::Args(format!(
                "the toolstack asks for a restore ({RESTORE_PLACEHOLDER}) but console 2 is not connected"
            ))
        })?;
        *arg = format!("fd:{fd}");
    }
    Ok(())
}

/// The arguments the stub domain adds: two QMP monitors.
///
/// `stubdom-init` is a socket QEMU inherits as file descriptor `init_fd`, already
/// connected to the init. The init keeps it open for QEMU's lifetime: it passes file
/// descriptors over it (`add-fd`), and an open monitor keeps QEMU from closing unused
/// fdset members whenever the toolstack's connection goes away.
///
/// `stubdom-toolstack` listens at [`TOOLSTACK_QMP_SOCKET`]; the vchan proxy connects to
/// it for each connection the toolstack makes.
pub fn stubdom_args(init_fd: i32) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!("socket,id=stubdom-init,fd={init_fd}"),
        "-mon".into(),
        "chardev=stubdom-init,mode=control".into(),
        "-chardev".into(),
        format!("socket,id=stubdom-toolstack,path={TOOLSTACK_QMP_SOCKET},server=on,wait=off"),
        "-mon".into(),
        "chardev=stubdom-toolstack,mode=control".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{libxl_store, STUB, VM};

    fn dir() -> String {
        format!("{VM}/image/dm-argv")
    }

    #[test]
    fn reads_arguments_in_numeric_order() {
        let args: Vec<String> = (0..1003).map(|i| format!("a{i}")).collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let xs = libxl_store(&refs);
        let mut client = Client::new(xs.connect(STUB));
        // "1000".."1002" sort before "999" as strings; the order must follow the numbers.
        assert_eq!(read(&mut client, &dir()).unwrap(), args);
    }

    #[test]
    fn keeps_spaces_and_empty_arguments() {
        let xs = libxl_store(&["-name", "my guest", "", "-xen-domid", "2"]);
        let mut client = Client::new(xs.connect(STUB));
        assert_eq!(
            read(&mut client, &dir()).unwrap(),
            ["-name", "my guest", "", "-xen-domid", "2"]
        );
    }

    #[test]
    fn rejects_odd_keys() {
        for bad in ["abc", "01x", "-1", "1234567890"] {
            let xs = libxl_store(&["-xen-domid", "2"]);
            xs.write(&format!("{}/{bad}", dir()), "x").unwrap();
            let mut client = Client::new(xs.connect(STUB));
            let err = read(&mut client, &dir()).unwrap_err();
            assert!(matches!(err, Error::BadValue { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_duplicate_numbers() {
        let xs = libxl_store(&["-xen-domid", "2"]);
        xs.write(&format!("{}/1", dir()), "x").unwrap();
        let mut client = Client::new(xs.connect(STUB));
        assert!(matches!(read(&mut client, &dir()), Err(Error::Args(_))));
    }

    #[test]
    fn missing_or_empty_argv_is_an_error() {
        let xs = libxl_store(&[]);
        let mut client = Client::new(xs.connect(STUB));
        assert!(matches!(read(&mut client, &dir()), Err(Error::Args(_))));
        xs.rm(&dir()).unwrap();
        let e = read(&mut client, &dir()).unwrap_err().to_string();
        assert!(
            e.contains("no QEMU command line") && e.contains("qemu-xen"),
            "{e}"
        );
    }

    #[test]
    fn other_domains_cannot_read_the_arguments() {
        let xs = libxl_store(&["-xen-domid", "2"]);
        let mut client = Client::new(xs.connect(9));
        let e = read(&mut client, &dir()).unwrap_err().to_string();
        assert!(e.contains("no QEMU command line"), "{e}");
    }

    #[test]
    fn restore_placeholder_becomes_an_fd() {
        let mut args: Vec<String> = ["-xen-domid", "2", "-incoming", RESTORE_PLACEHOLDER]
            .map(String::from)
            .to_vec();
        assert!(wants_restore(&args));
        substitute_restore(&mut args, Some(7)).unwrap();
        assert_eq!(args, ["-xen-domid", "2", "-incoming", "fd:7"]);
        assert!(!wants_restore(&args));
    }

    #[test]
    fn restore_without_console_is_an_error() {
        let mut args: Vec<String> = ["-incoming", RESTORE_PLACEHOLDER]
            .map(String::from)
            .to_vec();
        assert!(matches!(
            substitute_restore(&mut args, None),
            Err(Error::Args(_))
        ));
    }

    #[test]
    fn no_placeholder_needs_no_fd() {
        let mut args: Vec<String> = ["-xen-domid", "2"].map(String::from).to_vec();
        substitute_restore(&mut args, None).unwrap();
        assert_eq!(args, ["-xen-domid", "2"]);
    }

    #[test]
    fn stubdom_monitors_name_the_fd() {
        let args = stubdom_args(5);
        assert_eq!(args[1], "socket,id=stubdom-init,fd=5");
        assert!(args[5].contains(TOOLSTACK_QMP_SOCKET));
        assert_eq!(args.iter().filter(|a| *a == "-mon").count(), 2);
    }
}
