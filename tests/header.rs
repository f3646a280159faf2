//! include/omendb.h must be exactly what src/ffi/ generates, and committed as such.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

mod build_script {
    include!("../build.rs");

    pub fn header(root: &Path) -> String {
        let mut out = Vec::new();
        generate(root, env!("CARGO_PKG_VERSION")).write(&mut out);
        String::from_utf8(out).expect("cbindgen writes UTF-8")
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_on_disk_matches_the_source() {
    let on_disk = std::fs::read_to_string(root().join("include/omendb.h")).expect("include/omendb.h exists");
    let generated = build_script::header(root());
    assert!(on_disk == generated, "include/omendb.h is stale: rebuild (cargo build) and commit it");
}

#[test]
fn committed_header_matches_the_source() {
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(root()).output();
    match git(&["rev-parse", "--is-inside-work-tree"]) {
        Ok(out) if out.status.success() => {}
        _ => {
            println!("SKIPPED: not a git checkout, so there is no committed header to compare");
            return;
        }
    }
    let committed = git(&["show", ":include/omendb.h"]).expect("git runs");
    assert!(committed.status.success(), "include/omendb.h is not in git: add it");
    let generated = build_script::header(root());
    assert!(
        committed.stdout == generated.as_bytes(),
        "the staged/committed include/omendb.h differs from what src/ffi/ generates: `git add include/omendb.h`"
    );
}

#[test]
fn header_macros_match_the_crate() {
    let header = std::fs::read_to_string(root().join("include/omendb.h")).unwrap();
    let abi = format!("#define OMEN_ABI_VERSION {}", omendb::ffi::OMEN_ABI_VERSION);
    assert!(header.contains(&abi), "missing `{abi}`");
    assert_eq!(omendb::ffi::omen_abi_version(), omendb::ffi::OMEN_ABI_VERSION);
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    assert!(header.contains(&format!("#define OMEN_VERSION_MAJOR {major}")));
    // SAFETY: omen_version returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(omendb::ffi::omen_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
