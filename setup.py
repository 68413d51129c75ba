"""Builds the compiled extension genmix._C at install time.

CPU kernels are always built (OpenMP). CUDA kernels are added when torch is a CUDA build and a
CUDA toolkit with its runtime headers is found (CUDA_HOME, CUDA_PATH, the toolkit of the nvcc
on the PATH even when that nvcc is a wrapper script, /usr/local/cuda). GENMIX_CUDA=0 forces
them off, GENMIX_CUDA=1 forces them on (and fails with the fix when that is impossible).
Architectures: TORCH_CUDA_ARCH_LIST if set, else the visible GPUs', else a default set (see
genmix/_build_config.py). Build without isolation so the extension links against the torch you
already have:  pip install --no-build-isolation -e .
"""

import glob
import importlib.util
import os
import sys

from setuptools import setup

try:
    import torch
except ImportError:  # pragma: no cover - happens only with build isolation or no torch
    sys.exit(
        "genmix: building the extension needs torch installed first; install torch, then run "
        "`pip install --no-build-isolation .` (or `make install`)"
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_build_config():
    # By path: genmix itself is not importable before it is installed.
    path = os.path.join(ROOT, "genmix", "_build_config.py")
    spec = importlib.util.spec_from_file_location("genmix_build_config", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _visible_gpus():
    if torch.version.cuda is None:
        return []
    try:
        return [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver is the same as no GPU for choosing architectures
        return []


def build_plan():
    plan = _load_build_config().plan(torch_cuda=torch.version.cuda, gpu_capabilities=_visible_gpus(),
                                     torch_version=torch.__version__)
    for line in plan.messages:
        print(line, file=sys.stderr, flush=True)
    # pip hides a build's output unless it fails; scripts/install.sh shows this file instead.
    try:
        os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
        with open(os.path.join(ROOT, "build", "genmix-build-plan.txt"), "w") as fh:
            fh.write("\n".join(plan.messages + ([plan.error] if plan.error else [])) + "\n")
    except OSError:
        pass
    if plan.error:
        sys.exit(plan.error)
    if plan.cuda:
        # Before torch.utils.cpp_extension is imported: it guesses CUDA_HOME at import time
        # (wrongly, from a wrapper nvcc's grandparent) and detects archs from visible GPUs only.
        os.environ["CUDA_HOME"] = plan.cuda_home
        os.environ["TORCH_CUDA_ARCH_LIST"] = plan.arch_list
    return plan


PLAN = build_plan()

from torch.utils import cpp_extension  # noqa: E402  (after CUDA_HOME is settled)

if PLAN.cuda:
    cpp_extension.CUDA_HOME = PLAN.cuda_home


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def extension():
    cpp_sources = ["csrc/bindings.cpp"] + sources("csrc/cpu/*.cpp")
    cxx_flags = ["-O3", "-fopenmp"]  # the C++ standard is the one torch.utils.cpp_extension sets
    link_flags = ["-fopenmp"]
    include_dirs = [os.path.join(ROOT, "csrc")]
    if PLAN.cuda:
        # --threads: nvcc compiles the architectures of one file in parallel.
        nvcc_threads = os.environ.get("GENMIX_NVCC_THREADS", str(min(4, os.cpu_count() or 1)))
        return cpp_extension.CUDAExtension(
            "genmix._C",
            cpp_sources + sources("csrc/cuda/*.cu"),
            include_dirs=include_dirs,
            define_macros=[("GENMIX_WITH_CUDA", None), ("GENMIX_CUDA_VERSION", f'"{torch.version.cuda}"')],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo", f"--threads={nvcc_threads}"]},
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
