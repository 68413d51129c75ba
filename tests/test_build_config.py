"""How the build finds the CUDA toolkit and chooses GPU architectures (genmix/_build_config.py),
driven with fake toolkit folders and fake nvcc scripts; and that the built extension imports
on its own."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from genmix import _build_config as bc

ROOT = Path(__file__).resolve().parents[1]
LIST_ARCH_13 = "compute_75 compute_80 compute_86 compute_89 compute_90 compute_100 compute_120"
LIST_ARCH_12 = "compute_50 compute_60 compute_70 compute_75 compute_80 compute_86 compute_89 compute_90"


def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_toolkit(home: Path, version=13000, headers=True, list_arch=LIST_ARCH_13) -> Path:
    """A toolkit layout: bin/nvcc (answers --list-gpu-arch and a dry run like the real one),
    include/cuda.h with its version and, unless headers=False, include/cuda_runtime_api.h."""
    (home / "include").mkdir(parents=True, exist_ok=True)
    (home / "include" / "cuda.h").write_text(f"#define CUDA_VERSION {version}\n")
    if headers:
        (home / "include" / "cuda_runtime_api.h").write_text("#pragma once\n")
    _script(home / "bin" / "nvcc", f"""
case "$*" in
  *--list-gpu-arch*) for a in {list_arch}; do echo $a; done ;;
  *--dryrun*) echo "#\\$ _HERE_={home}/bin" >&2; echo "#\\$ TOP={home}/bin/.." >&2 ;;
esac
""")
    return home


def which_from(path_dir):
    """A `which` that looks only in `path_dir` (the fake PATH)."""
    def which(name):
        p = Path(path_dir) / name if path_dir else None
        return str(p) if p is not None and p.exists() else None
    return which


def search(env, path_dir=None, default_homes=()):
    return bc.find_toolkits(env, which=which_from(path_dir), default_homes=default_homes)


def plan(env, tmp_path, path_dir=None, default_homes=(), torch_cuda="13.0", gpus=()):
    return bc.plan(env, torch_cuda=torch_cuda, gpu_capabilities=gpus, torch_version="2.14.1",
                   find=lambda e: search(e, path_dir, default_homes))


# --- the toolkit ---------------------------------------------------------------------------

def test_cuda_home_wins(tmp_path):
    a = fake_toolkit(tmp_path / "a")
    b = fake_toolkit(tmp_path / "b")
    found = search({"CUDA_HOME": str(a), "CUDA_PATH": str(b)}).found
    assert [t.home for t in found] == [str(a), str(b)]
    assert found[0].source == "CUDA_HOME" and found[0].version == "13.0"


def test_wrapper_nvcc_outside_the_toolkit_leads_to_the_real_toolkit(tmp_path):
    # The layout of this project's build machine: /usr/local/bin/nvcc is `exec <toolkit>/bin/nvcc "$@"`;
    # torch's guess, the wrapper's grandparent, has no CUDA headers.
    real = fake_toolkit(tmp_path / "opt" / "cuda-13.0")
    wrapper_dir = tmp_path / "usr" / "bin"
    _script(wrapper_dir / "nvcc", f'exec {real}/bin/nvcc "$@"\n')
    result = search({}, wrapper_dir)
    assert [t.home for t in result.found] == [str(real)]
    assert any(str(tmp_path / "usr") in r and "cuda_runtime_api.h" in r for r in result.rejected)


def test_wrapper_found_through_the_dry_run_alone(tmp_path):
    # A wrapper whose text does not name the real nvcc: the real nvcc's dry run still names its folder.
    real = fake_toolkit(tmp_path / "toolkit")
    wrapper_dir = tmp_path / "bin"
    (tmp_path / "env.sh").write_text(f"REAL={real}/bin/nvc\n")
    _script(wrapper_dir / "nvcc", f'. {tmp_path}/env.sh\nexec "${{REAL}}c" "$@"\n')
    assert str(real) in bc.nvcc_reported_homes(str(wrapper_dir / "nvcc"))
    assert [t.home for t in search({}, wrapper_dir).found] == [str(real)]


def test_symlinked_nvcc_resolves_to_its_toolkit(tmp_path):
    real = fake_toolkit(tmp_path / "cuda-12.8", version=12080, list_arch=LIST_ARCH_12)
    (tmp_path / "bin").mkdir()
    os.symlink(real / "bin" / "nvcc", tmp_path / "bin" / "nvcc")
    found = search({}, tmp_path / "bin").found
    assert found[0].home == str(real) and found[0].version == "12.8"


def test_default_location_is_the_last_resort(tmp_path):
    default = fake_toolkit(tmp_path / "usr-local-cuda")
    assert [t.home for t in search({}, None, (str(default),)).found] == [str(default)]


def test_toolkit_matching_torchs_cuda_major_is_preferred_among_discovered_ones(tmp_path):
    old = fake_toolkit(tmp_path / "cuda-12.4", version=12040, list_arch=LIST_ARCH_12)
    new = fake_toolkit(tmp_path / "cuda-13.0")
    p = plan({}, tmp_path, old / "bin", default_homes=(str(new),), torch_cuda="13.0")
    assert p.cuda and p.cuda_home == str(new)
    # ...but an explicit CUDA_HOME is used as given.
    p = plan({"CUDA_HOME": str(old)}, tmp_path, default_homes=(str(new),), torch_cuda="13.0")
    assert p.cuda_home == str(old)


# --- no usable toolkit ---------------------------------------------------------------------

def test_no_headers_anywhere_builds_cpu_only_with_a_notice_naming_the_fix(tmp_path):
    bare = fake_toolkit(tmp_path / "cuda", headers=False)
    p = plan({}, tmp_path, bare / "bin")
    assert not p.cuda and p.error is None
    notice = " ".join(p.messages)
    assert "NOT built" in notice and "cuda_runtime_api.h" in notice
    assert "CUDA_HOME" in notice and "GENMIX_CUDA=1" in notice
    assert str(bare) in notice  # says where it looked


def test_wrong_cuda_home_is_reported(tmp_path):
    p = plan({"CUDA_HOME": str(tmp_path / "nowhere")}, tmp_path)
    assert not p.cuda and "nowhere" in " ".join(p.messages) and "NOT built" in " ".join(p.messages)


def test_genmix_cuda_1_without_a_toolkit_is_an_error(tmp_path):
    bare = fake_toolkit(tmp_path / "cuda", headers=False)
    p = plan({"GENMIX_CUDA": "1"}, tmp_path, bare / "bin")
    assert not p.cuda and p.error
    assert "GENMIX_CUDA=1" in p.error and "cuda_runtime_api.h" in p.error and "CUDA_HOME" in p.error
    assert "\n" not in p.error
    p = plan({"GENMIX_CUDA": "1"}, tmp_path)  # nothing at all
    assert p.error and "CUDA_HOME" in p.error


def test_genmix_cuda_1_with_a_cpu_torch_is_an_error(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda")
    p = plan({"GENMIX_CUDA": "1", "CUDA_HOME": str(toolkit)}, tmp_path, torch_cuda=None)
    assert p.error and "CPU build" in p.error


def test_cpu_torch_or_genmix_cuda_0_builds_cpu_kernels_quietly(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda")
    cases = (({"CUDA_HOME": str(toolkit)}, None), ({"CUDA_HOME": str(toolkit), "GENMIX_CUDA": "0"}, "13.0"))
    for env, cuda in cases:
        p = plan(env, tmp_path, torch_cuda=cuda)
        assert not p.cuda and p.error is None and p.messages


def test_nothing_cuda_on_the_machine_is_no_notice(tmp_path):
    p = plan({}, tmp_path)
    assert not p.cuda and p.error is None and "NOTICE" not in " ".join(p.messages)


def test_bad_genmix_cuda_value(tmp_path):
    assert "0 or 1" in plan({"GENMIX_CUDA": "yes"}, tmp_path).error


# --- architectures -------------------------------------------------------------------------

def test_no_gpu_builds_the_default_set(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda")
    p = plan({"CUDA_HOME": str(toolkit)}, tmp_path)
    assert p.cuda and p.arch_list == "7.5;8.0;9.0+PTX"  # CUDA 13 has no Volta
    assert any("7.5;8.0;9.0+PTX" in m for m in p.messages)  # printed
    old = fake_toolkit(tmp_path / "cuda12", version=12040, list_arch=LIST_ARCH_12)
    assert plan({"CUDA_HOME": str(old)}, tmp_path, torch_cuda="12.4").arch_list == "7.0;8.0;9.0+PTX"


def test_default_set_without_an_arch_listing_uses_the_version():
    assert bc.default_arch_list(None, "13.0") == "7.5;8.0;9.0+PTX"
    assert bc.default_arch_list(None, "12.1") == "7.0;8.0;9.0+PTX"
    assert bc.default_arch_list(["7.0", "7.5", "8.0", "8.6"]) == "7.0;8.0+PTX"  # a toolkit without Hopper


def test_torch_cuda_arch_list_is_honoured(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda")
    p = plan({"CUDA_HOME": str(toolkit), "TORCH_CUDA_ARCH_LIST": "8.6"}, tmp_path, gpus=[(9, 0)])
    assert p.arch_list == "8.6" and "TORCH_CUDA_ARCH_LIST" in p.arch_reason


def test_visible_gpus_choose_the_archs(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda")
    assert plan({"CUDA_HOME": str(toolkit)}, tmp_path, gpus=[(9, 0), (9, 0)]).arch_list == "9.0+PTX"
    assert plan({"CUDA_HOME": str(toolkit)}, tmp_path, gpus=[(9, 0), (8, 6)]).arch_list == "8.6;9.0+PTX"
    # A GPU newer than the toolkit knows is built for the toolkit's newest arch, with PTX.
    assert plan({"CUDA_HOME": str(toolkit)}, tmp_path, gpus=[(13, 0)]).arch_list == "12.0+PTX"


def test_native_without_a_gpu_is_an_error(tmp_path):
    toolkit = fake_toolkit(tmp_path / "cuda")
    p = plan({"CUDA_HOME": str(toolkit), "TORCH_CUDA_ARCH_LIST": "native"}, tmp_path)
    assert p.error and "native" in p.error


def test_the_module_needs_no_torch():
    # setup.py loads it before genmix (and possibly before the right torch) is importable.
    code = ("import sys, importlib.util; sys.modules['torch'] = None; "
            f"s = importlib.util.spec_from_file_location('m', {str(ROOT / 'genmix' / '_build_config.py')!r}); "
            "m = importlib.util.module_from_spec(s); sys.modules['m'] = m; s.loader.exec_module(m); "
            "print(m.default_arch_list(None, '13.0'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7.5;8.0;9.0+PTX"


# --- the built extension -------------------------------------------------------------------

def test_the_extension_imports_on_its_own():
    out = subprocess.run([sys.executable, "-c", "import genmix._C as c; print(c.build_info()['openmp'])"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr



# --- the scripts ---------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["scripts/install.sh", "scripts/ci-cuda-build.sh", "scripts/gpu-check.sh",
                                    ".ci/run"])
def test_scripts_parse(script):
    out = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_gpu_check_dry_run_prints_the_plan_within_eight_minutes(tmp_path):
    (tmp_path / "d.npz").touch()  # present: the plan includes the main job
    cmd = ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--dry-run", "--data", str(tmp_path / "d.npz")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    plan_lines = [line for line in out.stdout.splitlines() if "] timeout " in line]
    steps = [line.split("[")[1].split("]")[0] for line in plan_lines]
    assert steps == ["build", "info", "tests", "opcheck", "resume", "experiment", "report"]
    assert sum(int(line.split("timeout ")[1].split("s:")[0]) for line in plan_lines) <= 8 * 60
    assert "-m cuda" in out.stdout and "--preset gpu" in out.stdout and str(tmp_path / "d.npz") in out.stdout
    assert "GENMIX_CUDA=1" in out.stdout and "TORCH_CUDA_ARCH_LIST=" in out.stdout


def test_ci_builds_cuda_after_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("scripts/ci-cuda-build.sh")
    script = (ROOT / "scripts" / "ci-cuda-build.sh").read_text()
    assert "-u CUDA_HOME -u CUDA_PATH -u TORCH_CUDA_ARCH_LIST -u GENMIX_CUDA" in script


def test_a_torch_older_than_the_minimum_is_refused_in_one_line():
    plan = bc.plan({}, torch_cuda=None, torch_version="2.5.1+cu124")
    assert plan.error and "\n" not in plan.error
    assert "torch 2.5.1+cu124 is too old" in plan.error and ">= 2.6" in plan.error
    for version in ("2.6.0", "2.11.0+cu130", "2.15.0", "3.0.0a0"):
        assert bc.plan({}, torch_cuda=None, torch_version=version).error is None
    assert bc.torch_too_old("?") is None
