//! The `omendb` binary end to end: create, import, info, query, get, delete, compact, and exit
//! codes for bad arguments and refused commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ok, omendb, scratch};

use std::path::Path;
use std::process::Command;

/// `rows` vectors of `dim` floats as .fvecs.
fn write_fvecs(path: &Path, rows: &[Vec<f32>]) {
    let mut bytes = Vec::new();
    for row in rows {
        bytes.extend((row.len() as u32).to_le_bytes());
        for x in row {
            bytes.extend(x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn create_import_query_get_delete_compact_info() {
    let dir = scratch("flow");
    let db = dir.join("db");
    let db = db.to_str().unwrap();
    let rows: Vec<Vec<f32>> = (0..500).map(|i| (0..8).map(|j| ((i * 8 + j) as f32 * 0.37).sin()).collect()).collect();
    let file = dir.join("base.fvecs");
    write_fvecs(&file, &rows);
    let file = file.to_str().unwrap();

    ok(&["create", db, "--dim", "8", "--metric", "l2"]);
    ok(&["import", db, file, "--start-id", "1000", "--batch", "128"]);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", db, "--json"])).unwrap();
    assert_eq!(info["vectors"], 500);
    assert_eq!(info["dim"], 8);
    assert_eq!(info["metric"], "l2");

    // Resuming skips what is there; without --skip-existing the ids are refused.
    assert_eq!(omendb(&["import", db, file, "--start-id", "1000"]).status.code(), Some(1));
    ok(&["import", db, file, "--start-id", "1000", "--skip-existing"]);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", db, "--json"])).unwrap();
    assert_eq!(info["vectors"], 500);

    // Each stored vector finds itself first, from a file or from JSON lines on stdin.
    let found = ok(&["query", db, "--query", file, "-k", "3", "--json"]);
    let lines: Vec<serde_json::Value> = found.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 500);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["ids"][0], 1000 + i as u64, "query {i}");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_omendb"))
        .args(["query", db, "-k", "1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{}", serde_json::to_string(&rows[7]).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("1007:0.000000"));

    // A filter file limits the results.
    let allowed = dir.join("allowed.txt");
    std::fs::write(&allowed, "1002\n1300\n").unwrap();
    let filtered = ok(&["query", db, "--query", file, "-k", "5", "--json", "--filter-ids", allowed.to_str().unwrap()]);
    for line in filtered.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ids: Vec<u64> = v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.iter().all(|id| *id == 1002 || *id == 1300));
    }

    let got: serde_json::Value = serde_json::from_str(ok(&["get", db, "1003", "--json"]).trim()).unwrap();
    let stored: Vec<f32> = got["vector"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(stored, rows[3]);
    assert!(ok(&["get", db, "7"]).contains("absent"));

    ok(&["delete", db, "1003", "1004", "99999"]);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", db, "--json"])).unwrap();
    assert_eq!(info["vectors"], 498);
    ok(&["compact", db]);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", db, "--json"])).unwrap();
    assert_eq!((info["vectors"].as_u64(), info["deleted"].as_u64()), (Some(498), Some(0)));
    assert!(ok(&["get", db, "1003"]).contains("absent"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_exit_2_and_refused_commands_exit_1() {
    let dir = scratch("errors");
    assert_eq!(omendb(&["create"]).status.code(), Some(2));
    assert_eq!(omendb(&["create", "x", "--dim", "4", "--metric", "hamming"]).status.code(), Some(2));
    let missing = dir.join("missing");
    let out = omendb(&["info", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
    let db = dir.join("db");
    ok(&["create", db.to_str().unwrap(), "--dim", "4"]);
    assert_eq!(omendb(&["create", db.to_str().unwrap(), "--dim", "4"]).status.code(), Some(1), "exists");
    let wrong = dir.join("wrong.fvecs");
    write_fvecs(&wrong, &[vec![1.0; 3]]);
    assert_eq!(omendb(&["import", db.to_str().unwrap(), wrong.to_str().unwrap()]).status.code(), Some(1), "dimension");
    std::fs::write(dir.join("v.csv"), "1,2").unwrap();
    assert_eq!(omendb(&["import", db.to_str().unwrap(), dir.join("v.csv").to_str().unwrap()]).status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_reports_recall_against_exact_neighbours() {
    let report: serde_json::Value =
        serde_json::from_str(&ok(&["bench", "--generate", "3000,16", "--ef", "16,64", "--json"])).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for row in results {
        assert!(row["recall"].as_f64().unwrap() >= 0.95, "{row}");
        assert!(row["qps_one_thread"].as_f64().unwrap() > 0.0 && row["p99_us"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(omendb(&["bench", "--generate", "3000"]).status.code(), Some(1));
}
