//! `STUBRT_IMAGE=1` selects the freestanding image build: boot code, panic handler, global
//! allocator and the C memory functions are compiled in only then, so host builds
//! (`cargo test --workspace`, clippy) keep working with the standard library.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(stubrt_image)");
    println!("cargo::rerun-if-env-changed=STUBRT_IMAGE");
    if std::env::var_os("STUBRT_IMAGE").is_some_and(|v| v == "1") {
        println!("cargo::rustc-cfg=stubrt_image");
    }
}
