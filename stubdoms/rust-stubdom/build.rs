//! `STUBRT_IMAGE=1` builds the freestanding image: cfg `stubrt_image` and the runtime's
//! linker script. Without it the binary is a host stub that explains how to build the image.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(stubrt_image)");
    println!("cargo::rerun-if-env-changed=STUBRT_IMAGE");
    if std::env::var_os("STUBRT_IMAGE").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=stubrt_image");
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        let script = std::path::Path::new(&dir).join("../../libs/stubrt/link.ld");
        println!("cargo::rerun-if-changed={}", script.display());
        for arg in [
            "-nostartfiles",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--build-id=none",
            "-Wl,--gc-sections",
        ] {
            println!("cargo::rustc-link-arg-bins={arg}");
        }
        println!("cargo::rustc-link-arg-bins=-T{}", script.display());
    }
}
