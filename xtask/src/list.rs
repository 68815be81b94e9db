//! `cargo xtask list`: every recipe with its kind, variants and outputs.

use anyhow::Result;

use crate::workspace::Workspace;

pub fn run(ws: &Workspace) -> Result<()> {
    for r in &ws.recipes {
        println!("{} ({}): {}", r.name, r.kind, r.summary);
        for (variant, out) in &r.variants {
            let tests = r
                .boot_tests
                .iter()
                .filter(|t| t.variant == *variant)
                .count();
            let mut files = vec![out.file.clone()];
            files.extend(out.extra_files.iter().cloned());
            println!(
                "    {:<11} target/images/{variant}/{}  ({tests} boot test{})",
                variant.as_str(),
                files.join(" + "),
                if tests == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}
