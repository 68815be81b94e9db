//! A FAT image of a set of files, the same bytes for the same files: a fixed volume id and
//! label, every timestamp `SOURCE_DATE_EPOCH`, folders and files created in sorted order.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};

use anyhow::{Context, Result};

/// A fixed clock for the file system's timestamps.
#[derive(Debug)]
struct FixedTime(fatfs::DateTime);

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// `epoch` (seconds since 1970, UTC) as a FAT time: FAT counts from 1980 to 2107 in
/// two-second steps, so earlier or later times are clamped.
fn fat_time(epoch: u64) -> fatfs::DateTime {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u16;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u16;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    let (date, time) = match year {
        ..=1979 => ((1980, 1, 1), (0, 0, 0)),
        2108.. => ((2107, 12, 31), (23, 59, 58)),
        _ => (
            (year, month, day),
            (
                (secs / 3600) as u16,
                (secs / 60 % 60) as u16,
                (secs % 60) as u16 & !1,
            ),
        ),
    };
    fatfs::DateTime {
        date: fatfs::Date {
            year: date.0,
            month: date.1,
            day: date.2,
        },
        time: fatfs::Time {
            hour: time.0,
            min: time.1,
            sec: time.2,
            millis: 0,
        },
    }
}

/// A FAT image holding `files` (path with `/` separators → bytes), sized to fit them.
pub fn image(files: &BTreeMap<String, Vec<u8>>, volume_id: u32, epoch: u64) -> Result<Vec<u8>> {
    const MIB: u64 = 1 << 20;
    // Each file rounded up to a 4 KiB cluster, plus room for the tables and folders.
    let content: u64 = files
        .values()
        .map(|f| (f.len() as u64).div_ceil(4096) * 4096)
        .sum();
    let size = (content + content / 16 + 4 * MIB).div_ceil(MIB).max(16) * MIB;
    let mut disk = Cursor::new(vec![0u8; size as usize]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .volume_id(volume_id)
            .volume_label(*b"XEN-ESP    ")
            .bytes_per_cluster(4096),
    )
    .context("formatting the FAT image")?;
    disk.set_position(0);
    // The file system keeps a `&'static` clock: one small leak per image written.
    let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_time(epoch))));
    let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new().time_provider(clock))
        .context("opening the new FAT image")?;
    {
        let root = fs.root_dir();
        for (path, bytes) in files {
            let mut parts: Vec<&str> = path.split('/').collect();
            let name = parts.pop().context("an empty file name")?;
            let mut dir = root.clone();
            for p in parts {
                dir = match dir.open_dir(p) {
                    Ok(d) => d,
                    Err(_) => dir
                        .create_dir(p)
                        .with_context(|| format!("creating {p} in the FAT image"))?,
                };
            }
            let mut f = dir
                .create_file(name)
                .with_context(|| format!("creating {path} in the FAT image"))?;
            f.truncate()?;
            f.write_all(bytes)
                .with_context(|| format!("writing {path} into the FAT image"))?;
        }
    }
    fs.unmount().context("closing the FAT image")?;
    Ok(disk.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn same_files_same_bytes_and_they_read_back() {
        let files: BTreeMap<String, Vec<u8>> = [
            ("EFI/BOOT/BOOTAA64.EFI", b"xen".to_vec()),
            ("EFI/BOOT/BOOTAA64.cfg", b"[global]\n".to_vec()),
            ("EFI/BOOT/Image-domu1.bin", vec![7; 10_000]),
        ]
        .into_iter()
        .map(|(p, b)| (p.to_string(), b))
        .collect();
        let a = image(&files, 0x1234_5678, 1_700_000_000).unwrap();
        assert_eq!(a, image(&files, 0x1234_5678, 1_700_000_000).unwrap());
        assert_ne!(a, image(&files, 0x1234_5678, 1_700_000_002).unwrap());
        let fs = fatfs::FileSystem::new(Cursor::new(a), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_id(), 0x1234_5678);
        let mut got = Vec::new();
        fs.root_dir()
            .open_file("EFI/BOOT/Image-domu1.bin")
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, vec![7; 10_000]);
        let e = fs
            .root_dir()
            .open_dir("EFI/BOOT")
            .unwrap()
            .iter()
            .map(|e| e.unwrap())
            .find(|e| e.file_name() == "BOOTAA64.cfg")
            .unwrap();
        let t = e.modified();
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
    }
}
