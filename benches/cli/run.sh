#!/usr/bin/env bash
# The omendb tool's figures for README, side by side in one run:
#   1. import: `omendb import` (mapped file, batches logged and fsynced, checkpoint at the end)
#      against the library's own batch insert rate on the same data (`omendb bench`: one
#      insert_batch into an in-memory index), alternating, best of ROUNDS each;
#   2. bench: recall per ef against ../shared/bench/ann_peers.py on the same data and parameters
#      (builds on one thread, which is deterministic, so the two must agree);
#   3. backup: a full backup of the imported database, then an incremental one after 1% more
#      vectors: seconds and bytes copied.
# Usage: benches/cli/run.sh NAME BASE QUERIES TRUTH METRIC DIM   (prints a report to stdout)
# RECALL=0 skips part 2 (two single-threaded builds).
set -euo pipefail
name=$1 base=$2 queries=$3 truth=$4 metric=$5 dim=$6
omendb=${OMENDB:-target/release/omendb}
python=${PYTHON:-.venv/bin/python}
rounds=${ROUNDS:-2}
work=${WORK:-build/cli-bench}
rm -rf "$work" && mkdir -p "$work"
echo "# omendb tool on $name ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores)"

cli_metric=$metric; [ "$metric" = cos ] && cli_metric=cosine
for round in $(seq "$rounds"); do
  "$omendb" bench --base "$base" --queries "$queries" --metric "$cli_metric" --ef 10 --json \
    | $python -c 'import json,sys; r=json.load(sys.stdin); print(f"library insert_batch  {r[\"build_vectors_per_s\"]:9.0f} vectors/s")'
  rm -rf "$work/db"
  "$omendb" create "$work/db" --dim "$dim" --metric "$cli_metric"
  "$omendb" import "$work/db" "$base" --json \
    | $python -c 'import json,sys; r=json.load(sys.stdin); print(f"omendb import         {r[\"vectors_per_s\"]:9.0f} vectors/s ({r[\"seconds\"]:.1f} s)")'
done

if [ "${RECALL:-1}" = 1 ]; then
echo "## recall@10 per ef, one build thread: omendb bench, then ann_peers.py"
"$omendb" bench --base "$base" --queries "$queries" --truth "$truth" --metric "$cli_metric" \
  --ef 10,20,40,80,160 --threads 1 --json \
  | $python -c 'import json,sys; r=json.load(sys.stdin); print("omendb bench ", " ".join(f"ef{x[\"ef\"]}={x[\"recall\"]:.4f}" for x in r["results"]))'
prefix=${base%_base.*}
$python ../shared/bench/ann_peers.py "$prefix" --metric "$metric" --omendb python/ --peers "" \
  --efs 10,20,40,80,160 --threads 1 | tail -1 \
  | $python -c 'import sys; f=sys.stdin.read().split(); print("ann_peers.py ", " ".join(f"ef{e}={c.split(\"/\")[0]}" for e, c in zip((10,20,40,80,160), f[4:])))'
fi

echo "## backup"
"$omendb" backup "$work/db" "$work/full" --json \
  | $python -c 'import json,sys; r=json.load(sys.stdin); print(f"full         {r[\"seconds\"]:.2f} s, {r[\"bytes_copied\"]} bytes copied")'
rows=$("$omendb" info "$work/db" --json | $python -c 'import json,sys; print(json.load(sys.stdin)["vectors"])')
extra=$((rows / 100))
$python - "$queries" "$work/extra.npy" "$extra" "$dim" <<'PY'
import sys, numpy as np
source, out, n, dim = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
raw = np.fromfile(source, dtype=np.int32).reshape(-1, dim + 1)[:, 1:].view(np.float32)
np.save(out, np.resize(raw, (n, dim)) + np.float32(0.001))
PY
"$omendb" import "$work/db" "$work/extra.npy" --start-id "$rows" --json >/dev/null
"$omendb" backup "$work/db" "$work/next" --incremental "$work/full" --json \
  | $python -c 'import json,sys; r=json.load(sys.stdin); print(f"incremental  {r[\"seconds\"]:.2f} s, {r[\"bytes_copied\"]} bytes copied, {r[\"bytes_linked\"]} linked")'
"$omendb" verify "$work/next" >/dev/null 2>&1 && echo "verify of the incremental backup: sound"
rm -rf "$work"
