//! What an ELF file needs at run time, and kernel-module metadata, read with goblin.

use anyhow::{Context, Result};

/// The program interpreter and the `DT_NEEDED` sonames of an ELF file, or `None` when the
/// file is not ELF (a script).
pub fn needs(bytes: &[u8]) -> Result<Option<(Option<String>, Vec<String>)>> {
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = goblin::elf::Elf::parse(bytes).context("parsing ELF")?;
    Ok(Some((
        elf.interpreter.map(str::to_string),
        elf.libraries.iter().map(|s| s.to_string()).collect(),
    )))
}

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
