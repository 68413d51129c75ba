"""Build decisions for the compiled extension: which CUDA toolkit to use and which GPU
architectures to compile for.

setup.py loads this file by path before genmix is installed, so it imports nothing from torch
or genmix; the facts it needs about torch (its CUDA version, the visible GPUs) are passed in.
Every function takes the environment and the PATH lookup as arguments, so the tests can drive
it with fake toolkits and fake nvcc scripts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

RUNTIME_HEADER = Path("include") / "cuda_runtime_api.h"

# Default GPU architectures when TORCH_CUDA_ARCH_LIST is unset and no GPU is visible (a build
# machine, a container build, CI): one native binary (SASS) per GPU generation from Volta to
# Hopper, at the lowest compute capability of that generation the toolkit supports, because a
# binary for X.y also runs on every X.z with z >= y:
#   7.0 Volta (V100; CUDA 13 dropped it, so 7.5 Turing - T4 - takes its place there),
#   8.0 Ampere (A100; also runs on 8.6 A10/RTX 30, 8.7 and 8.9 L4/L40/RTX 40),
#   9.0 Hopper (H100/H200),
# plus PTX for 9.0, which the driver compiles at first use on anything newer (Blackwell).
# Three binaries instead of torch's eight keep the build short; set TORCH_CUDA_ARCH_LIST for a
# build tuned to other cards (e.g. "8.6" or "10.0;12.0").
DEFAULT_GENERATIONS = (("7.0", "7.5"), ("8.0",), ("9.0",))


@dataclass
class Toolkit:
    home: str
    source: str  # how it was found, for the build log
    version: str | None = None  # "13.0", from include/cuda.h


@dataclass
class Search:
    found: list[Toolkit] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "CUDA_HOME=/x: no include/cuda_runtime_api.h"
    nvcc_on_path: str | None = None
    explicit: bool = False  # CUDA_HOME or CUDA_PATH was set


@dataclass
class Plan:
    cuda: bool
    cuda_home: str | None = None
    cuda_version: str | None = None
    arch_list: str | None = None
    arch_reason: str = ""
    messages: list[str] = field(default_factory=list)
    error: str | None = None


def toolkit_version(home: str | os.PathLike) -> str | None:
    """ "13.0" from the toolkit's include/cuda.h (CUDA_VERSION 13000), None if unreadable."""
    try:
        text = (Path(home) / "include" / "cuda.h").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"#define\s+CUDA_VERSION\s+(\d+)", text)
    if not m:
        return None
    v = int(m.group(1))
    return f"{v // 1000}.{(v % 1000) // 10}"


def _usable(home: str | os.PathLike) -> str | None:
    """None when `home` is a toolkit torch can build with, else why not."""
    home = Path(home)
    if not home.is_dir():
        return "not a folder"
    if not (home / RUNTIME_HEADER).is_file():
        return f"no {RUNTIME_HEADER.as_posix()}"
    if not (home / "bin" / "nvcc").is_file():
        return "no bin/nvcc"
    return None


def _run(cmd: list[str], timeout: float = 30) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (out.stdout or "") + (out.stderr or "")


def nvcc_reported_homes(nvcc: str) -> list[str]:
    """Toolkit folders that the nvcc at `nvcc` points to, best guess first.

    An nvcc on the PATH may be a symlink or a wrapper script outside the toolkit (then its
    grandparent, torch's guess, is wrong). The real nvcc names its own folder in a dry run
    (`#$ TOP=<toolkit>/bin/..` and `#$ _HERE_=<toolkit>/bin`); a wrapper script's text usually
    names the real nvcc too."""
    homes = [str(Path(os.path.realpath(nvcc)).parent.parent)]
    dry = _run([nvcc, "-v", "--dryrun", "-c", "genmix_probe.cu", "-o", os.devnull])
    top = re.search(r"^#\$ TOP=(.+?)\s*$", dry, re.M)  # <toolkit>/bin/..
    if top:
        homes.append(os.path.realpath(top.group(1)))
    here = re.search(r"^#\$ _HERE_=(.+?)\s*$", dry, re.M)  # <toolkit>/bin
    if here:
        homes.append(str(Path(os.path.realpath(here.group(1))).parent))
    try:
        if os.path.getsize(nvcc) < 65536:
            text = Path(nvcc).read_text(errors="replace")
            for m in re.finditer(r"(/[^\s'\"`;|&]*?)/bin/nvcc\b", text):
                homes.append(os.path.realpath(m.group(1)))
    except OSError:
        pass
    unique = []
    for h in homes:
        if h not in unique:
            unique.append(h)
    return unique


def find_toolkits(env=None, which=shutil.which, default_homes=("/usr/local/cuda",)) -> Search:
    """Every usable CUDA toolkit, in this order: CUDA_HOME, CUDA_PATH, the toolkit of the nvcc on
    the PATH (what it reports, not its grandparent), then `default_homes`. A candidate is usable
    when it has include/cuda_runtime_api.h and bin/nvcc."""
    env = os.environ if env is None else env
    search = Search()
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if env.get(var):
            search.explicit = True
            candidates.append((env[var], var))
    nvcc = which("nvcc")
    if nvcc:
        search.nvcc_on_path = nvcc
        candidates += [(h, f"nvcc on PATH ({nvcc})") for h in nvcc_reported_homes(nvcc)]
    candidates += [(h, h) for h in default_homes]
    seen = set()
    for home, source in candidates:
        key = os.path.realpath(home)
        if key in seen:
            continue
        seen.add(key)
        why = _usable(home)
        if why is None:
            search.found.append(Toolkit(home=str(home), source=source, version=toolkit_version(home)))
        else:
            search.rejected.append(f"{home} ({source}): {why}")
    return search


def _arch_key(arch: str) -> tuple[int, int]:
    major, minor = arch.split("+")[0].rstrip("af").split(".")
    return int(major), int(minor)


def supported_archs(cuda_home: str) -> list[str] | None:
    """Compute capabilities the toolkit's nvcc can target ("7.5", "8.0", ...), None if unknown."""
    out = _run([str(Path(cuda_home) / "bin" / "nvcc"), "--list-gpu-arch"])
    archs = set()
    for m in re.finditer(r"compute_(\d+)(\d)\b", out):
        archs.add(f"{int(m.group(1))}.{m.group(2)}")
    return sorted(archs, key=_arch_key) or None


def default_arch_list(supported: list[str] | None, version: str | None = None) -> str:
    """One binary per generation Volta..Hopper that the toolkit supports, PTX for the newest."""
    if supported is None:  # nvcc too old or silent: decide from the version (CUDA 13 dropped 7.0)
        major = int(version.split(".")[0]) if version else 12
        supported = [a for gen in DEFAULT_GENERATIONS for a in gen if not (major >= 13 and a == "7.0")]
    chosen = []
    for generation in DEFAULT_GENERATIONS:
        for arch in generation:
            if arch in supported:
                chosen.append(arch)
                break
    if not chosen:  # a toolkit newer than every default: its oldest arch, with PTX
        chosen = [min(supported, key=_arch_key)]
    chosen[-1] += "+PTX"
    return ";".join(chosen)


def gpu_arch_list(capabilities, supported: list[str] | None) -> str:
    """The visible GPUs' architectures (clamped to what nvcc supports), PTX for the newest."""
    archs = sorted({f"{major}.{minor}" for major, minor in capabilities}, key=_arch_key)
    if supported:
        top = max(supported, key=_arch_key)
        archs = sorted({a if _arch_key(a) <= _arch_key(top) else top for a in archs}, key=_arch_key)
    archs[-1] += "+PTX"
    return ";".join(archs)


# The oldest torch genmix builds and runs on: its operators need torch.library's
# register_fake / register_autograd (2.4) and triton_op / wrap_triton (2.6).
MIN_TORCH = (2, 6)


def torch_too_old(torch_version: str) -> str | None:
    """The one-line reason a torch is older than MIN_TORCH, or None (also for unparsable ones)."""
    try:
        major, minor = (int(part) for part in torch_version.split("+")[0].split(".")[:2])
    except ValueError:
        return None
    if (major, minor) >= MIN_TORCH:
        return None
    return (f"genmix: torch {torch_version} is too old; genmix needs torch >= {MIN_TORCH[0]}.{MIN_TORCH[1]} "
            f"(pip install 'torch>={MIN_TORCH[0]}.{MIN_TORCH[1]}', then rebuild genmix)")


FIX = ("set CUDA_HOME to the CUDA toolkit folder (the one with bin/nvcc and "
       "include/cuda_runtime_api.h, e.g. CUDA_HOME=/usr/local/cuda-12.8)")


def plan(env=None, torch_cuda: str | None = None, gpu_capabilities=(), torch_version: str = "?",
         find=find_toolkits, archs_of=supported_archs) -> Plan:
    """What to build. `torch_cuda` is torch.version.cuda (None for a CPU torch);
    `gpu_capabilities` the (major, minor) of each visible GPU. GENMIX_CUDA=0 forces a CPU-only
    build, GENMIX_CUDA=1 makes every reason not to build the CUDA kernels an error."""
    env = os.environ if env is None else env
    too_old = torch_too_old(torch_version)
    if too_old:
        return Plan(cuda=False, error=too_old)
    flag = env.get("GENMIX_CUDA", "").strip()
    if flag not in ("", "0", "1"):
        return Plan(cuda=False, error=f"genmix: GENMIX_CUDA must be 0 or 1, got {flag!r}")
    if flag == "0":
        return Plan(cuda=False, messages=["genmix: GENMIX_CUDA=0: building the CPU kernels only"])
    if torch_cuda is None:
        if flag == "1":
            return Plan(cuda=False, error=f"genmix: GENMIX_CUDA=1 but torch {torch_version} is a CPU build; "
                                          "install a CUDA build of torch first")
        return Plan(cuda=False, messages=[f"genmix: torch {torch_version} has no CUDA: building the CPU kernels only"])

    search = find(env)
    if not search.found:
        looked = "; ".join(search.rejected) or "no CUDA_HOME, CUDA_PATH, nvcc on PATH or /usr/local/cuda"
        reason = f"no CUDA toolkit with {RUNTIME_HEADER.as_posix()} was found (looked at: {looked})"
        if flag == "1":
            return Plan(cuda=False, error=f"genmix: GENMIX_CUDA=1 but {reason}; fix: {FIX}, "
                                          "or build CPU-only with GENMIX_CUDA=0")
        if search.nvcc_on_path or search.explicit:  # the user has some CUDA: say loudly why it is unused
            return Plan(cuda=False, messages=[
                f"genmix: NOTICE: the CUDA kernels are NOT built: {reason}. Building the CPU kernels only. "
                f"To build them, {FIX}; GENMIX_CUDA=1 turns this notice into an error."])
        return Plan(cuda=False, messages=[f"genmix: {reason}: building the CPU kernels only"])

    # An explicit CUDA_HOME/CUDA_PATH is used as given; among discovered toolkits prefer the one
    # matching torch's CUDA major version (torch refuses to build across major versions).
    toolkit = search.found[0]
    if not search.explicit:
        major = torch_cuda.split(".")[0]
        toolkit = next((t for t in search.found if (t.version or "").split(".")[0] == major), toolkit)
    result = Plan(cuda=True, cuda_home=toolkit.home, cuda_version=toolkit.version)
    result.messages.append(f"genmix: CUDA toolkit {toolkit.version or '(version unknown)'} at {toolkit.home} "
                           f"(from {toolkit.source}); torch {torch_version} built with CUDA {torch_cuda}")
    result.messages += [f"genmix:   skipped {rejected}" for rejected in search.rejected]

    given = env.get("TORCH_CUDA_ARCH_LIST", "").strip()
    gpus = list(gpu_capabilities)
    if given and given != "native":
        result.arch_list, result.arch_reason = given, "TORCH_CUDA_ARCH_LIST"
    elif gpus:
        result.arch_list = gpu_arch_list(gpus, archs_of(toolkit.home))
        result.arch_reason = "the visible GPUs"
    elif given == "native":
        return Plan(cuda=False, error="genmix: TORCH_CUDA_ARCH_LIST=native but no GPU is visible; "
                                      "name the architectures, e.g. TORCH_CUDA_ARCH_LIST='8.0;9.0+PTX'")
    else:
        result.arch_list = default_arch_list(archs_of(toolkit.home), toolkit.version)
        result.arch_reason = "the default set: no GPU visible, TORCH_CUDA_ARCH_LIST unset"
    result.messages.append(f"genmix: building the CUDA kernels for {result.arch_list} ({result.arch_reason})")
    return result
