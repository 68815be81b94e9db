//! Disk images for scenarios, made without root: a file system filled with `mke2fs -d`,
//! optionally inside an msdos or GPT partition table written by `sfdisk` on a plain file.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::recipe::{Disk, FileSystem, PartitionTable};

/// Where the first partition starts (1 MiB, the usual alignment).
const PART_START: u64 = 1 << 20;

/// Builds `disk` at `out`, with its files taken from `files` (path in disk -> host file).
pub fn make(disk: &Disk, files: &[(String, PathBuf)], work: &Path, out: &Path) -> Result<()> {
    let size = u64::from(disk.size_mib) << 20;
    let fs_size = match disk.table {
        PartitionTable::None => size,
        // GPT keeps a backup header in the last 33 sectors.
        PartitionTable::Msdos | PartitionTable::Gpt => size - PART_START - (1 << 20),
    };
    let fs_img = work.join("fs.img");
    match disk.fs {
        FileSystem::None => {
            if !files.is_empty() {
                bail!(
                    "disk {}: `files` needs a file system (fs = \"ext2\" or \"ext4\")",
                    disk.vdev
                );
            }
            std::fs::File::create(&fs_img)?.set_len(fs_size)?;
        }
        FileSystem::Ext2 | FileSystem::Ext4 => {
            let root = work.join("root");
            crate::fsx::remove_dir_if_exists(&root)?;
            std::fs::create_dir_all(&root)?;
            for (dest, src) in files {
                let to = root.join(dest.trim_start_matches('/'));
                std::fs::create_dir_all(to.parent().context("disk file path")?)?;
                std::fs::copy(src, &to).with_context(|| {
                    format!("disk {}: copying {} to {dest}", disk.vdev, src.display())
                })?;
            }
            let fstype = if disk.fs == FileSystem::Ext4 {
                "ext4"
            } else {
                "ext2"
            };
            run(Command::new("mke2fs")
                .args([
                    "-q",
                    "-F",
                    "-t",
                    fstype,
                    "-E",
                    "root_owner=0:0",
                    "-L",
                    "stubdoms",
                    "-d",
                ])
                .arg(&root)
                .arg(&fs_img)
                .arg(format!("{}k", fs_size >> 10))
                .env("E2FSPROGS_FAKE_TIME", "1735689600"))
            .with_context(|| format!("disk {}: mke2fs", disk.vdev))?;
        }
    }
    if disk.table == PartitionTable::None {
        std::fs::rename(&fs_img, out)?;
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
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running sfdisk (install fdisk)")?;
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
    let data = std::fs::read(&fs_img)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(out)?;
    f.seek(SeekFrom::Start(PART_START))?;
    f.write_all(&data)?;
    std::fs::remove_file(&fs_img)?;
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
