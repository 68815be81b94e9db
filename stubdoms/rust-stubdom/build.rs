//! `STUBRT_IMAGE=1` builds the freestanding image: cfg `stubrt_image` and the runtime's
//! linker script for the target (`DEP_STUBRT_LINK_SCRIPT`, from the runtime's build script).
//! Without it the binary is a host stub that explains how to build the image.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(stubrt_image)");
    println!("cargo::rerun-if-env-changed=STUBRT_IMAGE");
    if std::env::var_os("STUBRT_IMAGE").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=stubrt_image");
        let script = std::env::var("DEP_STUBRT_LINK_SCRIPT")
            .expect("the stubrt dependency names its linker script");
        for arg in [
            "-nostartfiles",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--build-id=none",
            "-Wl,--gc-sections",
            "-Wl,--no-warn-rwx-segments",
        ] {
            println!("cargo::rustc-link-arg-bins={arg}");
        }
        println!("cargo::rustc-link-arg-bins=-T{script}");
    }
}
