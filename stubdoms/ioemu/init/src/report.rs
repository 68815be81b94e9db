//! What the init tells the user beyond QEMU's own words: where the stub domain's memory
//! goes, and plain-word hints for QEMU's errors that mean a configuration problem.

/// The stub domain's memory as the init sees it, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// What the kernel manages (`MemTotal`): the domain's memory less the kernel's image
    /// and its early reservations.
    pub total: u64,
    /// What could still be allocated (`MemAvailable`).
    pub available: u64,
    /// The rootfs, unpacked into RAM (the sizes of its files).
    pub rootfs: u64,
    /// QEMU's resident set (`VmRSS`), mostly its own heap and mapped guest pages.
    pub qemu_rss: u64,
}

impl Memory {
    /// Read from `/proc/meminfo` and QEMU's `/proc/<pid>/status`.
    pub fn parse(meminfo: &str, qemu_status: &str, rootfs: u64) -> Option<Self> {
        Some(Memory {
            total: kib_field(meminfo, "MemTotal")?,
            available: kib_field(meminfo, "MemAvailable")?,
            rootfs,
            qemu_rss: kib_field(qemu_status, "VmRSS")?,
        })
    }

    /// The value of `data/ioemu-memory` in the stub domain's xenstore directory, which the
    /// toolstack's side (and the boot test) can read; one line, `key=KiB` pairs.
    pub fn xenstore_value(&self) -> String {
        format!(
            "total-kib={} available-kib={} rootfs-kib={} qemu-rss-kib={}",
            self.total, self.available, self.rootfs, self.qemu_rss
        )
    }
}

/// A `Name:   123 kB` field of a `/proc` file.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A line to add after one of QEMU's error lines, when the error has a likely cause a user
/// can fix. QEMU prints `qemu-system-i386: -opt ...: message`.
pub fn qemu_hint(line: &str) -> Option<String> {
    let rest = line.strip_prefix("qemu-system-i386: ")?;
    let option = rest
        .split(':')
        .next()
        .filter(|o| o.starts_with('-'))
        .and_then(|o| o.split_whitespace().next());
    let unknown = rest.ends_with("invalid option")
        || rest.contains("is unexpected")
        || rest.contains("Invalid parameter")
        || (rest.contains("Property '") && rest.ends_with("not found"));
    if !unknown {
        return None;
    }
    let what = option.map_or_else(|| "an option".to_string(), |o| format!("`{o}`"));
    Some(format!(
        "this image's QEMU does not understand {what}, which the toolstack asked for: \
         the toolstack is likely newer than the image. Use the image built for your Xen \
         release (/usr/lib/xen-<release>/boot), or remove the xl.cfg setting that adds it"
    ))
}

/// The guest disks QEMU is asked to open (`file=/dev/xvdX` of `-drive`), in order.
pub fn disk_paths(args: &[String]) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == "-drive")
        .flat_map(|w| crate::nic::split_opts(&w[1]))
        .filter(|(k, v)| k == "file" && v.starts_with("/dev/"))
        .map(|(_, v)| v)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_from_proc_files() {
        let meminfo = "MemTotal:          42044 kB\nMemFree:   1 kB\nMemAvailable:      20112 kB\n";
        let status = "Name:\tqemu-system-i38\nVmPeak:\t  100 kB\nVmRSS:\t   15360 kB\n";
        let m = Memory::parse(meminfo, status, 9000).unwrap();
        assert_eq!(
            m.xenstore_value(),
            "total-kib=42044 available-kib=20112 rootfs-kib=9000 qemu-rss-kib=15360"
        );
        assert_eq!(Memory::parse(meminfo, "Name: x\n", 0), None);
        assert_eq!(
            kib_field("MemTotalX: 5 kB\nMemTotal: 7 kB\n", "MemTotal"),
            Some(7)
        );
    }

    #[test]
    fn hints_for_options_qemu_does_not_know() {
        let h = qemu_hint("qemu-system-i386: -foo: invalid option").unwrap();
        assert!(h.contains("`-foo`") && h.contains("newer"), "{h}");
        let h = qemu_hint("qemu-system-i386: -machine xenfv,max-ram-below-4g=1G,bar=1: Property 'xenfv-machine.bar' not found").unwrap();
        assert!(h.contains("`-machine`"), "{h}");
        let h = qemu_hint("qemu-system-i386: -device foo,x=1: Parameter 'x' is unexpected");
        assert!(h.is_some());
        assert_eq!(
            qemu_hint("qemu-system-i386: terminating on signal 15"),
            None
        );
        assert_eq!(qemu_hint("-foo: invalid option"), None);
    }

    #[test]
    fn disks_in_drive_options() {
        let args: Vec<String> = [
            "-drive",
            "file=/dev/xvda,if=ide,index=0,media=disk,format=raw,cache=writeback",
            "-drive",
            "if=ide,index=2,readonly=on,media=cdrom,id=ide-5632",
            "-drive",
            "file=/dev/xvdb,if=ide,index=1,media=disk,format=raw",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(disk_paths(&args), ["/dev/xvda", "/dev/xvdb"]);
    }
}
