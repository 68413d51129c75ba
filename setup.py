"""Builds the compiled extension genmix._C at install time.

CPU kernels are always built (OpenMP). CUDA kernels are added when a CUDA toolkit and a
CUDA-enabled torch are both present; GENMIX_CUDA=0 forces them off, GENMIX_CUDA=1 forces them
on (and fails loudly when that is impossible). Build without isolation so the extension links
against the torch you already have:  pip install --no-build-isolation -e .
"""

import glob
import os
import sys

from setuptools import setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # pragma: no cover - happens only with build isolation or no torch
    sys.exit(
        "genmix: building the extension needs torch installed first; install torch, then run "
        "`pip install --no-build-isolation .` (or `make install`)"
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    flag = os.environ.get("GENMIX_CUDA", "").strip()
    toolkit = cpp_extension.CUDA_HOME is not None
    cuda_torch = torch.version.cuda is not None
    if flag == "0":
        return False
    if flag == "1":
        if not (toolkit and cuda_torch):
            sys.exit(
                "genmix: GENMIX_CUDA=1 but "
                + ("no CUDA toolkit was found (set CUDA_HOME)" if not toolkit else "this torch has no CUDA")
            )
        return True
    return toolkit and cuda_torch


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def extension():
    cpp_sources = ["csrc/bindings.cpp"] + sources("csrc/cpu/*.cpp")
    cxx_flags = ["-O3", "-fopenmp"]  # the C++ standard is the one torch.utils.cpp_extension sets
    link_flags = ["-fopenmp"]
    include_dirs = [os.path.join(ROOT, "csrc")]
    if want_cuda():
        return cpp_extension.CUDAExtension(
            "genmix._C",
            cpp_sources + sources("csrc/cuda/*.cu"),
            include_dirs=include_dirs,
            define_macros=[("GENMIX_WITH_CUDA", None), ("GENMIX_CUDA_VERSION", f'"{torch.version.cuda}"')],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=link_flags,
        )
    return cpp_extension.CppExtension(
        "genmix._C",
        cpp_sources,
        include_dirs=include_dirs,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
