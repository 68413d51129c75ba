#!/usr/bin/env bash
# Installs genmix with its test tools and runs the whole suite: the C++ kernel tests (ctest),
# then pytest (Triton under its CPU interpreter; `cuda`-marked tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
scripts/install.sh test

if command -v cmake >/dev/null 2>&1; then
    cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build/cmake -j"$(nproc)"
    ctest --test-dir build/cmake --output-on-failure
else
    echo "genmix test: cmake not found, C++ kernel tests skipped"
fi

export TRITON_INTERPRET=1
"$PY" -m pytest tests "$@"
