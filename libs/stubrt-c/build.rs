//! Compiles the C part of the API (printf family: Rust cannot define variadic functions on
//! stable) into the library. `STUBRT_IMAGE=1` selects freestanding flags and cfg
//! `stubrt_image`; host builds compile the same C for the unit tests.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(stubrt_image)");
    println!("cargo::rerun-if-env-changed=STUBRT_IMAGE");
    println!("cargo::rerun-if-changed=csrc/printf.c");
    println!("cargo::rerun-if-changed=include/stubrt.h");
    let image = std::env::var_os("STUBRT_IMAGE").is_some_and(|v| v == "1");
    let mut build = cc::Build::new();
    build
        .file("csrc/printf.c")
        .include("include")
        .warnings(true)
        .extra_warnings(true);
    if image {
        println!("cargo::rustc-cfg=stubrt_image");
        for flag in [
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-pic",
            "-fno-builtin",
        ] {
            build.flag(flag);
        }
        let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        if arch == "x86_64" || arch == "x86" {
            build.flag("-mno-red-zone");
        }
    }
    build.compile("stubrt_printf");
}
