#!/usr/bin/env bash
# `osmem dump --format=json` of the demo's dumps: the JSON holds every block
# line of every dump, and the demo's last dump holds each status.
#   json_test.sh PYTHON OSMEM_TOOL DEMO WORK_DIR
set -euo pipefail
python=$1 tool=$2 demo=$3 work=$4
"$demo" >"$work/demo.dump"
"$tool" dump --format=json "$work/demo.dump" >"$work/demo.json"
blocks=$(grep -c '^block ' "$work/demo.dump")
dumps=$(grep -c '^heap ' "$work/demo.dump")
"$python" - "$work/demo.json" "$blocks" "$dumps" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
blocks, dumps = int(sys.argv[2]), int(sys.argv[3])
snaps = doc["snapshots"]
got = sum(len(s["blocks"]) for s in snaps)
print(f"{len(snaps)} dumps, {got} blocks in JSON; the text has {dumps} and {blocks}")
assert len(snaps) == dumps and got == blocks
for s in snaps:
    assert s["summary"]["blocks"] == len(s["blocks"])
    assert all(b["user"] == b["header"] + 32 for b in s["blocks"])
statuses = {b["status"] for b in snaps[-1]["blocks"]}
print("statuses in the last dump:", sorted(statuses))
assert statuses == {"alloc", "free", "mapped"}
PY
