//! The import graph of `src/`: every module imports only modules below it in `LAYERS`, so the
//! graph is acyclic with the C boundary on top and kernels and memory at the bottom, and no
//! module but `lib.rs` names the crate root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules of `src/`, highest first. A module may import those after it.
const LAYERS: [&str; 10] =
    ["ffi", "index", "segment", "hnsw", "storage", "options", "quant", "distance", "memory", "error"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// (importing module, imported module, file) for every `crate::x` a file names, and the files
/// that name the crate root itself (`crate::{..}` or `crate::Item`).
fn imports() -> (Vec<(String, String, PathBuf)>, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let (mut edges, mut root_users) = (Vec::new(), Vec::new());
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        if first == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let preceding = text[..at].chars().next_back();
            if preceding.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `mycrate::`
            }
            let name: String = text[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if name.is_empty() || name.starts_with(|c: char| c.is_uppercase()) {
                root_users.push(file.clone());
            } else if name != first {
                edges.push((first.clone(), name, file.clone()));
            }
        }
    }
    (edges, root_users)
}

#[test]
fn no_module_imports_the_crate_root() {
    let (_, root_users) = imports();
    assert!(root_users.is_empty(), "these files import from the crate root: {root_users:?}");
}

#[test]
fn every_import_points_down_the_layers() {
    let (edges, _) = imports();
    let rank = |module: &str| LAYERS.iter().position(|m| *m == module);
    let mut seen = BTreeSet::new();
    for (from, to, file) in &edges {
        let (Some(from_rank), Some(to_rank)) = (rank(from), rank(to)) else {
            panic!("{}: module `{from}` or `{to}` is not in LAYERS; place it there", file.display());
        };
        assert!(to_rank > from_rank, "{}: `{from}` imports `{to}`, which is above it in LAYERS", file.display());
        seen.insert((from.clone(), to.clone()));
    }
    // The check must have something to check: the engine's own spine is there.
    for edge in [("ffi", "index"), ("index", "segment"), ("segment", "hnsw"), ("hnsw", "storage")] {
        assert!(seen.contains(&(edge.0.to_string(), edge.1.to_string())), "expected {edge:?} among {seen:?}");
    }
}

#[test]
fn layers_name_every_top_level_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("pub ").strip_prefix("mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert_eq!(declared, LAYERS.into_iter().collect(), "lib.rs declares other modules than LAYERS lists");
}
