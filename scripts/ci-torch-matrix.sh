#!/usr/bin/env bash
# CI: genmix on every supported torch, oldest to newest. For each version it builds the
# extension against that torch (CPU kernels; the CUDA build is scripts/ci-cuda-build.sh's job)
# in its own virtual environment, then runs a smoke subset on it: the operators' opcheck, the
# fullgraph-compile checks, the first and second derivatives (R1 and path-length
# regularisation need them) and the ADA grid_sample.
#
# Only PyPI's builds of torch other than the local CPU one are CUDA builds (several GB each):
# the environments live outside the source tree (GENMIX_CI_CACHE, default ~/.cache/genmix-ci)
# and are reused while they hold the right torch. A version above this machine's pip cap is
# installed with pip's configuration files left out (PIP_CONFIG_FILE=/dev/null).
#
#   GENMIX_CI_TORCH_MATRIX   versions to test (default "2.6.0 2.15.0": the stated minimum and the newest)
#   GENMIX_CI_CACHE          where the environments live (default ~/.cache/genmix-ci)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VERSIONS=${GENMIX_CI_TORCH_MATRIX:-2.6.0 2.15.0}
CACHE=${GENMIX_CI_CACHE:-$HOME/.cache/genmix-ci}
say() { echo "ci-torch-matrix: $*"; }
mkdir -p "$CACHE"
status=0

for V in $VERSIONS; do
    T0=$SECONDS
    VENV=$CACHE/venv-torch-$V
    PY=$VENV/bin/python
    if ! [ -x "$PY" ] || ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$V')" 2>/dev/null; then
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        if ! "$PY" -m pip install --disable-pip-version-check -q "torch==$V" numpy >"$VENV.pip.log" 2>&1; then
            # Above the configured cap: without pip's configuration files, from PyPI.
            if ! PIP_CONFIG_FILE=/dev/null "$PY" -m pip install --disable-pip-version-check -q "torch==$V" numpy \
                    >>"$VENV.pip.log" 2>&1; then
                # As ci-cuda-build.sh: a wheel that cannot be had here skips that version loudly;
                # a build or a test that fails on it fails CI.
                say "torch $V: SKIPPED, it cannot be installed here ($(grep -m1 -i error "$VENV.pip.log" || echo "see $VENV.pip.log"))"
                continue
            fi
        fi
    fi
    say "torch $("$PY" -c 'import torch; print(torch.__version__)') ready after $((SECONDS - T0)) s"

    # A copy of the source tree per version, so that no build replaces the main environment's.
    SRC=build/matrix-src-$V
    scripts/copy-source-tree.sh "$SRC"
    T1=$SECONDS
    if ! GENMIX_CUDA=0 PYTHON="$PY" "$SRC/scripts/install.sh" test >"$SRC.install.log" 2>&1; then
        tail -30 "$SRC.install.log"
        say "torch $V: FAILED to build the extension"
        status=1
        continue
    fi
    say "torch $V: extension built in $((SECONDS - T1)) s"
    T2=$SECONDS
    if ! (cd "$SRC" && TRITON_INTERPRET=1 "$PY" -m pytest -q -p no:cacheprovider -rf \
            -k "not triton and not cuda" tests/test_custom_ops.py tests/test_grid_sample.py \
            tests/test_bias_act.py::test_first_and_second_derivatives_match_reference \
            tests/test_bias_act.py::test_gradcheck_and_gradgradcheck \
            tests/test_bias_act.py::test_third_derivative_is_refused \
            tests/test_bias_act.py::test_fully_connected_matches_reference_to_the_second_derivative \
            tests/test_upfirdn2d.py::test_forward_backward_matches_reference \
            tests/test_upfirdn2d.py::test_gradcheck_and_gradgradcheck \
            tests/test_modulated_conv2d.py::test_second_order_gradients_for_path_length_regularisation \
            tests/test_modulated_conv2d.py::test_gradcheck tests/test_mixing.py::test_kernels_draw_the_reference_samples); then
        say "torch $V: smoke tests FAILED"
        status=1
    fi
    say "torch $V: smoke tests took $((SECONDS - T2)) s; whole version $((SECONDS - T0)) s"
done
exit $status
