#!/usr/bin/env bash
# The GPU check: one command on a machine with an NVIDIA GPU (sized for an H200 with 16 cores,
# no network and a 15-minute lease), every step done within --budget seconds (default 480):
#   build       pip install --no-build-isolation --no-deps -e . against the torch already there,
#               CUDA kernels for this GPU's architecture only
#   info        genmix info --json (which backends were built)
#   tests       pytest -m cuda tests, on pytest-xdist workers when xdist is importable
#   opcheck     the tests named opcheck/compile (torch.library.opcheck, torch.compile); none
#               collected (pytest exit 5) counts as ok, with a note
#   resume      a CUDA GAN run (train-gan --preset gpu --device cuda) killed with SIGKILL after
#               its first checkpoint, then --resume: it must continue from that checkpoint's
#               step, not from 0 (this restores the CUDA RNG state)
#   experiment  the main job, cut to about 2 minutes: genmix experiment --preset gpu on
#               PneumoniaMNIST (generator, synthesis, generator evaluation, 6 classifier runs:
#               none/synth/gemix x 2 seeds, 2 epochs, 25% of the training set; report); its
#               generator's kimg comes from the resume step's s/kimg
#   bench       the op and GAN-step benchmarks on the GPU, only when the budget has room for them
#   report      benchmarks/results/<gpu>-<date>-check.{json,md}: per step ok / failed / cut /
#               skipped, seconds, and the failing test ids
# Steps run one after another, each under its own `timeout` (pytest steps get SIGINT first, so
# pytest still prints its -rf summary) inside the overall deadline. A cut step is reported as
# cut. The failing test ids are written the moment a test fails (tests/conftest.py:
# GENMIX_FAILED_LOG), every test has a time limit (GENMIX_TEST_TIMEOUT, or pytest-timeout's
# --timeout when that is installed), and the report is rewritten after every step (and copied to
# $OUT when that is set), so a run killed from outside still leaves what it found.
# Nothing is fetched from the network. Wheels in $GENMIX_WHEELS (default .whl/) are installed
# first with --no-index, for packages this machine lacks.
#
#   scripts/gpu-check.sh [--data FILE.npz] [--budget SECONDS] [--workers N] [--dry-run]
#     --data     the MedMNIST-layout npz of the experiment (default: shared/data/pneumoniamnist.npz,
#                else ../shared/data/pneumoniamnist.npz; without one the experiment is skipped and
#                the resume step trains on the embedded phantom)
#     --budget   the overall deadline in seconds (default 480); the plan's step timeouts are fitted
#                into it (shrunk toward each step's minimum, optional steps dropped)
#     --workers  pytest-xdist workers for the test steps (default 8)
#     --dry-run  print the fitted plan (steps, timeouts, commands) and exit; works on any machine
set -uo pipefail
cd "$(dirname "$0")/.."

DATA=""
BUDGET=480
WORKERS=8
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA=${2:?--data needs a file}; shift 2 ;;
        --data=*) DATA=${1#*=}; shift ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift 2 ;;
        --budget=*) BUDGET=${1#*=}; shift ;;
        --workers) WORKERS=${2:?--workers needs a number}; shift 2 ;;
        --workers=*) WORKERS=${1#*=}; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu-check: --budget must be whole seconds, got $BUDGET" >&2; exit 2 ;; esac
case "$WORKERS" in ''|*[!0-9]*) echo "gpu-check: --workers must be a number, got $WORKERS" >&2; exit 2 ;; esac
if [ -z "$DATA" ]; then
    for candidate in shared/data/pneumoniamnist.npz ../shared/data/pneumoniamnist.npz; do
        if [ -f "$candidate" ]; then DATA=$candidate; break; fi
    done
elif [ ! -f "$DATA" ]; then
    echo "gpu-check: --data $DATA does not exist; the experiment will be skipped" >&2
    DATA=""
fi

PY=${PYTHON:-python3}
WHEELS=${GENMIX_WHEELS:-.whl}
WORK=build/gpu-check
OVERHEAD=15          # seconds outside the steps: facts, package check, report rewrites
PER_TEST=60          # per-test limit in the test steps
DRILL_KIMG=1.5       # the resume drill: its run's length and checkpoint period (gpu preset, batch 64)
DRILL_SNAP=0.5
EXP_FIXED=85         # experiment seconds that are not generator training (start-up, synthesis,
                     # generator evaluation, 6 classifier runs, report), from which its kimg follows
EXP_ARGS=(--preset gpu --strategies none,synth,gemix --seeds 2 --epochs 2 --train-fraction 0.25
          --device cuda --no-progress)
START=$SECONDS

say() { echo "gpu-check: $*"; }
left() { echo $((BUDGET - (SECONDS - START))); }
has_module() { "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$1') is None)" 2>/dev/null; }

# ---------------------------------------------------------------------------------- the plan
# Each step: a nominal timeout and a minimum (seconds). When the nominal ones do not fit into
# BUDGET - OVERHEAD, every step is shrunk toward its minimum by the same share; optional steps
# are planned only when they fit at their nominal timeout; when even the minimums do not fit,
# steps are dropped in DROP_ORDER.
declare -A NOM=([wheels]=40 [build]=120 [info]=10 [tests]=85 [opcheck]=50 [resume]=80 [experiment]=125
                [bench]=60 [report]=10)
declare -A MIN=([wheels]=20 [build]=90 [info]=10 [tests]=45 [opcheck]=25 [resume]=60 [experiment]=95
                [bench]=60 [report]=10)
DROP_ORDER=(opcheck resume tests experiment)
declare -A SLOT PLAN_NOTE
if ! has_module ninja; then  # setuptools then compiles one file at a time
    NOM[build]=210 MIN[build]=150
    PLAN_NOTE[build]="ninja not importable: the sources compile one at a time"
fi
STEPS=()
ls "$WHEELS"/*.whl >/dev/null 2>&1 && STEPS+=(wheels)
STEPS+=(build info tests opcheck resume experiment)
without() {  # without STEP: drop it from STEPS
    local kept=() s
    for s in "${STEPS[@]}"; do [ "$s" = "$1" ] || kept+=("$s"); done
    STEPS=("${kept[@]}")
}
plan() {
    local avail=$((BUDGET - OVERHEAD)) nom=${NOM[report]} min=${MIN[report]} s victim
    for s in "${STEPS[@]}"; do nom=$((nom + NOM[$s])); min=$((min + MIN[$s])); done
    if [ $((nom + NOM[bench])) -le "$avail" ]; then
        STEPS+=(bench); nom=$((nom + NOM[bench])); min=$((min + MIN[bench]))
    else
        PLAN_NOTE[bench]="not planned: needs --budget >= $((nom + NOM[bench] + OVERHEAD))"
    fi
    STEPS+=(report)
    for victim in "${DROP_ORDER[@]}"; do
        [ "$min" -le "$avail" ] && break
        without "$victim"
        nom=$((nom - NOM[$victim])); min=$((min - MIN[$victim]))
        PLAN_NOTE[$victim]="not planned: the budget of ${BUDGET}s has no room for it"
    done
    if [ "$min" -gt "$avail" ]; then
        echo "gpu-check: --budget $BUDGET is too small: build, info and report alone need $((min + OVERHEAD))s" >&2
        exit 2
    fi
    for s in "${STEPS[@]}"; do
        if [ "$nom" -le "$avail" ]; then
            SLOT[$s]=${NOM[$s]}
        else  # shrink toward the minimum; integer arithmetic rounds down, so the sum fits
            SLOT[$s]=$(( MIN[$s] + (NOM[$s] - MIN[$s]) * (avail - min) / (nom - min) ))
        fi
    done
}
plan
TOTAL=0
for s in "${STEPS[@]}"; do TOTAL=$((TOTAL + SLOT[$s])); done
planned() { [ -n "${SLOT[$1]:-}" ]; }

# Test-step options: xdist workers and pytest-timeout's limit where those are importable.
XDIST=() PT_TIMEOUT=() TESTS_K="not opcheck and not compile"
if has_module xdist && [ "$WORKERS" -gt 1 ]; then
    XDIST=(-n "$WORKERS")
else
    # One process cannot get through the Triton GPU matrix (a JIT compile per dtype and case) in
    # the slot: keep every CUDA case and the other Triton tests, drop that matrix.
    TESTS_K="$TESTS_K and not (test_gpu_matches_reference and triton)"
    PLAN_NOTE[tests]="pytest-xdist not importable: one process, the Triton reference matrix deselected"
fi
has_module pytest_timeout && PT_TIMEOUT=(--timeout "$PER_TEST")
PYTEST_OPTS=(-q -p no:cacheprovider -rfE --durations=15 --continue-on-collection-errors ${XDIST[@]+"${XDIST[@]}"} ${PT_TIMEOUT[@]+"${PT_TIMEOUT[@]}"})
pytest_env() { echo "GENMIX_FAILED_LOG=$WORK/$1.failed GENMIX_TEST_TIMEOUT=$PER_TEST"; }

# ---------------------------------------------------------------------------------- steps
# step NAME CMD...: run CMD under `timeout` (its output in $WORK/NAME.log and on screen) and record
# name, status, exit, seconds, limit and a note in $WORK/steps.tsv. Status: ok, failed, cut (its
# timeout or the deadline killed it, or no time was left to start it), skipped (see the note).
# STEP_SIGNAL, STEP_OK5 and STEP_NOTE apply to the next call only.
STEP_SIGNAL=TERM STEP_OK5=0 STEP_NOTE=""
show() {  # the command, quoted only where a shell needs it
    local a out=""
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./=:,@+%-]+$ ]]; then out+=" $a"; else out+=" '${a//\'/\'\\\'\'}'"; fi
    done
    echo "${out# }"
}
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/steps.tsv"; }
skip() {  # skip NAME WHY
    if [ "$DRY" = 1 ]; then say "[$1] skipped: $2"; return 0; fi
    say "[$1] skipped: $2"; record "$1" skipped "" 0 0 "$2"; report_now
}
step() {
    local name=$1 signal=$STEP_SIGNAL ok5=$STEP_OK5 note=$STEP_NOTE
    shift
    STEP_SIGNAL=TERM STEP_OK5=0 STEP_NOTE=""
    local limit=${SLOT[$name]}
    if [ "$DRY" = 1 ]; then
        echo "gpu-check: [$name] timeout ${limit}s: $(show "$@")"
        [ -n "$note" ] && say "    note: $note"
        return 0
    fi
    local avail
    avail=$(left)  # every step but the report leaves the report its slot
    [ "$name" = report ] || avail=$((avail - SLOT[report]))
    if [ "$avail" -lt "$limit" ]; then
        limit=$avail
        note="${note:+$note; }limit cut to ${limit}s by the deadline"
    fi
    if [ "$limit" -lt 5 ] && [ "$limit" -lt "${SLOT[$name]}" ]; then
        say "[$name] cut: no time left to start it"
        record "$name" cut "" 0 0 "${note:+$note; }not started: the deadline"
        report_now
        return 1
    fi
    say "[$name] (at most ${limit}s) $*"
    local t0=$SECONDS rc status
    GPU_CHECK_LIMIT=$limit timeout -s "$signal" -k 15 "$limit" "$@" >"$WORK/$name.log" 2>&1 </dev/null
    rc=$?
    tail -n 25 "$WORK/$name.log"
    if [ -s "$WORK/$name.failed" ]; then
        say "[$name] $(sort -u "$WORK/$name.failed" | wc -l) failed test(s), as they failed ($WORK/$name.failed):"
        sort -u "$WORK/$name.failed" | head -n 40 | sed 's/^/  /'
    fi
    case "$rc" in
        0) status=ok ;;
        124|137) status=cut; note="${note:+$note; }killed at its ${limit}s limit" ;;
        5) if [ "$ok5" = 1 ]; then status=ok; note="${note:+$note; }no tests collected (pytest exit 5)"
           else status=failed; note="${note:+$note; }no tests collected (pytest exit 5)"; fi ;;
        *) status=failed ;;
    esac
    record "$name" "$status" "$rc" $((SECONDS - t0)) "$limit" "$note"
    say "[$name] $status (exit $rc) after $((SECONDS - t0))s${note:+: $note}"
    report_now
    [ "$status" = ok ]
}
report_now() {  # rewrite the report from what is in $WORK (quick: no torch import), copy it to $OUT
    [ "$DRY" = 1 ] && return 0
    "$PY" "$WORK/report.py" "$WORK" "$RESULT" "$BUDGET" >/dev/null 2>>"$WORK/report-errors.log" || true
    if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
        local f
        for f in "$RESULT.json" "$RESULT.md" "$WORK/gpu-check.log" "$WORK/failed-tests.txt" "$WORK/build.log" \
                 "$WORK/experiment/report.md"; do
            [ -f "$f" ] || continue
            case "$f" in */experiment/report.md) cp "$f" "$OUT/experiment-report.md" ;; *) cp "$f" "$OUT/" ;; esac
        done 2>/dev/null
    fi
}

if [ "$DRY" = 1 ]; then
    say "dry run: the plan on $(nproc) cores here, overall budget ${BUDGET}s (python: $PY; wheels: $WHEELS;" \
        "data: ${DATA:-none: the experiment is skipped, the resume step trains on the phantom})"
    ARCH="<this GPU's compute capability>"
    RESULT="benchmarks/results/<gpu>-<date>-check"
else
    rm -rf "$WORK"
    mkdir -p "$WORK"
    exec > >(tee "$WORK/gpu-check.log") 2>&1
    : >"$WORK/steps.tsv"
    GPU_SLUG=no-gpu ARCH=""
    RESULT=benchmarks/results/$GPU_SLUG-$(date +%F)-check
    mkdir -p benchmarks/results
    # The report writer (stdlib only) and the resume drill, written out for the steps to run.
    cat >"$WORK/report.py" <<'EOF'
import json, os, re, sys
import xml.etree.ElementTree as ET

work, result, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])


def load(name):
    try:
        with open(os.path.join(work, name)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read(name):
    try:
        with open(os.path.join(work, name), errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def junit(name):
    try:
        root = ET.parse(os.path.join(work, name)).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    out["seconds"] = round(sum(float(s.get("time", 0)) for s in suites), 1)
    return out


steps = []
for line in read("steps.tsv").splitlines():
    name, status, rc, seconds, limit, note = (line.split("\t") + [""] * 6)[:6]
    s = {"step": name, "status": status, "exit": int(rc) if rc.lstrip("-").isdigit() else None,
         "seconds": int(seconds or 0), "limit_s": int(limit or 0), "note": note}
    failed = sorted(set(l.strip() for l in read(f"{name}.failed").splitlines() if l.strip()))
    if failed or os.path.exists(os.path.join(work, f"{name}.failed")):
        s["failed_tests"] = failed
    counts = junit(f"{name}.xml")
    log = read(f"{name}.log")
    summary = re.findall(r"^=*\s*((?:(?:\d+ \w+|no tests ran)(?:, )?)+ in [\d.]+s\b.*?)\s*=*$", log, re.M)
    if counts:
        s["counts"] = counts
    if summary:
        s["pytest_summary"] = summary[-1]
    elif os.path.exists(os.path.join(work, f"{name}.failed")) and status == "cut":
        progress = re.findall(r"\[\s*(\d+)%\]", log)
        s["pytest_summary"] = (f"cut at {progress[-1]}% of the selected tests, before pytest's summary"
                               if progress else "cut before pytest's summary")
    if status in ("failed", "cut") and "pytest_summary" not in s:
        last = [l.strip() for l in log.splitlines() if l.strip()]
        if last:
            s["last_line"] = last[-1][:300]
    steps.append(s)

facts = load("facts.json") or {}
packages = load("packages.json") or {}
drill = load("resume/drill.json")
experiment = None
if os.path.isdir(os.path.join(work, "experiment")):
    experiment = {"command": read("experiment.cmd").strip(), "settings": read("experiment.toml").strip(),
                  "timings_s": load("experiment/timings.json"),
                  "report": os.path.join(work, "experiment", "report.md")
                  if os.path.exists(os.path.join(work, "experiment", "report.md")) else None}
bench = load("bench.json")
report = {"facts": facts, "budget_s": budget, "packages": packages,
          "extension": (load("info.json") or {}).get("extension"), "steps": steps,
          "resume_drill": drill, "experiment": experiment,
          "bench": [{"name": b["name"], "group": b.get("group"), "mean_s": b["stats"]["mean"],
                     **b.get("extra_info", {})} for b in (bench or {}).get("benchmarks", [])]}
with open(result + ".json", "w") as fh:
    json.dump(report, fh, indent=1, default=str)

all_failed = [f"[{s['step']}] {t}" for s in steps for t in s.get("failed_tests", [])]
with open(os.path.join(work, "failed-tests.txt"), "w") as fh:
    fh.write("".join(t + "\n" for t in all_failed))

md = [f"# GPU check: {facts.get('gpu', 'no GPU')} (sm {facts.get('arch', '?')}), {facts.get('date', '')}", "",
      f"torch {facts.get('torch', '?')} (CUDA {facts.get('torch_cuda', '?')}), Python {facts.get('python', '?')}, "
      f"nvcc {facts.get('nvcc', '?')}, {facts.get('cores', '?')} cores; budget {budget} s; "
      f"extension: {report['extension']}", ""]
if packages.get("missing_required") or packages.get("missing_optional"):
    md += [f"Missing Python packages: required {', '.join(packages.get('missing_required') or []) or 'none'}; "
           f"optional {', '.join(packages.get('missing_optional') or []) or 'none'}", ""]
md += ["| step | status | seconds | limit (s) | note |", "|---|---|---:|---:|---|"]
for s in steps:
    counts = s.get("counts")
    counts = (f"{counts['tests']} tests, {counts['failures']} failed, {counts['errors']} errors, "
              f"{counts['skipped']} skipped" if counts else "")
    last = f"last line: `{s['last_line']}`" if s.get("last_line") else ""
    extra = "; ".join(x for x in (s["note"], s.get("pytest_summary", "") or counts, last) if x)
    md.append(f"| {s['step']} | {s['status']}" + (f" (exit {s['exit']})" if s["exit"] not in (None, 0) else "")
              + f" | {s['seconds']} | {s['limit_s']} | {extra} |")
for s in steps:
    if s.get("failed_tests"):
        md += ["", f"## {s['step']}: {len(s['failed_tests'])} failed", ""]
        md += [f"- {t}" for t in s["failed_tests"][:60]]
        if len(s["failed_tests"]) > 60:
            md.append(f"- ... and {len(s['failed_tests']) - 60} more (see the JSON)")
if drill:
    md += ["", "## CUDA kill -9 / --resume", ""]
    md += ([drill.get("summary", "")] if drill.get("ok") else ["FAILED:", "", "```text", drill.get("summary", ""), "```"])
if experiment:
    md += ["", "## Experiment", "", f"`{experiment['command']}`", "", "```toml", experiment["settings"], "```"]
    if experiment["timings_s"]:
        md += ["", "| stage | seconds |", "|---|---:|"]
        md += [f"| {k} | {v} |" for k, v in experiment["timings_s"].items()]
    md += ["", f"report: {experiment['report'] or 'not written'}"]
if report["bench"]:
    md += ["", "## Benchmarks", "", "| name | mean (s) |", "|---|---:|"]
    md += [f"| {b['name']} | {b['mean_s']:.4g} |" for b in report["bench"]]
with open(result + ".md", "w") as fh:
    fh.write("\n".join(md) + "\n")
print(f"gpu-check: wrote {result}.json and {result}.md")
EOF
    cat >"$WORK/resume_drill.py" <<'EOF'
"""Start a CUDA GAN run, SIGKILL it after its first checkpoint, resume it, and check that the
resumed run continued from that checkpoint's step (and so restored its CUDA RNG state)."""
import argparse, glob, json, os, re, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--python", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--kimg", required=True)
ap.add_argument("--snapshot-kimg", required=True)
ap.add_argument("--limit", type=float, required=True)
a = ap.parse_args()
a.limit = min(a.limit, float(os.environ.get("GPU_CHECK_LIMIT") or a.limit))  # the deadline may cut the slot
t0 = time.monotonic()
result = {"ok": False, "data": a.data}


def finish(ok, summary):
    result.update(ok=ok, summary=summary, seconds=round(time.monotonic() - t0, 1))
    with open(os.path.join(a.out, "drill.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    print(("ok: " if ok else "FAILED: ") + summary)
    sys.exit(0 if ok else 1)


def checkpoints():
    found = []
    for path in glob.glob(os.path.join(a.out, "checkpoints", "ckpt-*.json")):
        m = re.search(r"ckpt-(\d+)\.json$", path)
        if m and os.path.exists(path[:-5] + ".safetensors"):
            found.append((int(m.group(1)), path))
    return sorted(found)


def log_lines():
    try:
        with open(os.path.join(a.out, "log.jsonl")) as fh:
            return [json.loads(l) for l in fh if l.strip()]
    except (OSError, ValueError):
        return []


os.makedirs(a.out, exist_ok=True)
base = [a.python, "-m", "genmix", "train-gan", "--data", a.data, "--out", a.out, "--device", "cuda", "--no-progress"]
base_first = ["--arch", "stylegan2"]  # the GAN drill (ADA and R1 streams); --resume keeps the run's family
first = base + base_first + ["--preset", "gpu", "--kimg", a.kimg, "--snapshot-kimg", a.snapshot_kimg, "--seed", "0"]
print("first run:", " ".join(first), flush=True)
with open(os.path.join(a.out, "first.log"), "w") as log:
    proc = subprocess.Popen(first, stdout=log, stderr=subprocess.STDOUT)  # same process group: a
    wait_until = t0 + 0.5 * a.limit                                      # timeout kills it too
    while not checkpoints() and proc.poll() is None and time.monotonic() < wait_until:
        time.sleep(0.2)
    ended = proc.poll()
    proc.kill()
    proc.wait()
tail = open(os.path.join(a.out, "first.log"), errors="replace").read()[-1500:]
if not checkpoints():
    finish(False, f"the first run wrote no checkpoint ({'it exited ' + str(ended) if ended is not None else 'none within %.0f s' % (0.5 * a.limit)}): {tail}")
if ended is not None:
    finish(False, f"the first run ended by itself (exit {ended}) before it could be killed; nothing to resume")
step, path = checkpoints()[-1]
result.update(killed_at_s=round(time.monotonic() - t0, 1), checkpoint=os.path.basename(path), checkpoint_step=step,
              checkpoint_has_cuda_rng='"__cuda__"' in open(path).read(), log_lines_before=len(log_lines()))
print(f"killed (SIGKILL) after {result['killed_at_s']} s; newest checkpoint {os.path.basename(path)}", flush=True)
before = len(log_lines())
resume = base + ["--resume"]
print("resume:", " ".join(resume), flush=True)
try:
    done = subprocess.run(resume, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=max(5.0, a.limit - (time.monotonic() - t0) - 3))
except subprocess.TimeoutExpired:
    finish(False, "the resumed run did not finish in time")
with open(os.path.join(a.out, "resume.log"), "w") as fh:
    fh.write(done.stdout)
if done.returncode != 0:
    finish(False, f"the resumed run failed (exit {done.returncode}): {done.stdout[-1500:]}")
try:
    starts = json.load(open(os.path.join(a.out, "run.json"))).get("starts", [])
except (OSError, ValueError):
    starts = []
last = starts[-1] if starts else {}
new = log_lines()[before:]
first_kimg = new[0].get("kimg") if new else None
result.update(resumed_from=last.get("resumed_from"), resumed_at=last.get("at"), first_new_log_kimg=first_kimg,
              final_kimg=new[-1].get("kimg") if new else None,
              s_per_kimg=1000 * new[-1]["sec_per_img"] if new and new[-1].get("sec_per_img") else None,
              said_resuming="resuming from" in done.stdout)
problems = []
if last.get("resumed_from") != os.path.basename(path)[:-5]:
    problems.append(f"run.json says it resumed from {last.get('resumed_from')}, not {os.path.basename(path)[:-5]}")
if last.get("at") != step or not step:
    problems.append(f"it resumed at {last.get('at')} images, not at the checkpoint's {step}")
if first_kimg is None or first_kimg <= step / 1000:
    problems.append(f"its first new log line is at {first_kimg} kimg, not past the checkpoint's {step / 1000} kimg")
if not result["checkpoint_has_cuda_rng"]:
    problems.append("the checkpoint holds no CUDA RNG state")
if problems:
    finish(False, "; ".join(problems))
finish(True, f"killed with SIGKILL at {step / 1000:g} kimg ({os.path.basename(path)}, with its CUDA RNG state), "
             f"resumed from it: first new log line at {first_kimg:g} kimg, finished at {result['final_kimg']:g} kimg, "
             f"{result['s_per_kimg'] or float('nan'):.2f} s/kimg")
EOF
fi

# ---------------------------------------------------------------------------------- 0. the machine
if [ "$DRY" = 0 ]; then
    if planned wheels; then
        step wheels "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$WHEELS"/*.whl
    fi
    # What this machine is (facts.json); exit 3 where torch sees no GPU.
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >"$WORK/nvidia-smi.csv" 2>&1 || true
    "$PY" - "$WORK/facts.json" <<'EOF'
import json, os, platform, re, subprocess, sys, time
try:
    import torch
except Exception as exc:
    print(f"gpu-check: FAILED: torch does not import: {exc}")
    sys.exit(3)
if not torch.cuda.is_available():
    print(f"gpu-check: FAILED: torch {torch.__version__} sees no CUDA GPU")
    sys.exit(3)
name = torch.cuda.get_device_name(0)
try:
    nvcc = re.findall(r"release ([\d.]+)", subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout)[0]
except Exception:
    nvcc = None
try:
    smi = open(os.path.join(os.path.dirname(sys.argv[1]), "nvidia-smi.csv")).read().strip()
except OSError:
    smi = None
facts = dict(gpu=name, slug=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
             arch="%d.%d" % torch.cuda.get_device_capability(0), torch=torch.__version__, torch_cuda=torch.version.cuda,
             python=platform.python_version(), nvcc=nvcc, cores=os.cpu_count(), date=time.strftime("%Y-%m-%d"),
             nvidia_smi=smi)
json.dump(facts, open(sys.argv[1], "w"), indent=1)
print(f"gpu-check: {name} (sm {facts['arch']}), torch {facts['torch']} (CUDA {facts['torch_cuda']}), "
      f"Python {facts['python']}, nvcc {nvcc}, {facts['cores']} cores")
EOF
    if [ $? != 0 ]; then
        say "FAILED: $PY has no CUDA torch that sees a GPU; bring a CUDA torch wheel in $WHEELS (nothing is downloaded)"
        record torch failed 3 0 0 "no CUDA torch that sees a GPU"
        report_now
        exit 1
    fi
    GPU_SLUG=$("$PY" -c "import json; print(json.load(open('$WORK/facts.json'))['slug'])" 2>/dev/null || echo gpu)
    ARCH=$("$PY" -c "import json; print(json.load(open('$WORK/facts.json'))['arch'])" 2>/dev/null || echo "")
    RESULT=benchmarks/results/$GPU_SLUG-$(date +%F)-check
    # Which Python packages are missing, and what that costs.
    "$PY" - "$WORK/packages.json" <<'EOF'
import importlib.util as u, json, sys
required = {"numpy": "everything", "scipy": "metrics", "sklearn": "metrics, report", "safetensors": "checkpoints",
            "tqdm": "training", "matplotlib": "report", "PIL": "sample grids", "pytest": "the test steps",
            "setuptools": "the build"}
optional = {"xdist": "parallel test steps (else one process and a smaller Triton matrix)",
            "pytest_timeout": "per-test limits (else tests/conftest.py's SIGALRM)",
            "pytest_benchmark": "the bench step", "ninja": "a parallel build (else much slower)",
            "triton": "the Triton backend"}
miss_r = [n for n in required if u.find_spec(n) is None]
miss_o = [n for n in optional if u.find_spec(n) is None]
old_setuptools = False
if "setuptools" not in miss_r:
    import setuptools
    old_setuptools = int(setuptools.__version__.split(".")[0]) < 77
for n in miss_r:
    print(f"gpu-check: MISSING required Python package {n} (needed by {required[n]})")
for n in miss_o:
    print(f"gpu-check: missing optional Python package {n}: {optional[n]}")
if old_setuptools:
    print("gpu-check: MISSING setuptools >= 77 (pyproject's license string): the build will fail; bring a wheel")
if not miss_r and not miss_o and not old_setuptools:
    print("gpu-check: every Python package the check uses is importable")
json.dump({"missing_required": miss_r + (["setuptools>=77"] if old_setuptools else []), "missing_optional": miss_o},
          open(sys.argv[1], "w"))
EOF
    HAVE_PYTEST=1; has_module pytest || HAVE_PYTEST=0
    HAVE_BENCH=1; has_module pytest_benchmark || HAVE_BENCH=0
    report_now
else
    HAVE_PYTEST=1 HAVE_BENCH=1
    say "the plan: ${#STEPS[@]} steps, ${TOTAL}s of step timeouts + ${OVERHEAD}s overhead within the budget of ${BUDGET}s"
    for s in bench opcheck resume tests experiment; do
        [ -n "${PLAN_NOTE[$s]:-}" ] && ! planned "$s" && say "[$s] ${PLAN_NOTE[$s]}"
    done
    say "per-test limit ${PER_TEST}s in the test steps: $([ ${#PT_TIMEOUT[@]} -gt 0 ] && echo "pytest-timeout's --timeout" \
        || echo "GENMIX_TEST_TIMEOUT (tests/conftest.py, SIGALRM; pytest-timeout not importable here)");" \
        "failing ids appended to build/gpu-check/<step>.failed as they fail (GENMIX_FAILED_LOG)"
    planned wheels && say "[wheels] timeout ${SLOT[wheels]}s: $PY -m pip install -q --no-index --no-deps --find-links $WHEELS $WHEELS/*.whl"
fi

# ---------------------------------------------------------------------------------- 1. build, info
STEP_NOTE=${PLAN_NOTE[build]:-}
step build env GENMIX_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="$(nproc)" \
    "$PY" -m pip install --no-build-isolation --no-deps -v -e .
step info sh -c '"$0" -m genmix info --json >"$1"' "$PY" "$WORK/info.json"

# ---------------------------------------------------------------------------------- 2. CUDA tests
if planned tests; then
    if [ "$HAVE_PYTEST" = 1 ]; then
        STEP_SIGNAL=INT STEP_NOTE=${PLAN_NOTE[tests]:-}
        step tests env $(pytest_env tests) "$PY" -m pytest tests -m cuda -k "$TESTS_K" \
            --junitxml="$WORK/tests.xml" "${PYTEST_OPTS[@]}"
    else
        skip tests "pytest is not importable"
    fi
fi
if planned opcheck; then
    if [ "$HAVE_PYTEST" = 1 ]; then
        STEP_SIGNAL=INT STEP_OK5=1
        step opcheck env $(pytest_env opcheck) "$PY" -m pytest tests -k "(opcheck or compile) and not sources_compile" \
            -m "not slow" --junitxml="$WORK/opcheck.xml" "${PYTEST_OPTS[@]}"
    else
        skip opcheck "pytest is not importable"
    fi
fi

# ---------------------------------------------------------------------------------- 3. CUDA kill -9 / resume
if planned resume; then
    step resume "$PY" "$WORK/resume_drill.py" --python "$PY" --data "${DATA:-phantom}" --out "$WORK/resume" \
        --kimg "$DRILL_KIMG" --snapshot-kimg "$DRILL_SNAP" --limit "${SLOT[resume]}"
fi

# ---------------------------------------------------------------------------------- 4. the main job
# Generator training gets the experiment's slot less EXP_FIXED seconds; its kimg follows from the
# resume step's s/kimg (same preset and GPU), 4 kimg when that step measured nothing.
if planned experiment; then
    GAN_SECONDS=$(( SLOT[experiment] - EXP_FIXED )); [ "$GAN_SECONDS" -lt 10 ] && GAN_SECONDS=10
    if [ "$DRY" = 1 ]; then
        KIMG="<${GAN_SECONDS}s at the resume step's s/kimg, 1..40>"
    else
        KIMG=$("$PY" - "$WORK/resume/drill.json" "$GAN_SECONDS" <<'EOF'
import json, sys
try:
    s = float(json.load(open(sys.argv[1]))["s_per_kimg"])
    print(round(min(40.0, max(1.0, float(sys.argv[2]) / s)), 1))
except Exception:
    print(4.0)
EOF
)
    fi
    # StyleGAN2, as in the resume step whose s/kimg sizes it (the experiment's default family is
    # the diffusion model, whose s/kimg differs).
    EXP_TOML="gan_arch = \"stylegan2\"
gan_kimg = $KIMG
fid_n = 500
tstr = false"
    if [ -z "$DATA" ]; then
        skip experiment "no PneumoniaMNIST npz (pass --data FILE.npz)"
    else
        EXP_CMD=("$PY" -m genmix experiment --data "$DATA" --out "$WORK/experiment" --config "$WORK/experiment.toml"
                 "${EXP_ARGS[@]}")
        if [ "$DRY" = 0 ]; then
            echo "$EXP_TOML" >"$WORK/experiment.toml"
            printf '%q ' "${EXP_CMD[@]}" >"$WORK/experiment.cmd"
            say "experiment settings ($WORK/experiment.toml): $(echo "$EXP_TOML" | tr '\n' ';')"
        fi
        step experiment "${EXP_CMD[@]}"
        [ "$DRY" = 1 ] && say "    $WORK/experiment.toml: $(echo "$EXP_TOML" | tr '\n' ';')"
    fi
fi

# ---------------------------------------------------------------------------------- 5. benchmarks
if planned bench; then
    if [ "$HAVE_BENCH" = 1 ]; then
        STEP_SIGNAL=INT
        step bench "$PY" -m pytest benchmarks -k cuda --benchmark-only --benchmark-json="$WORK/bench.json" \
            -q -p no:cacheprovider
    else
        skip bench "pytest-benchmark is not importable"
    fi
fi

# ---------------------------------------------------------------------------------- 6. report
if [ "$DRY" = 0 ]; then
    for s in tests opcheck resume experiment bench; do
        planned "$s" || record "$s" skipped "" 0 0 "${PLAN_NOTE[$s]:-not planned}"
    done
fi
step report "$PY" "$WORK/report.py" "$WORK" "$RESULT" "$BUDGET"
if [ "$DRY" = 1 ]; then
    say "[report] $RESULT.{json,md}, rewritten after every step, copied to \$OUT when set" \
        "(with gpu-check.log, failed-tests.txt, build.log, experiment-report.md: 6 files)"
    exit 0
fi
report_now
FAILED=$(awk -F'\t' '$2 != "ok" && $2 != "skipped" {print $1 " " $2}' "$WORK/steps.tsv" | tr '\n' ',' | sed 's/,$//; s/,/, /g')
say "done in $((SECONDS - START))s; $RESULT.{json,md}${FAILED:+; not ok: $FAILED}"
[ -s "$WORK/failed-tests.txt" ] && { say "failing tests:"; sed 's/^/  /' "$WORK/failed-tests.txt"; }
[ -n "${OUT:-}" ] && [ -d "$OUT" ] && cp "$WORK/gpu-check.log" "$OUT/" 2>/dev/null
[ -z "$FAILED" ]
