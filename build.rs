// Generates the C header from the `#[no_mangle]` exports in src/ffi/ with cbindgen, into
// $OUT_DIR/omendb.h: a build never writes to the source tree. tests/header.rs fails when the
// committed include/omendb.h differs from it (`make header` updates the committed copy).

use std::path::Path;

#[allow(clippy::expect_used)] // a build script reports failure by panicking
fn main() {
    // The whole tree, not src/ffi/ alone: cbindgen reads every public item of the crate, and a
    // public constant outside src/ffi/ reached the header while a stale one passed the test.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // A soname as cargo-c gives it: 0.x releases may break the ABI at each minor version.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets the version");
        let soversion = if major == "0" { format!("0.{minor}") } else { major };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libomendb.so.{soversion}");
    }
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets CARGO_PKG_VERSION");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    generate(Path::new(&root), &version).write_to_file(Path::new(&out).join("omendb.h"));
}

/// The header for the crate at `root`, whose Cargo.toml version is `version`.
#[allow(clippy::expect_used)] // a build script reports failure by panicking
fn generate(root: &Path, version: &str) -> cbindgen::Bindings {
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    config.after_includes = Some(after_includes(version));
    cbindgen::Builder::new().with_crate(root).with_config(config).generate().expect("src/ffi/ must generate a header")
}

/// Macros that come from Cargo.toml rather than from Rust items, so they can never drift.
fn after_includes(version: &str) -> String {
    let mut parts = version.split(['.', '-']);
    let mut next = || parts.next().unwrap_or("0").to_string();
    let (major, minor, patch) = (next(), next(), next());
    format!(
        r#"
/** Version of the omendb this header was generated from; omen_version() gives the linked one. */
#define OMEN_VERSION_MAJOR {major}
#define OMEN_VERSION_MINOR {minor}
#define OMEN_VERSION_PATCH {patch}

/** Id written to result slots that hold no hit. */
#define OMEN_NO_ID UINT64_MAX

/** Marks calls whose status must be checked. */
#if defined(__GNUC__) || defined(__clang__)
#define OMEN_MUST_USE __attribute__((warn_unused_result))
#else
#define OMEN_MUST_USE
#endif
"#
    )
}
