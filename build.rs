//! Writes include/omendb.h from the `#[no_mangle]` exports in src/ffi/ with cbindgen.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml is valid");
    config.after_includes = Some(after_includes());
    let bindings = cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("src/ffi/ must generate a header");
    // Writes only when the content changed, so an unchanged header keeps its timestamp.
    bindings.write_to_file(root.join("include/omendb.h"));
}

/// Macros that come from Cargo.toml rather than from Rust items, so they can never drift.
fn after_includes() -> String {
    let version = |part: &str| std::env::var(format!("CARGO_PKG_VERSION_{part}")).expect("cargo sets the version");
    format!(
        r#"
/** Version of the omendb this header was generated from; omen_version() gives the linked one. */
#define OMEN_VERSION_MAJOR {}
#define OMEN_VERSION_MINOR {}
#define OMEN_VERSION_PATCH {}

/** Id written to result slots that hold no hit. */
#define OMEN_NO_ID UINT64_MAX

/** Marks calls whose status must be checked. */
#if defined(__GNUC__) || defined(__clang__)
#define OMEN_MUST_USE __attribute__((warn_unused_result))
#else
#define OMEN_MUST_USE
#endif
"#,
        version("MAJOR"),
        version("MINOR"),
        version("PATCH")
    )
}
