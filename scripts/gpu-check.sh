#!/usr/bin/env bash
# The GPU check: one command on a machine with an NVIDIA GPU (written for an H100/H200 with 16
# cores and no network), done in at most 9 minutes, every figure left in
# benchmarks/results/<gpu>-<date>.{json,md} (and copied to $OUT when that is set):
#   1. build genmix with its CUDA kernels, for this GPU's architecture only
#   2. pytest -m cuda tests
#   3. the op benchmarks on the GPU: CUDA and Triton against the reference, GB/s against a
#      measured device-to-device copy
#   4. a StyleGAN2-ADA training step, impl=auto against impl=ref, in s/kimg
#   5. about 2 minutes of `genmix train-gan --preset gpu` on PneumoniaMNIST, its length in kimg
#      taken from step 4's speed
# Every part runs under its own `timeout`, inside one overall deadline, so a hang costs only
# that part. Nothing is fetched from the network.
#
# Assumes: python3 (or $PYTHON) imports a CUDA build of torch that sees the GPU, plus numpy,
# scipy, scikit-learn, safetensors, tqdm, matplotlib, pillow, pytest, pytest-benchmark, ninja and
# setuptools >= 77. Missing ones can be brought as wheels in $GENMIX_WHEELS (default .whl/),
# installed first with --no-index; torch==2.14.1 is installed from them (or from a
# configured local index) only where no CUDA torch is importable.
#
#   scripts/gpu-check.sh [--data FILE.npz] [--budget SECONDS] [--dry-run]
#     --data     the MedMNIST-layout npz for step 5 (default: shared/data/pneumoniamnist.npz,
#                else ../shared/data/pneumoniamnist.npz; without one, step 5 is skipped)
#     --budget   the overall deadline in seconds (default 525, leaving room for kills and the report)
#     --dry-run  print the plan, run nothing (works on any machine)
set -uo pipefail
cd "$(dirname "$0")/.."

DATA=""
BUDGET=525
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA=$2; shift 2 ;;
        --data=*) DATA=${1#*=}; shift ;;
        --budget) BUDGET=$2; shift 2 ;;
        --budget=*) BUDGET=${1#*=}; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$DATA" ]; then
    for candidate in shared/data/pneumoniamnist.npz ../shared/data/pneumoniamnist.npz; do
        if [ -f "$candidate" ]; then DATA=$candidate; break; fi
    done
fi

PY=${PYTHON:-python3}
WHEELS=${GENMIX_WHEELS:-.whl}
WORK=build/gpu-check
TRAIN_SECONDS=110                     # step 5's target length, start-up included
# Per-part limits (s); each is also cut to what is left of the overall budget.
T_SETUP=60 T_BUILD=150 T_INFO=20 T_TESTS=100 T_OPS=65 T_GAN=40 T_TRAIN=$((TRAIN_SECONDS + 20)) T_REPORT=20
START=$SECONDS

say() { echo "gpu-check: $*"; }
left() { echo $((BUDGET - (SECONDS - START))); }

# step NAME LIMIT LOGFILE CMD...: run CMD under `timeout`, its output in LOGFILE and on screen,
# and record name, exit status and seconds in $WORK/steps.tsv (124 = timed out).
step() {
    local name=$1 limit=$2 log=$3
    shift 3
    local avail=$(( $(left) - T_REPORT ))
    [ "$limit" -gt "$avail" ] && limit=$avail
    if [ "$DRY" = 1 ]; then
        printf 'gpu-check: [%s] timeout %ss:' "$name" "$limit"; printf ' %q' "$@"; echo
        return 0
    fi
    if [ "$limit" -lt 10 ]; then
        say "[$name] skipped: out of time"
        printf '%s\t%s\t%s\n' "$name" "skipped" 0 >>"$WORK/steps.tsv"
        return 1
    fi
    say "[$name] (at most ${limit}s) $*"
    local t0=$SECONDS rc
    timeout -k 10 "$limit" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    tail -n 15 "$log"
    printf '%s\t%s\t%s\n' "$name" "$rc" $((SECONDS - t0)) >>"$WORK/steps.tsv"
    say "[$name] exit $rc after $((SECONDS - t0))s"
    return $rc
}

if [ "$DRY" = 1 ]; then
    say "dry run: the plan, with an overall budget of ${BUDGET}s (python: $PY; wheels: $WHEELS; data: ${DATA:-none, step 5 skipped})"
    ARCH="<this GPU's compute capability>"
    KIMG="<from step 4: ${TRAIN_SECONDS}s of training at its s/kimg>"
else
    rm -rf "$WORK"
    mkdir -p "$WORK"
    exec > >(tee "$WORK/gpu-check.log") 2>&1
    : >"$WORK/steps.tsv"
    # 0. What this machine is; wheels carried along; a CUDA torch.
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        step wheels "$T_SETUP" "$WORK/wheels.log" "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$WHEELS"/*.whl
    fi
    if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
        say "no CUDA torch that sees a GPU; trying torch==2.14.1 from local wheels or index"
        step torch "$T_SETUP" "$WORK/torch.log" "$PY" -m pip install -q --find-links "$WHEELS" torch==2.14.1
        if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
            say "FAILED: $PY has no CUDA torch that sees a GPU"; exit 1
        fi
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >"$WORK/nvidia-smi.csv" 2>&1 || true
    "$PY" - >"$WORK/facts.env" <<'EOF'
import re, torch
name = torch.cuda.get_device_name(0)
print("GPU_NAME=%r" % name)
print("GPU_SLUG=%s" % re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
print("ARCH=%d.%d" % torch.cuda.get_device_capability(0))
EOF
    . "$WORK/facts.env"
    say "$GPU_NAME (sm ${ARCH}), torch $("$PY" -c 'import torch; print(torch.__version__)'), $(nproc) cores, budget ${BUDGET}s"
    missing=$("$PY" -c "
import importlib.util as u
names = ['numpy', 'scipy', 'sklearn', 'safetensors', 'tqdm', 'matplotlib', 'PIL', 'pytest', 'pytest_benchmark', 'ninja', 'triton']
print(' '.join(n for n in names if u.find_spec(n) is None))")
    [ -n "$missing" ] && say "WARNING: not importable: $missing (bring them as wheels in $WHEELS)"
    "$PY" -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" \
        || say "WARNING: setuptools < 77 cannot read pyproject's license string; bring a newer one in $WHEELS"
fi

# 1. Build, for this GPU only, and require the CUDA kernels.
step build "$T_BUILD" "$WORK/build.log" env GENMIX_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$(nproc)" \
    "$PY" -m pip install --no-build-isolation --no-deps -v -e .
step info "$T_INFO" "$WORK/info.log" sh -c "\"\$0\" -m genmix info --json >$WORK/info.json" "$PY"

# 2. The CUDA tests.
step tests "$T_TESTS" "$WORK/tests.log" "$PY" -m pytest -m cuda tests -q -p no:cacheprovider \
    --junitxml="$WORK/tests.xml" --durations=10

# 3. Op benchmarks on the GPU (the CPU rows are deselected).
step bench-ops "$T_OPS" "$WORK/bench-ops.log" "$PY" -m pytest benchmarks -k "cuda and not gan_step" \
    --benchmark-only --benchmark-json="$WORK/bench-ops.json" -q -p no:cacheprovider

# 4. The GAN training step, fused against reference.
step bench-gan "$T_GAN" "$WORK/bench-gan.log" "$PY" -m pytest benchmarks/test_bench_gan_step.py -k cuda \
    --benchmark-only --benchmark-json="$WORK/bench-gan.json" -q -p no:cacheprovider

# 5. ~2 minutes of real training: kimg from step 4's s/kimg at 32 px (PneumoniaMNIST's 28 px
#    trains at 32), less ~20 s of start-up; 10 kimg if step 4 gave nothing.
#    A checkpoint halfway, so a run cut short still leaves its log line.
if [ "$DRY" = 0 ]; then
    read -r KIMG SNAP < <("$PY" - "$WORK/bench-gan.json" "$TRAIN_SECONDS" <<'EOF'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["benchmarks"]
    s = [r["extra_info"]["s_per_kimg"] for r in rows
         if r["extra_info"].get("impl") == "auto" and "32px" in r["group"]]
    kimg = max(1.0, round((float(sys.argv[2]) - 20) / s[0], 1))
except Exception:
    kimg = 10.0
print(kimg, round(kimg / 2, 2))
EOF
)
else
    SNAP="<half of that>"
fi
if [ -n "$DATA" ]; then
    rm -rf "$WORK/train"
    step train "$T_TRAIN" "$WORK/train.log" "$PY" -m genmix train-gan --data "$DATA" --out "$WORK/train" \
        --preset gpu --kimg "$KIMG" --snapshot-kimg "$SNAP" --no-progress
else
    say "[train] skipped: no PneumoniaMNIST npz (pass --data FILE.npz)"
fi

# 6. One JSON and one markdown file with every figure.
if [ "$DRY" = 1 ]; then
    say "[report] benchmarks/results/<gpu>-<date>.{json,md}, copied to \$OUT when set"
    exit 0
fi
DATE=$(date +%F)
RESULT=benchmarks/results/$GPU_SLUG-$DATE
"$PY" - "$WORK" "$RESULT" "$GPU_NAME" "$ARCH" "${DATA:-}" "${KIMG:-}" "$BUDGET" <<'EOF'
import json, os, subprocess, sys
import xml.etree.ElementTree as ET

work, result, gpu, arch, data, kimg, budget = sys.argv[1:8]
sys.path.insert(0, "benchmarks")


def load(name):
    try:
        with open(os.path.join(work, name)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


steps = []
for line in open(os.path.join(work, "steps.tsv")):
    name, rc, seconds = line.rstrip("\n").split("\t")
    steps.append({"step": name, "exit": rc, "seconds": int(seconds),
                  "status": "ok" if rc == "0" else "timed out" if rc in ("124", "137") else "skipped" if rc == "skipped" else "failed"})
tests = None
try:
    root = ET.parse(os.path.join(work, "tests.xml")).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    tests["seconds"] = float(suite.get("time", 0))
    tests["failed_cases"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                             if c.find("failure") is not None or c.find("error") is not None]
except (OSError, ET.ParseError, AttributeError):
    pass


def rows(bench):
    return [{"name": b["name"], "group": b["group"], "mean_s": b["stats"]["mean"], "min_s": b["stats"]["min"],
             "stddev_s": b["stats"]["stddev"], "rounds": b["stats"]["rounds"], **b["extra_info"]}
            for b in (bench or {}).get("benchmarks", [])]


train = None
log = os.path.join(work, "train", "log.jsonl")
if os.path.exists(log):
    lines = [json.loads(l) for l in open(log) if l.strip()]
    train = {"data": data, "kimg_asked": float(kimg), "log_lines": len(lines), "last": lines[-1] if lines else None}
    train["seconds"] = next((s["seconds"] for s in steps if s["step"] == "train"), None)
try:
    facts = {"nvidia_smi": open(os.path.join(work, "nvidia-smi.csv")).read().strip()}
except OSError:
    facts = {}
import torch
facts.update(gpu=gpu, arch=arch, torch=torch.__version__, torch_cuda=torch.version.cuda, budget_s=int(budget))
report = {"facts": facts, "extension": (load("info.json") or {}).get("extension"), "steps": steps,
          "tests": tests, "ops": rows(load("bench-ops.json")), "gan_step": rows(load("bench-gan.json")),
          "train": train}
with open(result + ".json", "w") as fh:
    json.dump(report, fh, indent=1, default=str)

from summarize import summarize  # noqa: E402

md = [f"# GPU check: {gpu} (sm {arch}), {os.path.basename(result)[-10:]}", "",
      f"torch {facts['torch']} (CUDA {facts['torch_cuda']}); extension: {report['extension']}", "",
      "| step | status | seconds |", "|---|---|---:|"]
md += [f"| {s['step']} | {s['status']} (exit {s['exit']}) | {s['seconds']} |" for s in steps]
if tests:
    md += ["", f"`pytest -m cuda tests`: {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
               f"{tests['skipped']} skipped in {tests['seconds']:.0f} s"]
    md += [f"- FAILED {c}" for c in tests["failed_cases"][:30]]
for name, title in (("bench-ops.json", "Op benchmarks"), ("bench-gan.json", "GAN training step (4 iterations per round)")):
    if load(name):
        md += ["", f"## {title}", "", summarize(os.path.join(work, name))]
if train:
    last = train["last"] or {}
    md += ["", "## train-gan --preset gpu", "",
           f"{data}: asked {train['kimg_asked']} kimg, step took {train['seconds']} s; last log line: "
           + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items()
                       if not isinstance(v, dict))]
with open(result + ".md", "w") as fh:
    fh.write("\n".join(md) + "\n")
print(f"gpu-check: wrote {result}.json and {result}.md")
EOF
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    cp "$RESULT.json" "$RESULT.md" "$WORK/gpu-check.log" "$OUT/" 2>/dev/null && say "copied the results to \$OUT"
fi
say "done in $((SECONDS - START))s"
