//! `STUBRT_IMAGE=1` selects the freestanding image build: boot code, panic handler, global
//! allocator and the C memory functions are compiled in only then, so host builds
//! (`cargo test --workspace`, clippy) keep working with the standard library.
//!
//! The linker script of the target's architecture is handed to the stub domains' build
//! scripts as `DEP_STUBRT_LINK_SCRIPT` (the `links` key): they link the image, not this crate.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(stubrt_image)");
    println!("cargo::rerun-if-env-changed=STUBRT_IMAGE");
    if std::env::var_os("STUBRT_IMAGE").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=stubrt_image");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let dir = match arch.as_str() {
        "aarch64" => "aarch64",
        _ => "x86",
    };
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let script = std::path::Path::new(&manifest).join(format!("src/arch/{dir}/link.ld"));
    println!("cargo::rerun-if-changed={}", script.display());
    println!("cargo::metadata=link_script={}", script.display());
}
