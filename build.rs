//! Build script: links the system libsrtp (Debian `libsrtp2-dev`) only when
//! the `libsrtp` feature is on, for the SRTP cross-check test
//! (`tests/srtp_libsrtp.rs`). Nothing else is built or linked here.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_LIBSRTP").is_some() {
        println!("cargo:rustc-link-lib=srtp2");
    }
}
