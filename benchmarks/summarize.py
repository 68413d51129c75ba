"""Turn a pytest-benchmark JSON file into a markdown table: time per implementation, speed-up
over the baseline (the PyTorch reference, or the usual Python recipe where one is timed),
achieved GB/s and its share of the device's copy bandwidth.

    python benchmarks/summarize.py benchmarks/results/cpu.json > benchmarks/results/cpu.md
"""

import json
import sys
from collections import defaultdict


def summarize(path: str) -> str:
    with open(path) as fh:
        data = json.load(fh)
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        groups[bench["group"]][info["impl"]] = (bench["stats"]["mean"], info)
    machine = data.get("machine_info", {})
    lines = [
        f"Benchmarks from `{path}` ({data.get('datetime', '?')[:10]}), "
        f"machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}",
        "",
        "| case | impl | mean ms | speed-up vs baseline | GB/s | % of copy bandwidth | throughput |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for group in sorted(groups):
        rows = groups[group]
        base = [(mean, info) for mean, info in rows.values() if info.get("baseline", info["impl"] == "ref")]
        base_mean, base_info = base[0] if base else (None, {})
        for impl in sorted(rows, key=lambda name: (not rows[name][1].get("baseline", name == "ref"), name)):
            mean, info = rows[impl]
            if base_mean and "images_per_s" in info and "images_per_s" in base_info:
                # Throughput rows may time different amounts of work (several runs at once).
                speedup = f"{info['images_per_s'] / base_info['images_per_s']:.2f}x"
            else:
                speedup = f"{base_mean / mean:.2f}x" if base_mean else "-"
            if "gbs" in info:  # kernel rows: achieved bandwidth against the copy roofline
                bandwidth = f"{info['gbs']:.1f} | {100 * info['gbs'] / info['copy_gbs']:.0f}% | "
            else:  # training-step rows: images/s, s/kimg and peak memory
                peak = info.get("peak_memory_mb")
                bandwidth = (f"- | - | {info['images_per_s']:.1f} img/s, {info['s_per_kimg']:.1f} s/kimg"
                             + (f", peak {peak:.0f} MB" if peak is not None else ""))
            lines.append(f"| {group} | {impl} | {mean * 1e3:.3f} | {speedup} | {bandwidth} |")
    devices = sorted({info["device"] for rows in groups.values() for _, info in rows.values()})
    copy = sorted({(info["device"], info["copy_gbs"]) for rows in groups.values() for _, info in rows.values()
                   if "copy_gbs" in info})
    lines += ["", "Devices: " + "; ".join(devices) + "."]
    if copy:
        lines.append("Copy bandwidth (read + write): " + "; ".join(f"{d}: {g:.1f} GB/s" for d, g in dict(copy).items()) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/summarize.py RESULTS.json")
    sys.stdout.write(summarize(sys.argv[1]))
