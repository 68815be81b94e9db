//! Kernel-module metadata and the kernel ELF inside a bzImage, read with goblin.

use anyhow::{bail, Context, Result};

/// The `depends=` field of a kernel module's `.modinfo` section.
pub fn module_depends(bytes: &[u8]) -> Result<Vec<String>> {
    let elf = goblin::elf::Elf::parse(bytes).context("parsing kernel module")?;
    for sh in &elf.section_headers {
        if elf.shdr_strtab.get_at(sh.sh_name) != Some(".modinfo") {
            continue;
        }
        let start = sh.sh_offset as usize;
        let data = bytes
            .get(start..start + sh.sh_size as usize)
            .context(".modinfo lies outside the file")?;
        for field in data.split(|b| *b == 0) {
            if let Some(deps) = field.strip_prefix(b"depends=") {
                return Ok(String::from_utf8_lossy(deps)
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect());
            }
        }
    }
    Ok(Vec::new())
}

/// The ELF kernel inside an x86 bzImage, found through the boot protocol's setup header:
/// `setup_sects` at 0x1f1 (0 means 4), the payload's offset and length at 0x248 and 0x24c,
/// relative to the protected-mode code that follows the setup sectors.
pub fn vmlinux_from_bzimage(image: &[u8]) -> Result<Vec<u8>> {
    use std::io::Read;
    let byte = |at: usize| image.get(at).copied().context("bzImage too short");
    let word = |at: usize| -> Result<usize> {
        let b = image.get(at..at + 4).context("bzImage too short")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        bail!("not a bzImage (no HdrS signature)");
    }
    let setup = match byte(0x1f1)? {
        0 => 4,
        n => n as usize,
    };
    let start = (setup + 1) * 512 + word(0x248)?;
    let payload = image
        .get(start..start + word(0x24c)?)
        .context("bzImage payload lies outside the file")?;
    let mut out = Vec::new();
    if payload.starts_with(b"\xfd7zXZ\0") {
        liblzma::read::XzDecoder::new(payload).read_to_end(&mut out)?;
    } else if payload.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(payload).read_to_end(&mut out)?;
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        // One frame, then the 4-byte uncompressed size Linux's build appends.
        zstd::stream::read::Decoder::new(payload)?
            .single_frame()
            .read_to_end(&mut out)?;
    } else {
        bail!("bzImage payload is neither xz, gzip nor zstd");
    }
    if !out.starts_with(b"\x7fELF") {
        bail!("bzImage payload is not an ELF file");
    }
    Ok(out)
}
