#!/usr/bin/env bash
# Install hrnet_mm and the pinned OpenMMLab stack (mmdet, mmseg, mmpose, mmpretrain) into a
# virtual environment.
#
#   bash tools/install.sh            # into .venv at the repository root
#   bash tools/install.sh /path/venv # or anywhere else (HRNET_MM_VENV works too)
#
#   bash tools/install.sh /opt/env   # into an existing environment: its torch is kept
#   bash tools/install.sh /usr/bin/python3   # into that interpreter's environment, alike
#
# Re-running is cheap: when everything is installed as pinned (tools/pins.py), nothing is
# installed, and the stack is only checked (seconds); when only mmcv's ops (CPU ops where a GPU
# is now seen) or xtcocotools are not as needed, only they are installed.
# On a machine where torch sees a GPU, mmcv is built with its CUDA ops for that GPU (nvcc of
# torch's CUDA version is needed; FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 builds them without one).
# Environment: PYTHON (default python3.11), HRNET_MM_WHEELS (prebuilt CPU wheels, default
# ../shared/wheels), HRNET_MM_MMCV_WHEEL (an mmcv wheel with CUDA ops built for this torch and
# GPU, instead of the build), MMCV_BUILD_JOBS (parallel compile jobs for the mmcv source build).
# Offline, pip's own PIP_NO_INDEX=1 PIP_FIND_LINKS=<folder of wheels and sdists> apply.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-${HRNET_MM_VENV:-$ROOT/.venv}}
PYTHON=${PYTHON:-python3.11}
WHEELS=${HRNET_MM_WHEELS:-$ROOT/../shared/wheels}
MMCV_VERSION=2.1.0
XTCOCOTOOLS_VERSION=1.14.3

step() { printf '\n[install] %s\n' "$*"; }

if [ -f "$VENV" ] && [ -x "$VENV" ]; then
  PY=$VENV  # an interpreter: install into its environment (a system Python, an image's)
elif [ -x "$VENV/bin/python" ]; then
  PY="$VENV/bin/python"
elif [ -x "$VENV/bin/python3" ]; then
  PY="$VENV/bin/python3"  # an existing environment without a 'python' (a system Python)
else
  step "creating virtual environment $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
  PY="$VENV/bin/python"
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
CONSTRAINTS="$ROOT/requirements/constraints.txt"
RUNTIME="$ROOT/requirements/runtime.txt"
TORCH_PIN=$(sed -n 's/^torch==//p' "$CONSTRAINTS")
HAVE_TORCH=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [ -n "$HAVE_TORCH" ] && [ "${HAVE_TORCH%%+*}" != "$TORCH_PIN" ]; then
  # An environment that brings its own torch (a CUDA image, a conda env) keeps it, and every
  # package it has; what is added is pinned as tested.
  step "keeping this environment's torch $HAVE_TORCH (tested: $TORCH_PIN) and its packages"
  # Constraints and runtime needs less what the environment has (opencv-python-headless
  # stands for opencv-python); runtime needs then install --no-deps, as runtime.txt names
  # their needs too (mmengine's opencv-python would otherwise come on top of the headless one).
  "$PY" - "$CONSTRAINTS" "$RUNTIME" "$TMP" <<'PYEOF'
import re, sys
from importlib.metadata import distributions
norm = lambda n: re.sub(r'[-_.]+', '-', n).lower()
have = {norm(d.metadata['Name']) for d in distributions()}
if have & {'opencv-python-headless', 'opencv-contrib-python', 'opencv-contrib-python-headless'}:
    have.add('opencv-python')
name = lambda line: norm(re.split(r'[=<>!~ ;\[]', line.strip(), 1)[0])
for src, dst in zip(sys.argv[1:3], ('constraints.txt', 'runtime.txt')):
    with open(src) as f, open(f'{sys.argv[3]}/{dst}', 'w') as out:
        out.writelines(l for l in f if l.startswith('#') or not l.strip() or name(l) not in have)
PYEOF
  CONSTRAINTS="$TMP/constraints.txt" RUNTIME="$TMP/runtime.txt" RUNTIME_DEPS=(--no-deps)
  UPGRADE_PIP=()
else
  UPGRADE_PIP=(--upgrade pip) RUNTIME_DEPS=()
fi
# Every install is held to the exact versions the test suite passed with.
PIP=("$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")
# torch 2.14 needs setuptools >= 77; mmcv's setup.py and mim need pkg_resources (< 81).
BUILD_TOOLS=("setuptools>=77,<81" wheel "cython>=3" numpy ninja)
# mmcv's dependencies, so that the mmcv install itself can be --no-deps.
MMCV_DEPS=(addict packaging pyyaml yapf)
MMPOSE=mmpose==1.3.2
OPENMIM=openmim==0.3.9

# mmcv's version, its compiled ops (RoIAlign, nms: mmdet needs them) and, for a GPU build,
# those ops run on CUDA tensors.
have_mmcv_ops() { "$PY" "$ROOT/tools/mmcv_ops.py" check "$MMCV_VERSION" 2>/dev/null; }

# Everything below installed as pinned already (tools/pins.py: each package and its needs at
# the pinned version, hrnet_mm editable from here), mmcv's ops working as this machine needs
# them, xtcocotools importing. Sets DONE to what was checked, or (status 1) to the first
# thing missing, and PINNED to 1 where every package is as pinned (only the ops or
# xtcocotools' build then need work). pip takes half a minute to find the same, in 170 lines
# of "Requirement already satisfied".
already_installed() {
  PINNED=0
  DONE=$("$PY" "$ROOT/tools/pins.py" "$CONSTRAINTS" "${RUNTIME_DEPS[@]}" "$RUNTIME" \
    "$ROOT/requirements/cls.txt" "$ROOT/requirements/mim.txt" "$ROOT/requirements/tests.txt" \
    "${BUILD_TOOLS[@]}" "${MMCV_DEPS[@]}" "xtcocotools==$XTCOCOTOOLS_VERSION" \
    --no-deps "mmcv==$MMCV_VERSION" --no-deps "$MMPOSE" --no-deps "$OPENMIM" \
    --editable "hrnet_mm=$ROOT" 2>&1) || { DONE=${DONE##*$'\n'}; return 1; }
  PINNED=1
  # torch is as pinned, so the plan is final: an error (no nvcc for a GPU) stops here.
  PLAN=$("$PY" "$ROOT/tools/mmcv_ops.py" plan) || exit 1
  eval "$PLAN"
  export MMCV_CUDA
  OPS=$(have_mmcv_ops) || { DONE="mmcv $MMCV_VERSION's ops do not work as needed here"
    OPS_FAIL=1; return 1; }
  "$PY" -c "import xtcocotools.mask" 2>/dev/null || { DONE="xtcocotools does not import"; return 1; }
  DONE="$DONE; $OPS"
}

# mmcv from its source package, with the ops the plan chose (CPU, or CUDA for the GPUs).
build_mmcv_from_source() {
  if [ "$MMCV_CUDA" = 1 ]; then
    step "building mmcv $MMCV_VERSION with CUDA ops from source (about 5 minutes on 16 cores)"
  else
    step "building mmcv $MMCV_VERSION with its ops from source (about 10 minutes on 2 cores)"
  fi
  local src="$TMP/mmcv-src"
  "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary mmcv \
    -c "$ROOT/requirements/constraints.txt" \
    --no-build-isolation "mmcv==$MMCV_VERSION" -d "$src"
  tar -xzf "$src"/mmcv-$MMCV_VERSION.tar.gz -C "$src"
  # torch >= 2.14 headers need C++20; mmcv 2.1.0's setup.py hard-codes -std=c++17.
  if "$PY" -c 'import sys, torch; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 14))'; then
    sed -i 's/-std=c++17/-std=c++20/g' "$src/mmcv-$MMCV_VERSION/setup.py"
  fi
  (cd "$src/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 MAX_JOBS=${MMCV_BUILD_JOBS:-$(nproc)} \
    "${PIP[@]}" --no-deps --no-build-isolation .)
}

# mmcv 2.1.0 with the ops this machine needs: kept if they work, else from a wheel or source.
install_mmcv() {
  # CPU or CUDA ops: decided (and anything that would break the build minutes later said) now,
  # where already_installed has not (torch was not as pinned then).
  [ "$PINNED" = 1 ] || PLAN=$("$PY" "$ROOT/tools/mmcv_ops.py" plan) || exit 1
  eval "$PLAN"
  export MMCV_CUDA
  if [ "$MMCV_CUDA" = 1 ]; then
    export FORCE_CUDA CUDA_HOME TORCH_CUDA_ARCH_LIST
    step "GPU build: mmcv's CUDA ops for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST with $CUDA_HOME/bin/nvcc (CUDA $MMCV_CUDA_RELEASE)"
  fi

  if [ "${OPS_FAIL:-0}" != 1 ] && OPS=$(have_mmcv_ops); then  # already_installed's check
    step "$OPS: already installed"
  else
    TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    TORCH=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
    WHEEL=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-$TAG-$TAG-linux_x86_64.whl 2>/dev/null | head -n1 || true)
    if [ "$MMCV_CUDA" = 1 ] && [ -n "${HRNET_MM_MMCV_WHEEL:-}" ]; then
      # A wheel with CUDA ops built elsewhere for this torch / CUDA / GPU (tools/gpu_wheels.sh
      # --mmcv-cuda). If it does not install, or its ops fail on this GPU (another glibc,
      # another arch), the source build still gives a working install.
      step "mmcv $MMCV_VERSION with CUDA ops from $HRNET_MM_MMCV_WHEEL"
      if ! "${PIP[@]}" --no-deps --force-reinstall "$HRNET_MM_MMCV_WHEEL"; then
        step "that wheel does not install here; building from source instead"
        build_mmcv_from_source
      elif ! have_mmcv_ops > /dev/null; then
        step "that wheel's ops do not work here ($("$PY" "$ROOT/tools/mmcv_ops.py" check \
          "$MMCV_VERSION" 2>&1 | tail -n 1)); building from source instead"
        build_mmcv_from_source
      fi
    elif [ "$MMCV_CUDA" = 0 ] && [ -n "$WHEEL" ] && [ "$TORCH" = "2.14.1" ] && \
        [ "$(uname -m)" = x86_64 ]; then
      # The shared wheel is a build cache of CPU ops for exactly torch 2.14.1 / this Python;
      # never for a GPU machine.
      step "mmcv $MMCV_VERSION from prebuilt wheel $WHEEL"
      "${PIP[@]}" --no-deps --force-reinstall "$WHEEL"
    else
      build_mmcv_from_source
    fi
    OPS=$(have_mmcv_ops) || {
      echo "[install] error: mmcv $MMCV_VERSION's ops do not work:" \
        "$("$PY" "$ROOT/tools/mmcv_ops.py" check "$MMCV_VERSION" 2>&1 | tail -n 1)" >&2; exit 1; }
    step "$OPS"
  fi
}

install_xtcocotools() {
  # xtcocotools' published wheels are built against numpy 1 and crash under numpy 2.
  if "$PY" -c "import xtcocotools, xtcocotools.mask" 2>/dev/null; then
    step "xtcocotools already installed"
  else
    step "building xtcocotools $XTCOCOTOOLS_VERSION from source against this numpy"
    "${PIP[@]}" --no-binary xtcocotools --no-build-isolation "xtcocotools==$XTCOCOTOOLS_VERSION"
  fi
}

install_stack() {
  step "build tools"
  "${PIP[@]}" -q "${UPGRADE_PIP[@]}" "${BUILD_TOOLS[@]}"

  step "torch, mmengine, mmdet, mmsegmentation and their needs (requirements/runtime.txt)"
  "${PIP[@]}" "${RUNTIME_DEPS[@]}" -r "$RUNTIME"

  "${PIP[@]}" -q "${MMCV_DEPS[@]}"
  install_mmcv
  install_xtcocotools

  # mmpose declares chumpy, which does not install; its real needs are in runtime.txt.
  step "mmpose (without chumpy)"
  "${PIP[@]}" --no-deps "$MMPOSE"

  step "mmpretrain (classification; requirements/cls.txt)"
  "${PIP[@]}" -r "$ROOT/requirements/cls.txt"

  step "openmim (mim train / mim test), without openxlab"
  "${PIP[@]}" -r "$ROOT/requirements/mim.txt"
  "${PIP[@]}" --no-deps "$OPENMIM"

  step "hrnet_mm (editable) and the test tools"
  "${PIP[@]}" -r "$ROOT/requirements/tests.txt"
  "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
}

if already_installed; then
  step "already installed: $DONE"
elif [ "$PINNED" = 1 ]; then
  # A machine set up before with other ops (CPU ops where a GPU is now seen), or an mmcv or
  # xtcocotools build that failed: every package is as pinned, so only those are done.
  step "installing: $DONE (every package is installed as pinned; only this is done)"
  # already_installed checked the ops before xtcocotools: where they passed, mmcv is done
  [ "${OPS_FAIL:-0}" = 1 ] && install_mmcv
  install_xtcocotools
else
  step "installing: $DONE"
  install_stack
fi

step "checking the stack"
"$PY" - <<'PYEOF'
import hrnet_mm  # first: it hides setuptools' pkg_resources notice, which mim would print
import torch, torchvision, mmengine, mmcv, mmdet, mmseg, mmpose, mmpretrain
import mmcv.ops, xtcocotools.mask, pycocotools.mask, mim
# the model packages, as a detector or segmentor build imports them: a newer package in the
# environment can break these where the top-level imports pass (hrnet_mm.compat)
import mmdet.models, mmseg.models, mmpose.models, mmpretrain.models
assert hrnet_mm.REGISTERED_LIBRARIES == ('mmdet', 'mmseg', 'mmpose', 'mmpretrain'), \
    hrnet_mm.REGISTERED_LIBRARIES
for m in (torch, torchvision, mmengine, mmcv, mmdet, mmseg, mmpose, mmpretrain, hrnet_mm):
    print(f"  {m.__name__:12s} {m.__version__}")
PYEOF
if [ -f "$VENV/bin/activate" ]; then
  step "done: activate with 'source $VENV/bin/activate'"
else
  step "done: installed for $PY"
fi
