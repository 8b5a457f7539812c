#!/usr/bin/env bash
# The main job in one command: install what is missing (tools/install.sh skips what is there),
# then generate the embedded dataset, train and evaluate HRNet and ResNet on three tasks, and
# write work_dirs/main_job/results.{md,json,png}. Options go to tools/main_job.py (--seeds 3,
# --scale 5, --data-root DIR).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG="${TMPDIR:-/tmp}/hrnet_mm_install.log"
echo "checking the install (tools/install.sh adds what is missing; log: $LOG)"
bash "$ROOT/tools/install.sh" > "$LOG" 2>&1 || { echo "install failed; see $LOG" >&2; exit 1; }
cd "$ROOT"
exec "$ROOT/.venv/bin/python" tools/main_job.py "$@"
