#!/usr/bin/env bash
# The main job in one command: install what is missing (tools/install.sh skips what is there),
# then generate the embedded dataset, train and evaluate HRNet and ResNet on three tasks, and
# write work_dirs/main_job/results.{md,json,png}. Options go to tools/main_job.py (--scale 5).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/install.sh" > "${TMPDIR:-/tmp}/hrnet_mm_install.log" 2>&1 || {
  echo "install failed; see ${TMPDIR:-/tmp}/hrnet_mm_install.log" >&2; exit 1; }
cd "$ROOT"
exec "$ROOT/.venv/bin/python" tools/main_job.py "$@"
