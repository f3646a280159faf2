//! Opens a database in which one file (manifest, segment, growing snapshot or log, chosen by the
//! first input byte) holds the rest of the input. Any outcome but a crash, a hang or a huge
//! allocation is fine: the readers must turn every input into a database or an error.
//!
//! Run: `cargo +nightly fuzz run open_files` (see `make fuzz`); seeds come from a real database.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use omendb::{Index, Metric, Options};

const FILES: [&str; 4] = ["MANIFEST", "segment-0000000000.omen", "growing-", "wal-"];

fn options() -> Options {
    let mut options = Options::new(4, Metric::L2);
    options.m = 4;
    options.ef_construction = 16;
    options.segment_capacity = 64;
    options.threads = 1;
    options
}

/// A small database with every kind of file, made once per fuzzing process. Its index stays
/// open (never closed, so the log keeps its record; held here, so no leak is reported).
fn template() -> &'static PathBuf {
    static TEMPLATE: OnceLock<(PathBuf, Index)> = OnceLock::new();
    let (dir, _index) = TEMPLATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("omendb-fuzz-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let index = Index::open(&dir, options()).expect("template");
        for b in 0..10u64 {
            let ids: Vec<u64> = (b * 10..b * 10 + 10).collect();
            let vectors: Vec<f32> = (0..40).map(|i| ((b * 40 + i) % 17) as f32).collect();
            index.insert_batch(&ids, &vectors).expect("insert");
        }
        index.flush().expect("flush");
        let vectors = [1.0f32, 2.0, 3.0, 4.0];
        index.insert_batch(&[1000], &vectors).expect("insert");
        (dir, index)
    });
    dir
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, contents)) = data.split_first() else { return };
    let dir = std::env::temp_dir().join(format!("omendb-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let prefix = FILES[choice as usize % FILES.len()];
    for entry in std::fs::read_dir(template()).expect("template").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = dir.join(&name);
        if name.starts_with(prefix) {
            std::fs::write(target, contents).expect("write");
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
    let verify = choice & 0x80 == 0;
    if let Ok(index) = Index::open(&dir, Options { verify, ..options() }) {
        let _ = index.search(&[1.0, 2.0, 3.0, 4.0], 5, 0);
        let _ = index.len();
    }
});
