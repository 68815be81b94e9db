//! Disk images for scenarios, made without root: a file system filled with `mke2fs -d`,
//! optionally inside an msdos or GPT partition table written by `sfdisk` on a plain file,
//! and optionally a BIOS boot sector (for HVM guests' firmware to run).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::tools::Tools;

use anyhow::{bail, Context, Result};

use crate::recipe::{Disk, FileSystem, PartitionTable};

/// Where the first partition starts (1 MiB, the usual alignment).
const PART_START: u64 = 1 << 20;

/// Builds `disk` at `out`, with its files taken from `files` (path in disk -> host file)
/// and its first sector's code from the annotated hex file `boot_sector`.
pub fn make(
    tools: &Tools,
    disk: &Disk,
    files: &[(String, PathBuf)],
    boot_sector: Option<&Path>,
    work: &Path,
    out: &Path,
) -> Result<()> {
    image(tools, disk, files, work, out)?;
    if let Some(path) = boot_sector {
        let text = fs_err::read_to_string(path)
            .with_context(|| format!("disk {}: reading {}", disk.vdev, path.display()))?;
        let code =
            parse_hex(&text).with_context(|| format!("disk {}: {}", disk.vdev, path.display()))?;
        write_boot_sector(out, &code, disk.table != PartitionTable::None)
            .with_context(|| format!("disk {}: {}", disk.vdev, path.display()))?;
    }
    Ok(())
}

fn image(
    tools: &Tools,
    disk: &Disk,
    files: &[(String, PathBuf)],
    work: &Path,
    out: &Path,
) -> Result<()> {
    let size = u64::from(disk.size_mib) << 20;
    let fs_size = match disk.table {
        PartitionTable::None => size,
        // GPT keeps a backup header in the last 33 sectors.
        PartitionTable::Msdos | PartitionTable::Gpt => size - PART_START - (1 << 20),
    };
    let fs_img = work.join("fs.img");
    match disk.fs {
        FileSystem::None => {
            if !files.is_empty() || disk.fs_uuid.is_some() {
                bail!(
                    "disk {}: `files` and `fs-uuid` need a file system (fs = \"ext2\" or \"ext4\")",
                    disk.vdev
                );
            }
            std::fs::File::create(&fs_img)?.set_len(fs_size)?;
        }
        FileSystem::Ext2 | FileSystem::Ext4 => {
            let root = work.join("root");
            crate::fsx::remove_dir_if_exists(&root)?;
            fs_err::create_dir_all(&root)?;
            for (dest, src) in files {
                let to = root.join(dest.trim_start_matches('/'));
                fs_err::create_dir_all(to.parent().context("disk file path")?)?;
                fs_err::copy(src, &to).with_context(|| {
                    format!("disk {}: copying {} to {dest}", disk.vdev, src.display())
                })?;
            }
            let fstype = if disk.fs == FileSystem::Ext4 {
                "ext4"
            } else {
                "ext2"
            };
            run(tools
                .command_with("mke2fs", &[("E2FSPROGS_FAKE_TIME", "1735689600")])?
                .args([
                    "-q",
                    "-F",
                    "-t",
                    fstype,
                    "-E",
                    "root_owner=0:0",
                    "-L",
                    "stubdoms",
                ])
                .args(disk.fs_uuid.iter().flat_map(|u| ["-U", u.as_str()]))
                .arg("-d")
                .arg(tools.inside(&root)?)
                .arg(tools.inside(&fs_img)?)
                .arg(format!("{}k", fs_size >> 10)))
            .with_context(|| format!("disk {}: mke2fs", disk.vdev))?;
        }
    }
    if disk.table == PartitionTable::None {
        fs_err::rename(&fs_img, out)?;
        return Ok(());
    }
    let f = std::fs::File::create(out)?;
    f.set_len(size)?;
    drop(f);
    let label = if disk.table == PartitionTable::Gpt {
        "gpt"
    } else {
        "dos"
    };
    let script = format!(
        "label: {label}\nstart={}, size={}, type=linux\n",
        PART_START / 512,
        fs_size / 512
    );
    let mut child = tools
        .command("sfdisk")?
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(tools.inside(out)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sfdisk")?;
    child
        .stdin
        .take()
        .context("sfdisk stdin")?
        .write_all(script.as_bytes())?;
    let o = child.wait_with_output()?;
    if !o.status.success() {
        bail!(
            "disk {}: sfdisk failed: {}",
            disk.vdev,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let data = fs_err::read(&fs_img)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(out)?;
    f.seek(SeekFrom::Start(PART_START))?;
    f.write_all(&data)?;
    fs_err::remove_file(&fs_img)?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let o = cmd
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !o.status.success() {
        bail!("{}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}

/// Bytes of an annotated hex file: whitespace-separated two-digit hex bytes, `#` starts a
/// comment (where the instruction each line encodes goes).
fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        for token in code.split_whitespace() {
            let byte = (token.len() == 2)
                .then(|| u8::from_str_radix(token, 16).ok())
                .flatten()
                .with_context(|| {
                    format!("line {}: `{token}` is not a two-digit hex byte", n + 1)
                })?;
            out.push(byte);
        }
    }
    Ok(out)
}

/// Writes `code` at the start of the disk image `out` and the 55 AA boot signature at byte
/// 510; with a partition table the code must end before the table (byte 446).
fn write_boot_sector(out: &Path, code: &[u8], has_table: bool) -> Result<()> {
    let room = if has_table { 446 } else { 510 };
    if code.len() > room {
        bail!(
            "{} bytes of boot code do not fit in the {room} bytes before the {}",
            code.len(),
            if has_table {
                "partition table"
            } else {
                "boot signature"
            }
        );
    }
    let mut f = std::fs::OpenOptions::new().write(true).open(out)?;
    f.write_all(code)?;
    f.seek(SeekFrom::Start(510))?;
    f.write_all(&[0x55, 0xaa])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_files_parse_with_comments_and_refuse_other_tokens() {
        let text = "# a comment line\nFC 31 c0   # cld; xor ax, ax\n\n55\n";
        assert_eq!(parse_hex(text).unwrap(), vec![0xfc, 0x31, 0xc0, 0x55]);
        for (bad, line) in [("FC 3\n", 1), ("\nFC 0x31\n", 2), ("zz\n", 1), ("FCC\n", 1)] {
            let e = parse_hex(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("line {line}: ")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn boot_sector_goes_before_the_table_and_gets_its_signature() {
        let dir = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let img = dir.join("d.img");
        fs_err::write(&img, vec![0xeeu8; 1024]).unwrap();
        write_boot_sector(&img, &[1, 2, 3], true).unwrap();
        let bytes = fs_err::read(&img).unwrap();
        assert_eq!(&bytes[..4], &[1, 2, 3, 0xee], "code written, the rest kept");
        assert_eq!(&bytes[510..512], &[0x55, 0xaa]);
        assert_eq!(bytes.len(), 1024);

        let e = write_boot_sector(&img, &[0; 447], true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("447 bytes") && e.contains("partition table"),
            "{e}"
        );
        write_boot_sector(&img, &[0; 510], false).unwrap();
        let e = write_boot_sector(&img, &[0; 511], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("boot signature"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
