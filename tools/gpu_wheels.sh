#!/usr/bin/env bash
# Fetch, on a machine with network, what tools/install.sh needs on an offline GPU machine whose
# environment already has torch (Python 3.12, torch 2.11 + CUDA 13.0, torchvision, timm, numpy,
# scipy, matplotlib, pandas, opencv-python-headless, pytest ...): the pinned OpenMMLab stack and
# the packages such an environment lacks, as Python 3.12 wheels, and mmcv / xtcocotools as source.
#
#   bash tools/gpu_wheels.sh [DIR]      # default .whl (ignored by git), about 13 MB
#
# There, install with pip's offline switches:
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/.whl bash tools/install.sh /path/to/that/environment
# (tools/gpu_check.sh does this itself).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-$ROOT/.whl}
PY=${PY:-$ROOT/.venv/bin/python}
PYVER=${GPU_PYTHON_VERSION:-3.12}
CONSTRAINTS="$ROOT/requirements/constraints.txt"
mkdir -p "$DIR"

pin() {  # NAME -> NAME==VERSION from the constraints (the tested version)
  local v
  v=$(grep -i -E "^$1==" "$CONSTRAINTS" | head -n1 | cut -d= -f3)
  [ -n "$v" ] || { echo "gpu_wheels: $1 is not pinned in $CONSTRAINTS" >&2; exit 1; }
  echo "$1==$v"
}

# Wheels for the GPU machine's Python (pure ones and manylinux builds).
WHEELS=(mmengine mmdet mmsegmentation mmpose openmim model-index ordered-set addict yapf
        platformdirs termcolor terminaltables pycocotools shapely json-tricks munkres
        prettytable wcwidth ftfy)
SPECS=()
for name in "${WHEELS[@]}"; do SPECS+=("$(pin "$name")"); done
# mmcv 2.1.0's setup.py imports pkg_resources, which setuptools 81 removed.
SPECS+=("setuptools==80.10.2")
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  PLATFORMS+=(--platform "$p")
done
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PYVER" --implementation cp "${PLATFORMS[@]}" -d "$DIR" "${SPECS[@]}"

# Source packages, built there against its torch / numpy (mmcv's setup.py imports torch).
"$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
  --no-build-isolation -d "$DIR" "$(pin mmcv)" "$(pin xtcocotools)"

echo "gpu_wheels: $(ls "$DIR" | wc -l) files, $(du -sh "$DIR" | cut -f1) in $DIR"
