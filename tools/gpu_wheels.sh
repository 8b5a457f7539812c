#!/usr/bin/env bash
# Fetch, on a machine with network, what tools/install.sh needs on an offline GPU machine whose
# environment already has torch (Python 3.12, torch 2.11 + CUDA 13.0, torchvision, timm, numpy,
# scipy, matplotlib, pandas, opencv-python-headless, pytest ...): the pinned OpenMMLab stack and
# the packages such an environment lacks, as Python 3.12 wheels, and mmcv / xtcocotools as source.
#
#   bash tools/gpu_wheels.sh [DIR] [--mmcv-cuda]   # default .whl (ignored by git), 13 MB
#
# There, install with pip's offline switches:
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/.whl bash tools/install.sh /path/to/that/environment
# (tools/gpu_check.sh does this itself).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=$ROOT/.whl MMCV_CUDA=0
for arg in "$@"; do
  case $arg in
    --mmcv-cuda) MMCV_CUDA=1 ;;
    *) DIR=$arg ;;
  esac
done
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
        prettytable wcwidth ftfy mmpretrain einops mat4py modelindex importlib_metadata zipp
        pytest-xdist execnet)
SPECS=()
for name in "${WHEELS[@]}"; do SPECS+=("$(pin "$name")"); done
# mmcv 2.1.0's setup.py imports pkg_resources, which setuptools 81 removed.
SETUPTOOLS="setuptools==80.10.2"
SPECS+=("$SETUPTOOLS")
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  PLATFORMS+=(--platform "$p")
done
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$PYVER" --implementation cp "${PLATFORMS[@]}" -d "$DIR" "${SPECS[@]}"

# Source packages, built there against its torch / numpy (mmcv's setup.py imports torch).
"$PY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
  --no-build-isolation -d "$DIR" "$(pin mmcv)" "$(pin xtcocotools)"

# --mmcv-cuda: also build mmcv's CUDA ops here, for the GPU machine, into DIR/cuda;
# tools/gpu_check.sh then installs it instead of building there, which saves ~5 minutes of GPU
# time (if it does not work there, tools/install.sh builds from source after all). Needs
# nvcc 13.x, TORCH_CUDA_ARCH_LIST (default 9.0: H100/H200) and a Python 3.12 with that
# machine's torch (2.11, CUDA 13.0): GPU_ENV_PYTHON, or else one made here once, in
# GPU_ENV_DIR (default ~/.cache/hrnet_mm/gpu-env-py3.12-torch2.11.0): a venv of python3.12
# (GPU_ENV_BASE_PYTHON) with torch 2.11.0 from PyPI (the +cu130 build, with CUDA 13's headers
# in its nvidia wheels; 4.6 GB, 1.6 minutes here on 2026-11-27). Slow on 2 cores: 28-49 minutes here
# (2026-11-26 and -27, 136 compile units); the wheel is 6 MB.
gpu_env() {  # -> the Python of a venv with the GPU machine's torch, made once
  local torch_version=${GPU_TORCH_VERSION:-2.11.0}
  local env=${GPU_ENV_DIR:-$HOME/.cache/hrnet_mm/gpu-env-py$PYVER-torch$torch_version}
  local base=${GPU_ENV_BASE_PYTHON:-}
  local check="import torch, wheel, sys
sys.exit(torch.__version__.split('+')[0] != '$torch_version')"
  if ! "$env/bin/python" -c "$check" 2>/dev/null; then
    if [ -z "$base" ]; then  # python3.12 on the PATH, or a pyenv one (its shim may not run)
      for candidate in "python$PYVER" \
          "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$PYVER"*/bin/python"$PYVER"; do
        if "$candidate" -c '' 2>/dev/null; then base=$candidate; break; fi
      done
    fi
    [ -n "$base" ] || {
      echo "gpu_wheels: no python$PYVER here to make the GPU environment with" \
        "(set GPU_ENV_BASE_PYTHON or GPU_ENV_PYTHON)" >&2
      exit 1; }
    echo "gpu_wheels: making $env (python $PYVER, torch $torch_version; once)" >&2
    "$base" -m venv "$env" && "$env/bin/python" -m pip install -q --disable-pip-version-check \
      "torch==$torch_version" "$SETUPTOOLS" wheel >&2 || {
      echo "gpu_wheels: could not make $env (pip's messages above)" >&2; exit 1; }
  fi
  echo "$env/bin/python"
}

if [ "$MMCV_CUDA" = 1 ]; then
  if [ -n "${GPU_ENV_PYTHON:-}" ]; then GPY=$GPU_ENV_PYTHON; else GPY=$(gpu_env); fi
  SRC=$(mktemp -d)
  trap 'rm -rf "$SRC"' EXIT
  tar -xzf "$DIR"/mmcv-*.tar.gz -C "$SRC"
  # The toolkit as nvcc itself reports it: torch guesses CUDA_HOME from nvcc's folder, which
  # is wrong for a wrapper script such as /usr/local/bin/nvcc.
  if [ ! -f "${CUDA_HOME:-/nonexistent}/include/cuda_runtime_api.h" ]; then
    CUDA_HOME=$(readlink -f "$(nvcc -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 |
                                sed -n 's/^#\$ TOP=//p' | head -n 1)")
  fi
  export CUDA_HOME
  # torch's CUDA headers include cusparse.h / cublas_v2.h, which a toolkit with only the
  # compiler lacks; torch's own nvidia wheels carry them. Only the headers the toolkit lacks
  # are added (the wheels' cuda_runtime_api.h is incomplete and must not shadow the toolkit's).
  NV_INCLUDE=$("$GPY" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "include"))' 2>/dev/null || true)
  if [ -d "$NV_INCLUDE" ]; then
    mkdir -p "$SRC/include"
    for f in "$NV_INCLUDE"/*; do
      [ -e "$CUDA_HOME/include/$(basename "$f")" ] || ln -s "$f" "$SRC/include/"
    done
    export CPATH=$SRC/include${CPATH:+:$CPATH}
  fi
  (cd "$SRC"/mmcv-* && MMCV_WITH_OPS=1 FORCE_CUDA=1 \
     TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=$(nproc) \
     "$GPY" setup.py -q bdist_wheel -d "$SRC/dist")
  # mmcv compiles with -g: the debug sections are 3/4 of the extension (a 38 MB wheel, 6 MB
  # without them), and the wheel travels to the GPU machine within a 64 MiB limit.
  "$GPY" -m wheel unpack "$SRC"/dist/mmcv-*.whl -d "$SRC/unpacked" > /dev/null
  find "$SRC/unpacked" -name '*.so' -exec strip --strip-debug {} +
  mkdir -p "$DIR/cuda"
  "$GPY" -m wheel pack "$SRC"/unpacked/mmcv-* -d "$DIR/cuda" > /dev/null
  ls -l "$DIR"/cuda/mmcv-*.whl
fi

echo "gpu_wheels: $(find "$DIR" -type f | wc -l) files, $(du -sh "$DIR" | cut -f1) in $DIR"
