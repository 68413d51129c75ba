"""Which compiled implementations the CPU tests exercise."""

import pytest

from genmix.ops import _backend


def _triton_importable():
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_kernel_impls():
    """Compiled CPU-side implementations to check against the reference.

    The C++ extension is part of the build, so its absence is a failure, not a skip; Triton is
    optional at run time and skips cleanly when not installed.
    """
    impls = [pytest.param("cpp", id="cpp")]
    if _triton_importable() and _backend.triton_interpreting():
        impls.append(pytest.param("triton", id="triton"))
    else:
        impls.append(pytest.param("triton", id="triton", marks=pytest.mark.skip(
            reason="triton not installed or TRITON_INTERPRET not set")))
    return impls
