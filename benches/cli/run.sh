#!/usr/bin/env bash
# The omendb tool's figures for README, side by side in one run:
#   1. import: `omendb import` (mapped file, batches logged and fsynced, checkpoint at the end)
#      against the library's own batch insert rate on the same data (`omendb bench`: one
#      insert_batch into an in-memory index), alternating, best of ROUNDS each;
#   2. bench: recall per ef against ../shared/bench/ann_peers.py on the same data and parameters
#      (builds on one thread, which is deterministic, so the two must agree);
#   3. backup: `omendb backup` of the imported database, then (benches/cli/backup_live.py) a full
#      and an incremental backup of it kept open, 1% more vectors inserted between them.
# Usage: benches/cli/run.sh NAME BASE QUERIES TRUTH METRIC DIM   (prints a report to stdout)
# RECALL=0 skips part 2 (two single-threaded builds).
set -euo pipefail
name=$1 base=$2 queries=$3 truth=$4 metric=$5 dim=$6
omendb=${OMENDB:-target/release/omendb}
python=${PYTHON:-.venv/bin/python}
rounds=${ROUNDS:-2}
work=${WORK:-build/cli-bench}
rm -rf "$work" && mkdir -p "$work"
# Prints fields of the JSON object on stdin: field FORMAT (a str.format over the object).
field() { $python -c 'import json, sys; print(sys.argv[1].format(**json.load(sys.stdin)))' "$1"; }
echo "# omendb tool on $name ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores)"

cli_metric=$metric; [ "$metric" = cos ] && cli_metric=cosine
for round in $(seq "$rounds"); do
  "$omendb" bench --base "$base" --queries "$queries" --metric "$cli_metric" --ef 10 --json \
    | field 'library insert_batch  {build_vectors_per_s:9.0f} vectors/s'
  rm -rf "$work/db"
  "$omendb" create "$work/db" --dim "$dim" --metric "$cli_metric"
  "$omendb" import "$work/db" "$base" --json \
    | field 'omendb import         {vectors_per_s:9.0f} vectors/s ({seconds:.1f} s)'
done

if [ "${RECALL:-1}" = 1 ]; then
echo "## recall@10 per ef, one build thread: omendb bench, then ann_peers.py"
"$omendb" bench --base "$base" --queries "$queries" --truth "$truth" --metric "$cli_metric" \
  --ef 10,20,40,80,160 --threads 1 --json \
  | $python -c 'import json, sys; r = json.load(sys.stdin); print("omendb bench ", *("ef{ef}={recall:.4f}".format(**x) for x in r["results"]))'
prefix=${base%_base.*}
$python ../shared/bench/ann_peers.py "$prefix" --metric "$metric" --omendb python/ --peers "" \
  --efs 10,20,40,80,160 --threads 1 | tail -1 \
  | $python -c 'import sys; f = sys.stdin.read().split(); print("ann_peers.py ", *("ef{}={}".format(e, c.split("/")[0]) for e, c in zip((10, 20, 40, 80, 160), f[4:])))'
fi

echo "## backup"
"$omendb" backup "$work/db" "$work/full" --json | field 'full         {seconds:.2f} s, {bytes_copied} bytes copied'
# Incremental: the database stays open in one process (as an application keeps it), so no
# checkpoint rewrites the growing snapshot between the two backups.
$python benches/cli/backup_live.py "$work/db" "$work/live"
rm -rf "$work"
