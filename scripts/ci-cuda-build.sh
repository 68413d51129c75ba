#!/usr/bin/env bash
# CI: a GPU user's plain install. Builds genmix with its CUDA kernels against the CUDA build of
# torch (default torch==2.14.1) in a separate virtual environment, with none of the build
# variables set (CUDA_HOME, CUDA_PATH, TORCH_CUDA_ARCH_LIST, GENMIX_CUDA), so setup.py has to
# find the toolkit and choose the architectures itself, as on a machine without a GPU. Then
# checks that `genmix info --json` reports the CUDA kernels and runs the CPU tests of the ops,
# the packaging and the compile checks on that torch.
#
# It works on a copy of the source tree (build/cuda-src), so the editable install never
# replaces the extension that the main environment uses. Skips with one line where nvcc or
# that torch wheel cannot be had.
#
#   GENMIX_CI_TORCH   torch version to build against (default 2.14.1)
#   GENMIX_CI_VENV    the virtual environment (default ~/.cache/genmix-ci/venv-cuda-<version>,
#                     outside the source tree so that a fresh clone reuses it; reused if present)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TORCH_VERSION=${GENMIX_CI_TORCH:-2.14.1}
VENV=${GENMIX_CI_VENV:-$HOME/.cache/genmix-ci/venv-cuda-$TORCH_VERSION}
SRC=build/cuda-src
T0=$SECONDS
say() { echo "ci-cuda-build: $*"; }
elapsed() { echo "$((SECONDS - T0)) s"; }

if ! command -v nvcc >/dev/null 2>&1; then
    say "skipped: no nvcc on PATH, so the CUDA kernels cannot be built here"
    exit 0
fi

# 1. The CUDA build of torch, in its own environment (never the main one: it is ~5.5 GB).
if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION' or torch.version.cuda is None)" 2>/dev/null; then
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==$TORCH_VERSION" numpy >"$VENV/pip-torch.log" 2>&1; then
        say "skipped: torch==$TORCH_VERSION cannot be installed here ($(grep -m1 -i error "$VENV/pip-torch.log" || echo 'see '"$VENV"/pip-torch.log))"
        exit 0
    fi
fi
case "$VENV" in /*) PY=$VENV/bin/python ;; *) PY=$ROOT/$VENV/bin/python ;; esac
if ! "$PY" -c "import torch, sys; sys.exit(torch.version.cuda is None)"; then
    say "skipped: the torch==$TORCH_VERSION found here is a CPU build"
    exit 0
fi
say "torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)') ready after $(elapsed)"

# 2. A copy of the source tree (scripts/copy-source-tree.sh: tracked and new files, build/ left out).
scripts/copy-source-tree.sh "$SRC"

# 3. The plain install, with every build variable removed from the environment.
T1=$SECONDS
env -u CUDA_HOME -u CUDA_PATH -u TORCH_CUDA_ARCH_LIST -u GENMIX_CUDA PYTHON="$PY" "$SRC/scripts/install.sh" test
say "extension built in $((SECONDS - T1)) s"

# 4. The CUDA kernels must be in it.
(cd "$SRC" && "$PY" -m genmix info --json) | "$PY" -c '
import json, sys
ext = json.load(sys.stdin)["extension"]
if ext.get("cuda") is not True:
    sys.exit(f"ci-cuda-build: FAILED: genmix info reports no CUDA kernels: {ext}")
print("ci-cuda-build: genmix info: CUDA kernels built (CUDA %s, torch %s)" % (ext.get("cuda_version"), ext.get("torch")))
'

# 5. CPU tests on this torch: the fused ops against the reference through this build of the
#    extension (the C++ backend: what a new torch's headers and ABI can break), the build
#    resolution, the packaging, and the bindings compile check with this torch's C++ standard.
#    Left to the main suite: the Triton-interpreter cases (5 of the 7 minutes these files take
#    on 2 cores; they test Python kernels, not this build) and the plain-nvcc compiles of
#    csrc/cuda (the build above has just compiled those same files with torch's flags).
T2=$SECONDS
(cd "$SRC" && TRITON_INTERPRET=1 "$PY" -m pytest -q -p no:cacheprovider -k "not triton and not test_nvcc_compiles" \
    tests/test_upfirdn2d.py tests/test_bias_act.py tests/test_modulated_conv2d.py tests/test_mixing.py \
    tests/test_build_config.py tests/test_packaging.py tests/test_cuda_sources_compile.py)
say "tests on torch $TORCH_VERSION took $((SECONDS - T2)) s; whole step $(elapsed)"
