"""The `genmix` command line (also `python -m genmix`).

User mistakes end in one line on stderr and a non-zero exit (2 for usage, 1 at run time),
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other usage error here
        self.exit(2, f"genmix: error: {message}\n")


def _versions() -> dict:
    import numpy
    import torch

    import genmix

    versions = {
        "genmix": genmix.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": numpy.__version__,
    }
    try:
        import triton

        versions["triton"] = triton.__version__
    except ImportError:
        versions["triton"] = None
    return versions


def _devices() -> list:
    import torch

    devices = [f"cpu ({torch.get_num_threads()} threads)"]
    for i in range(torch.cuda.device_count()):
        devices.append(f"cuda:{i} ({torch.cuda.get_device_name(i)})")
    return devices


def cmd_info(args) -> int:
    from genmix.ops import _backend, backends

    ext = _backend.extension()
    info = {
        "versions": _versions(),
        "devices": _devices(),
        "extension": ext.build_info() if ext is not None else {"error": _backend.extension_error()},
        "ops": backends(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("genmix " + info["versions"]["genmix"])
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if k != "genmix"))
    print("devices:  " + "; ".join(info["devices"]))
    if ext is not None:
        build = ext.build_info()
        print(f"genmix._C: built (cuda kernels: {'yes' if build['cuda'] else 'no'}, "
              f"openmp: {build['openmp'] or 'no'})")
    else:
        print(f"genmix._C: not built ({_backend.extension_error()})")
    for op, rows in info["ops"].items():
        print(f"\n{op}:")
        for name, row in rows.items():
            state = "usable" if row["available"] else "unavailable: " + row["reason"]
            print(f"  {name:<14} {state}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genmix", description="Generative mixup for medical image classification.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    info = sub.add_parser("info", help="versions, devices, and which kernel backends are usable here")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("genmix: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        print(f"genmix: error: {exc}", file=sys.stderr)
        return 1
