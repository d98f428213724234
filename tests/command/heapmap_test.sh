#!/usr/bin/env bash
# Runs the demo on the real library, draws its last dump, and checks the
# picture (check_heapmap.py).
#   heapmap_test.sh PYTHON OSMEM_TOOL DEMO WORK_DIR
set -euo pipefail
python=$1 tool=$2 demo=$3 work=$4
"$demo" >"$work/demo.dump"
rm -f "$work/heapmap.png"
"$tool" heapmap "$work/demo.dump" -o "$work/heapmap.png"
"$python" "$(dirname "$0")/check_heapmap.py" "$work/heapmap.png" "$work/demo.dump"
