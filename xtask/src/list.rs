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
            let files: Vec<&str> = out.files().collect();
            for xen in r.xen_builds() {
                println!(
                    "    {:<11} target/images/{}  ({tests} boot test{})",
                    variant.as_str(),
                    crate::builders::image_path(*variant, xen, &files.join(" + ")),
                    if tests == 1 { "" } else { "s" }
                );
            }
        }
    }
    Ok(())
}
