//! include/omendb.h must be exactly what src/ffi/ generates (build.rs writes that to $OUT_DIR).
//! `make header` (OMENDB_UPDATE_HEADER=1) copies the generated header over the committed one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn committed_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include/omendb.h")
}

#[test]
fn committed_header_is_what_the_source_generates() {
    let generated = std::fs::read_to_string(Path::new(env!("OUT_DIR")).join("omendb.h")).unwrap();
    if std::env::var_os("OMENDB_UPDATE_HEADER").is_some() {
        std::fs::write(committed_path(), &generated).unwrap();
        println!("updated {}", committed_path().display());
        return;
    }
    let committed = std::fs::read_to_string(committed_path()).expect("include/omendb.h exists");
    if committed != generated {
        let first = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let line = first.unwrap_or(committed.lines().count().min(generated.lines().count()));
        panic!(
            "include/omendb.h differs from what src/ffi/ generates (first at line {}): run `make header` and commit it\n\
             committed: {:?}\ngenerated: {:?}",
            line + 1,
            committed.lines().nth(line),
            generated.lines().nth(line)
        );
    }
}

#[test]
fn header_macros_match_the_crate() {
    let header = std::fs::read_to_string(committed_path()).unwrap();
    let abi = format!("#define OMEN_ABI_VERSION {}", omendb::ffi::OMEN_ABI_VERSION);
    assert!(header.contains(&abi), "missing `{abi}`");
    assert_eq!(omendb::ffi::omen_abi_version(), omendb::ffi::OMEN_ABI_VERSION);
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    assert!(header.contains(&format!("#define OMEN_VERSION_MAJOR {major}")));
    // SAFETY: omen_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(omendb::ffi::omen_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
