//! One cfg for every x86 kernel: `gramfit_x86` is set on x86-64 unless the
//! build asks for the portable code only — what a non-x86 target compiles,
//! linted by .ci/run as a stand-in for an aarch64 build — with
//! `GRAMFIT_PORTABLE_ONLY=1` (only this crate is rebuilt) or `RUSTFLAGS="--cfg
//! gramfit_portable_only"`.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(gramfit_x86)");
    println!("cargo::rustc-check-cfg=cfg(gramfit_portable_only)");
    println!("cargo::rerun-if-env-changed=GRAMFIT_PORTABLE_ONLY");
    println!("cargo::rerun-if-changed=build.rs");
    let x86 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    let portable_only = std::env::var_os("CARGO_CFG_GRAMFIT_PORTABLE_ONLY").is_some()
        || std::env::var("GRAMFIT_PORTABLE_ONLY").is_ok_and(|v| v == "1");
    if x86 && !portable_only {
        println!("cargo::rustc-cfg=gramfit_x86");
    }
}
