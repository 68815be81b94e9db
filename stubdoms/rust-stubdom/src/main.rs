//! Example stub domain: greets, reports who it is, reads sector 0 of each of its disks, checks
//! a write round trip at their ends and leaves a result in xenstore. Booted as dom0 (no
//! xenstore) it runs a smoke test instead.
#![cfg_attr(stubrt_image, no_std, no_main)]

#[cfg(stubrt_image)]
mod app {
    extern crate alloc;

    use alloc::format;
    use alloc::string::String;
    use stubrt::{blkfront, println, xenstore};

    stubrt::entry!(main);

    fn hex(bytes: &[u8]) -> String {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<alloc::vec::Vec<_>>()
            .join(" ")
    }

    /// The first 16 and the last 2 bytes of a sector: enough to tell an empty sector from a
    /// partition table (which ends in 55 aa).
    fn sector_summary(sector: &[u8]) -> String {
        let tail = sector.len().saturating_sub(2);
        format!(
            "{} ... {}",
            hex(&sector[..16.min(sector.len())]),
            hex(&sector[tail..])
        )
    }

    fn main() -> i32 {
        let info = stubrt::info();
        let kind = match info.map(|i| i.kind) {
            Some(stubrt::BootKind::Pv) => "pv",
            Some(stubrt::BootKind::Pvh) => "pvh",
            Some(stubrt::BootKind::Aarch64) => "aarch64",
            None => "?",
        };
        let started = stubrt::time::system_time_ns();
        println!("Hello from rust-stubdom ({kind})");
        let (sec, _) = stubrt::time::wallclock();
        let (free, total) = stubrt::mm::heap_stats();
        println!(
            "xen uptime {} ms, wallclock {} s, heap {} KiB free of {} KiB",
            stubrt::time::system_time_ns() / 1_000_000,
            sec,
            free / 1024,
            total / 1024
        );
        let v: alloc::vec::Vec<u32> = (0..1000).collect();
        println!("alloc works: sum {}", v.iter().sum::<u32>());

        if !xenstore::available() {
            println!("xenstore unavailable (dom0?): smoke test done");
            return 0;
        }
        match run() {
            Ok(()) => {
                let ms = (stubrt::time::system_time_ns() - started) / 1_000_000;
                println!("rust-stubdom: done in {ms} ms");
                0
            }
            Err(e) => {
                println!("rust-stubdom: error: {e}");
                1
            }
        }
    }

    fn run() -> Result<(), String> {
        let domid = xenstore::domid().map_err(|e| format!("read domid: {e}"))?;
        let name = xenstore::read(&format!("/local/domain/{domid}/name"))
            .map_err(|e| format!("read name: {e}"))?;
        println!("domid {domid}, name {name}");
        let vbds = match xenstore::directory("device/vbd") {
            Ok(v) => v,
            Err(e) if e.is_not_found() => alloc::vec::Vec::new(),
            Err(e) => return Err(format!("list vbds: {e}")),
        };
        println!("vbds: {}", vbds.join(" "));
        let mut ok = 0;
        for id in &vbds {
            match check_disk(&format!("device/vbd/{id}")) {
                Ok(line) => {
                    println!("vbd {id}: {line}");
                    ok += 1;
                }
                Err(e) => println!("vbd {id}: {e}"),
            }
        }
        let result = format!("ok {ok} disk{}", if ok == 1 { "" } else { "s" });
        xenstore::write("data/result", &result).map_err(|e| format!("write result: {e}"))?;
        println!("result written: data/result = {result}");
        Ok(())
    }

    /// Opens a disk, reads its first sector and, if it is writable, writes a pattern over its
    /// last 8 KiB (two requests) and reads it back; describes what it found.
    fn check_disk(dir: &str) -> Result<String, String> {
        let mut disk = blkfront::Disk::open(dir).map_err(|e| format!("open failed: {e}"))?;
        let ss = disk.sector_size() as usize;
        let mut buf = alloc::vec![0u8; ss];
        disk.read(0, &mut buf)
            .map_err(|e| format!("read failed: {e}"))?;
        let mut line = format!(
            "{} sectors of {} bytes, sector 0: {}",
            disk.sectors(),
            ss,
            sector_summary(&buf)
        );
        let count = (8192 / ss) as u64;
        if !disk.read_only() && disk.sectors() >= count {
            let at = disk.sectors() - count;
            let pattern: alloc::vec::Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
            disk.write(at, &pattern)
                .and_then(|()| disk.flush())
                .map_err(|e| format!("write failed: {e}"))?;
            let mut back = alloc::vec![0u8; pattern.len()];
            disk.read(at, &mut back)
                .map_err(|e| format!("read back failed: {e}"))?;
            if back != pattern {
                return Err(format!(
                    "sectors {at}.. read back differ from what was written"
                ));
            }
            line.push_str(&format!(", sectors {at}.. written and read back"));
        }
        Ok(line)
    }
}

#[cfg(not(stubrt_image))]
fn main() {
    eprintln!(
        "rust-stubdom is a Xen stub-domain image: build it with STUBRT_IMAGE=1 (see libs/stubrt)"
    );
    std::process::exit(2);
}
