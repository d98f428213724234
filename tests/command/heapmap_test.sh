#!/usr/bin/env bash
# Runs the demo on the real library, draws its last dump, and checks the
# picture (check_heapmap.py).
#   heapmap_test.sh OSMEM_TOOL DEMO WORK_DIR
set -euo pipefail
tool=$1 demo=$2 work=$3
"$demo" >"$work/demo.dump"
rm -f "$work/heapmap.png"
"$tool" heapmap "$work/demo.dump" -o "$work/heapmap.png"
python3 "$(dirname "$0")/check_heapmap.py" "$work/heapmap.png" "$work/demo.dump"
