"""Every CUDA source compiles with plain nvcc, without torch: a CUDA syntax or type error fails
the suite even on a machine with no GPU. Skips where nvcc is not installed. The C++ standard is
the one torch.utils.cpp_extension builds extensions with (C++17 in older torch, C++20 in
recent ones, whose headers need it), read from torch itself."""

import inspect
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUDA_SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc")


def torch_cxx_std() -> str:
    """The `-std=` flag that torch's BuildExtension adds when an extension sets none: the quoted
    'c++NN' / '-std=c++NN' literals in its code (not its prose), the newest one."""
    from torch.utils import cpp_extension

    code = inspect.getsource(cpp_extension.BuildExtension)
    found = [int(n) for n in re.findall(r"""['"](?:-std=)?c\+\+(\d\d)['"]""", code)]
    return f"-std=c++{max(found)}" if found else "-std=c++17"


def test_the_cxx_standard_comes_from_torch():
    import torch

    std = torch_cxx_std()
    assert std in ("-std=c++17", "-std=c++20", "-std=c++23")
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 14):
        assert std >= "-std=c++20"  # torch 2.14's headers need C++20


def test_there_are_cuda_sources():
    assert {p.name for p in CUDA_SOURCES} >= {"upfirdn2d.cu", "bias_act.cu"}


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("source", CUDA_SOURCES, ids=lambda p: p.name)
def test_nvcc_compiles(source, tmp_path):
    cmd = [NVCC, torch_cxx_std(), "-O1", "-arch=sm_80", "-Werror=all-warnings", "-Xcompiler", "-Wall,-Werror",
           "-I", str(ROOT / "csrc"), "-c", str(source), "-o", str(tmp_path / (source.stem + ".o"))]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"


def _torch_cuda_headers():
    try:
        from torch.utils import cpp_extension
    except ImportError:
        return None
    paths = cpp_extension.include_paths()
    if not any(Path(p, "c10", "cuda", "CUDAStream.h").exists() for p in paths):
        return None
    return paths


def _cuda_include_dir():
    """The toolkit's include folder, found as setup.py finds it (CUDA_HOME, CUDA_PATH, the
    toolkit of the nvcc on PATH even through a wrapper script, /usr/local/cuda)."""
    from genmix._build_config import find_toolkits

    found = find_toolkits().found
    return Path(found[0].home) / "include" if found else None


@pytest.mark.skipif(NVCC is None or shutil.which("g++") is None, reason="nvcc or g++ not on PATH")
def test_bindings_cuda_path_compiles(tmp_path):
    """The GENMIX_WITH_CUDA branches of bindings.cpp only build where torch has CUDA; check
    their syntax and types here against torch's headers and the toolkit's."""
    import sysconfig

    torch_includes = _torch_cuda_headers()
    if torch_includes is None:
        pytest.skip("this torch ships no c10/cuda headers")
    # CPU builds of torch lack one generated CUDA header; an empty stand-in is enough to parse.
    shim = tmp_path / "shim"
    (shim / "c10" / "cuda" / "impl").mkdir(parents=True)
    (shim / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text("#pragma once\n")
    cuda_include = _cuda_include_dir()
    if cuda_include is None:
        pytest.skip("CUDA runtime headers not found")
    cmd = ["g++", torch_cxx_std(), "-fsyntax-only", "-fopenmp", f"-I{shim}", f"-I{cuda_include}",
           f"-I{ROOT / 'csrc'}", f"-I{sysconfig.get_paths()['include']}",
           "-DGENMIX_WITH_CUDA", '-DGENMIX_CUDA_VERSION="13.0"', "-DTORCH_EXTENSION_NAME=_C"]
    cmd += [f"-I{p}" for p in torch_includes] + [str(ROOT / "csrc" / "bindings.cpp")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 0, "\n".join(errors[:20])
