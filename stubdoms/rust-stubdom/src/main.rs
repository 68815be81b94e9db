//! Example stub domain: greets, reports who it is, reads sector 0 of each of its disks and
//! leaves a result in xenstore. Booted as dom0 (no xenstore) it runs a smoke test instead.
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

    fn main() -> i32 {
        let info = stubrt::info();
        let kind = match info.map(|i| i.kind) {
            Some(stubrt::BootKind::Pv) => "pv",
            Some(stubrt::BootKind::Pvh) => "pvh",
            None => "?",
        };
        println!("Hello from rust-stubdom ({kind})");
        let (sec, _) = stubrt::time::wallclock();
        let (free, total) = stubrt::mm::heap_stats();
        println!(
            "uptime {} ms, wallclock {} s, heap {} KiB free of {} KiB",
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
            Ok(n) => {
                println!("rust-stubdom: done, {n} disks");
                0
            }
            Err(e) => {
                println!("rust-stubdom: error: {e}");
                1
            }
        }
    }

    fn run() -> Result<usize, String> {
        let domid = xenstore::domid().map_err(|e| format!("read domid: {e}"))?;
        let name = xenstore::read(&format!("/local/domain/{domid}/name"))
            .map_err(|e| format!("read name: {e}"))?;
        println!("domid {domid}, name {name}");
        let vbds = xenstore::directory("device/vbd").unwrap_or_default();
        println!("{} vbd(s): {}", vbds.len(), vbds.join(" "));
        let mut ok = 0;
        for id in &vbds {
            let path = format!("device/vbd/{id}");
            match blkfront::Disk::open(&path) {
                Ok(mut disk) => {
                    let mut buf = alloc::vec![0u8; disk.sector_size() as usize];
                    match disk.read(0, &mut buf) {
                        Ok(()) => {
                            println!(
                                "vbd {id}: {} sectors of {} bytes, sector 0: {}",
                                disk.sectors(),
                                disk.sector_size(),
                                hex(&buf[..16])
                            );
                            ok += 1;
                        }
                        Err(e) => println!("vbd {id}: read failed: {e}"),
                    }
                }
                Err(e) => println!("vbd {id}: open failed: {e}"),
            }
        }
        xenstore::write("data/result", &format!("ok {ok} disks"))
            .map_err(|e| format!("write result: {e}"))?;
        Ok(ok)
    }
}

#[cfg(not(stubrt_image))]
fn main() {
    eprintln!(
        "rust-stubdom is a Xen stub-domain image: build it with STUBRT_IMAGE=1 (see libs/stubrt)"
    );
    std::process::exit(2);
}
