"""`genmix info`: versions and per-op backend availability, and one-line usage errors."""

import json
import subprocess
import sys

from genmix.cli import main


def test_info_lists_every_op_and_backend(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for needle in ("upfirdn2d:", "bias_act:", "cpp@cpu", "ref@cpu", "triton@cpu", "torch"):
        assert needle in out
    assert "genmix._C: built" in out


def test_info_json_is_machine_readable(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ops"]["upfirdn2d"]["cpp@cpu"]["available"] is True
    assert info["ops"]["bias_act"]["ref@cpu"] == {"available": True, "reason": None}
    assert info["extension"]["cuda"] in (True, False)


def test_python_dash_m_works_and_bad_usage_is_one_line():
    ok = subprocess.run([sys.executable, "-m", "genmix", "info"], capture_output=True, text=True)
    assert ok.returncode == 0 and "upfirdn2d" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "genmix", "no-such-command"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "genmix: error:" in bad.stderr
    assert "Traceback" not in bad.stderr
