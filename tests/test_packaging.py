"""The installed layout: Triton kernels importable as genmix.kernels, CI runs the README's
test command."""

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_triton_kernels_are_the_genmix_kernels_subpackage():
    pkg = importlib.import_module("genmix.kernels")
    assert Path(pkg.__file__).resolve().parent == ROOT / "kernels"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_extension_is_built_and_reports_itself():
    from genmix import _C

    info = _C.build_info()
    assert info["openmp"], "the CPU kernels must be built with OpenMP"
    assert isinstance(info["cuda"], bool)


def test_every_subpackage_is_listed_for_installation():
    # A subpackage missing from pyproject's list installs fine in editable mode and breaks in
    # a wheel; catch it here.
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"genmix." + p.parent.relative_to(ROOT / "genmix").as_posix().replace("/", ".")
             for p in (ROOT / "genmix").rglob("__init__.py") if p.parent != ROOT / "genmix"}
    found |= {"genmix", "genmix.kernels"}
    assert found == listed
    for name in listed:
        doc = importlib.import_module(name).__doc__ or ""
        assert doc.strip() and "placeholder" not in doc, f"{name} needs a docstring"
