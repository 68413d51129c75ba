#!/usr/bin/env bash
# The MedMNIST comparison on one GPU, sized for at most 8 minutes of an H200 (16 cores, no
# network): one `genmix experiment` on PneumoniaMNIST with
#   classifier  ResNet-18 at the data's own 28 px, the MedMNIST protocol (preset medmnist: batch
#               128, AdamW lr 1e-3 with a cosine schedule, up to 100 epochs, the epoch chosen and
#               early stopping after 20 epochs without progress on val macro-F1)
#   strategies  none, mixup, cutmix, synth, genmix, gemix and the control oversample (real
#               images repeated to the synthetic set's count and class balance; in the plan
#               whenever the strategy registry has it, see CONTROLS below)
#   seeds       5, at 10% and 100% of the training set (--train-fractions 0.1,1.0: a learning
#               curve, the generator retrained on each reduced set)
#   generator   the soft-label diffusion model, preset gpu, its training capped by time at
#               GEN_TOTAL_S seconds across both sizes (about 3 minutes of an H200; the preset's
#               own kimg cap is far off, so the experiment's gan_budget_min stops it); one
#               validation-KID snapshot at its end; FID/KID on FID_N images, no TSTR
#   concurrency --concurrent-runs N classifier runs at once (default 8: a worker process per two
#               cores), under NVIDIA MPS when it can be started (--mps auto, the default: a
#               private control daemon, probed with a CUDA call and stopped at the end; without
#               MPS the workers' kernels time-slice the GPU instead of overlapping)
# The whole run is held to --budget seconds (default 480): the experiment gets what the start-up
# leaves less RESERVE_S for the results, under `timeout`. Results land in
# benchmarks/results/<gpu>-<date>-experiment/: report.md (the GPU, "wall-clock: N s" of the
# whole script, MPS, workers, the command, then the learning-curve report), report-10pct.md and
# report-100pct.md (each size's full report), summary.json (both sizes' summaries), run.json
# (facts, timings, measured classifier throughput), learning_curve.png and gpu-experiment.log;
# those 7 files are copied to $OUT when it is set. The experiment folder itself stays in
# build/gpu-experiment/ (rerunning the script resumes it: finished stages are kept).
#
#   scripts/gpu-experiment.sh [--data FILE.npz] [--budget SECONDS] [--concurrent-runs N]
#                             [--mps auto|on|off] [--epochs E] [--patience P] [--dry-run]
#     --data             the MedMNIST-layout npz (default: shared/data/pneumoniamnist.npz, else
#                        ../shared/data/pneumoniamnist.npz)
#     --budget           the deadline of the whole script in seconds (default 480)
#     --concurrent-runs  classifier runs at once (default 8)
#     --mps              auto: use MPS when it starts; on: fail without it; off: never
#     --epochs/--patience  override the medmnist preset's 100 / 20 (to trim a run that overshoots)
#     --dry-run          print the plan (commands, settings, expected times) and exit; any machine
set -uo pipefail
cd "$(dirname "$0")/.."

DATA=""
BUDGET=480
WORKERS=8
MPS=auto
EPOCHS=""
PATIENCE=""
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA=${2:?--data needs a file}; shift 2 ;;
        --data=*) DATA=${1#*=}; shift ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift 2 ;;
        --budget=*) BUDGET=${1#*=}; shift ;;
        --concurrent-runs) WORKERS=${2:?--concurrent-runs needs a number}; shift 2 ;;
        --concurrent-runs=*) WORKERS=${1#*=}; shift ;;
        --mps) MPS=${2:?--mps needs auto, on or off}; shift 2 ;;
        --mps=*) MPS=${1#*=}; shift ;;
        --epochs) EPOCHS=${2:?--epochs needs a number}; shift 2 ;;
        --epochs=*) EPOCHS=${1#*=}; shift ;;
        --patience) PATIENCE=${2:?--patience needs a number}; shift 2 ;;
        --patience=*) PATIENCE=${1#*=}; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu-experiment: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
whole() { case "$2" in ''|*[!0-9]*) echo "gpu-experiment: $1 must be a whole number, got '$2'" >&2; exit 2 ;; esac; }
whole --budget "$BUDGET"
whole --concurrent-runs "$WORKERS"
[ "$WORKERS" -ge 1 ] || { echo "gpu-experiment: --concurrent-runs must be >= 1" >&2; exit 2; }
[ -z "$EPOCHS" ] || whole --epochs "$EPOCHS"
[ -z "$PATIENCE" ] || whole --patience "$PATIENCE"
case "$MPS" in auto|on|off) ;; *) echo "gpu-experiment: --mps must be auto, on or off, got '$MPS'" >&2; exit 2 ;; esac
if [ -z "$DATA" ]; then
    for candidate in shared/data/pneumoniamnist.npz ../shared/data/pneumoniamnist.npz; do
        if [ -f "$candidate" ]; then DATA=$candidate; break; fi
    done
fi
if [ -z "$DATA" ] || [ ! -f "$DATA" ]; then
    if [ "$DRY" = 1 ]; then
        DATA=${DATA:-shared/data/pneumoniamnist.npz}
        DATA_NOTE=" (not found here)"
    else
        echo "gpu-experiment: no PneumoniaMNIST npz at ${DATA:-shared/data/pneumoniamnist.npz or ../shared/data/pneumoniamnist.npz}; pass --data FILE.npz" >&2
        exit 2
    fi
fi

PY=${PYTHON:-python3}
WORK=build/gpu-experiment
EXP=$WORK/experiment
# --------------------------------------------------------------------------- the experiment
STRATEGIES="none,mixup,cutmix,synth,genmix,gemix"
# Controls: strategies a generative one must beat to count as helping. Each is added when the
# strategy registry (genmix/mixing/registry.py) has it; add a name here to add a control.
CONTROLS="oversample"
SEEDS=5
FRACTIONS="0.1,1.0"
PRESET=medmnist
GAN_ARCH=diffusion
GAN_PRESET=gpu
GEN_TOTAL_S=170      # diffusion model: seconds of an H200 across both sizes, snapshots included
GEN_SNAPSHOT_S=15    # per size: the final snapshot (sample grid, validation KID on 524 images) and checkpoint
FID_N=500
RESERVE_S=15         # after the experiment: collecting, writing and copying the results
# Assumptions behind the expected times (unmeasured until a GPU runs this script):
ASSUMED_IMG_S=50000  # aggregate classifier training images/s, ResNet-18 28 px, all workers together
ASSUMED_EPOCHS=45    # mean epochs a run trains before early stopping ends it (at most the preset's 100)
PER_RUN_S=3          # per run and worker: validation overhead beyond the images, test evaluation, plots

for control in $CONTROLS; do
    if grep -q "Strategy(\"$control\"" genmix/mixing/registry.py 2>/dev/null; then
        STRATEGIES="$STRATEGIES,$control"
    else
        echo "gpu-experiment: control '$control' is not a registered strategy yet: left out" >&2
    fi
done
N_STRATEGIES=$(echo "$STRATEGIES" | tr ',' '\n' | wc -l)
N_SIZES=$(echo "$FRACTIONS" | tr ',' '\n' | wc -l)
GEN_BUDGET_MIN=$("$PY" -c "print(round(max($GEN_TOTAL_S / $N_SIZES - $GEN_SNAPSHOT_S, 10) / 60, 3))" 2>/dev/null || echo 1.25)
N_TRAIN=$("$PY" -c "import numpy, sys; print(len(numpy.load(sys.argv[1])['train_labels']))" "$DATA" 2>/dev/null || echo 4708)
SETTINGS="gan_budget_min = $GEN_BUDGET_MIN
fid_n = $FID_N
tstr = false"
EXP_ARGS=(--data "$DATA" --out "$EXP" --preset "$PRESET" --strategies "$STRATEGIES" --seeds "$SEEDS"
          --train-fractions "$FRACTIONS" --gan-arch "$GAN_ARCH" --gan-preset "$GAN_PRESET"
          --config "$WORK/experiment.toml" --concurrent-runs "$WORKERS" --device cuda --no-progress)
[ -n "$EPOCHS" ] && EXP_ARGS+=(--epochs "$EPOCHS")
[ -n "$PATIENCE" ] && EXP_ARGS+=(--patience "$PATIENCE")
EXP_CMD=("$PY" -m genmix experiment "${EXP_ARGS[@]}")

show() {  # the command, quoted only where a shell needs it
    local a out=""
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./=:,@+%-]+$ ]]; then out+=" $a"; else out+=" '${a//\'/\'\\\'\'}'"; fi
    done
    echo "${out# }"
}

# Expected seconds per phase, from the assumptions above (printed by --dry-run and logged).
expected() {
    "$PY" - "$N_TRAIN" "$STRATEGIES" "$SEEDS" "$FRACTIONS" "$WORKERS" "$ASSUMED_IMG_S" \
        "${EPOCHS:-100}" "${PATIENCE:-20}" "$ASSUMED_EPOCHS" "$PER_RUN_S" "$GEN_TOTAL_S" <<'EOF'
import math, sys
n, strategies, seeds, fractions, workers, img_s, epochs, patience, mean_epochs, per_run, gen = sys.argv[1:]
n, seeds, workers, epochs, patience = int(n), int(seeds), int(workers), int(epochs), int(patience)
img_s, per_run, gen = float(img_s), float(per_run), float(gen)
mean_epochs = min(epochs, max(patience + 1, float(mean_epochs)))
# synth and oversample append 50% more images; the others train on the real set
grow = {"synth": 1.5, "oversample": 1.5}
strategies, fractions = strategies.split(","), [float(f) for f in fractions.split(",")]
rows, total = [], 0.0
rows.append(("start-up (imports, data, CUDA, MPS probe)", 10))
rows.append((f"diffusion generator, {len(fractions)} sizes (gan_budget_min, one snapshot each)", gen))
rows.append(("synthesis: one-hot and GeMix sets, oversample set, per size", 15 * len(fractions)))
for f in fractions:
    n_f = math.ceil(n * f)
    images = seeds * sum(grow.get(s, 1.0) * n_f for s in strategies) * mean_epochs
    runs = seeds * len(strategies)
    seconds = images / img_s + runs * per_run / workers + 10
    rows.append((f"classifiers at {f:g}: {runs} runs, {n_f} real images, ~{images / 1e6:.2f} M images "
                 f"({mean_epochs:g} epochs each on average)", seconds))
rows.append(("generator evaluation (FID/KID, no TSTR), per size", 10 * len(fractions)))
rows.append(("reports", 10))
for name, s in rows:
    print(f"  ~{s:5.0f} s  {name}")
    total += s
print(f"  ~{total:5.0f} s  in all (assuming {img_s:g} classifier images/s over all workers)")
EOF
}

if [ "$DRY" = 1 ]; then
    echo "gpu-experiment: dry run: the plan (budget ${BUDGET}s, $(nproc) cores here; python: $PY)"
    echo "gpu-experiment: data: $DATA${DATA_NOTE:-} ($N_TRAIN training images)"
    echo "gpu-experiment: strategies $STRATEGIES; $SEEDS seeds; training fractions $FRACTIONS;" \
         "preset $PRESET (ResNet-18, 28 px, batch 128, epochs ${EPOCHS:-100}, patience ${PATIENCE:-20} on val macro-F1)"
    echo "gpu-experiment: generator $GAN_ARCH, preset $GAN_PRESET, ${GEN_BUDGET_MIN} min of training per size" \
         "(~${GEN_TOTAL_S}s across sizes with snapshots); $WORKERS classifier runs at once; MPS: $MPS"
    echo "gpu-experiment: $WORK/experiment.toml: $(echo "$SETTINGS" | paste -sd ';' | sed 's/;/; /g')"
    echo "gpu-experiment: [experiment] timeout about $((BUDGET - 10 - RESERVE_S))s (what start-up leaves): $(show "${EXP_CMD[@]}")"
    echo "gpu-experiment: expected times:"
    expected || echo "  (no python here to estimate them)"
    echo "gpu-experiment: [results] benchmarks/results/<gpu>-<date>-experiment/: report.md (the GPU," \
         "'wall-clock: N s'), report-10pct.md, report-100pct.md, summary.json, run.json, learning_curve.png," \
         "gpu-experiment.log; copied to \$OUT when set (7 files)"
    exit 0
fi

# --------------------------------------------------------------------------- the run
START=$SECONDS
STARTED_AT=$(date +%FT%T)
mkdir -p "$WORK"
exec > >(tee "$WORK/gpu-experiment.log") 2>&1
say() { echo "gpu-experiment: $*"; }
echo "$SETTINGS" >"$WORK/experiment.toml"
"$PY" - "$WORK/facts.json" <<'EOF'
import json, os, platform, re, sys, time
try:
    import torch
except Exception as exc:
    print(f"gpu-experiment: FAILED: torch does not import: {exc}")
    sys.exit(3)
if not torch.cuda.is_available():
    print(f"gpu-experiment: FAILED: torch {torch.__version__} sees no CUDA GPU")
    sys.exit(3)
name = torch.cuda.get_device_name(0)
try:
    import genmix._C as ext
    built = ext.build_info()
except Exception as exc:
    built = {"error": str(exc)}
facts = dict(gpu=name, slug=re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
             arch="%d.%d" % torch.cuda.get_device_capability(0), torch=torch.__version__, torch_cuda=torch.version.cuda,
             python=platform.python_version(), cores=os.cpu_count(), date=time.strftime("%Y-%m-%d"), extension=built)
json.dump(facts, open(sys.argv[1], "w"), indent=1)
print(f"gpu-experiment: {name} (sm {facts['arch']}), torch {facts['torch']}, {facts['cores']} cores; genmix._C: {built}")
EOF
[ $? = 0 ] || { say "FAILED: no CUDA torch that sees a GPU"; exit 1; }
SLUG=$("$PY" -c "import json; print(json.load(open('$WORK/facts.json'))['slug'])")
RESULT=benchmarks/results/$SLUG-$(date +%F)-experiment
say "expected times:"
expected

# MPS: a private control daemon (its pipe and log folders under $WORK), probed with one CUDA call.
MPS_USED=no
if [ "$MPS" != off ]; then
    if command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
        export CUDA_MPS_PIPE_DIRECTORY=$PWD/$WORK/mps-pipe CUDA_MPS_LOG_DIRECTORY=$PWD/$WORK/mps-log
        mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
        if nvidia-cuda-mps-control -d && timeout 60 "$PY" -c "import torch; torch.zeros(1, device='cuda').add_(1); torch.cuda.synchronize()"; then
            MPS_USED=yes
            trap 'echo quit | nvidia-cuda-mps-control >/dev/null 2>&1' EXIT
            say "MPS control daemon started ($CUDA_MPS_PIPE_DIRECTORY): the workers' kernels may overlap"
        else
            echo quit | nvidia-cuda-mps-control >/dev/null 2>&1
            unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
            say "MPS did not start or a CUDA call under it failed: running without it"
        fi
    else
        say "nvidia-cuda-mps-control not found: running without MPS"
    fi
    if [ "$MPS" = on ] && [ "$MPS_USED" = no ]; then say "FAILED: --mps on, but MPS is not usable"; exit 1; fi
fi

LIMIT=$((BUDGET - (SECONDS - START) - RESERVE_S))
say "[experiment] (at most ${LIMIT}s) $(show "${EXP_CMD[@]}")"
printf '%q ' "${EXP_CMD[@]}" >"$WORK/experiment.cmd"
T0=$SECONDS
timeout -s TERM -k 10 "$LIMIT" "${EXP_CMD[@]}" </dev/null
RC=$?
EXP_S=$((SECONDS - T0))
case "$RC" in 0) STATUS=ok ;; 124|137) STATUS=cut ;; *) STATUS=failed ;; esac
say "[experiment] $STATUS (exit $RC) after ${EXP_S}s"
if [ "$MPS_USED" = yes ]; then echo quit | nvidia-cuda-mps-control >/dev/null 2>&1; trap - EXIT; fi

mkdir -p "$RESULT"
WALL=$((SECONDS - START))
"$PY" - "$WORK" "$RESULT" "$STATUS" "$RC" "$WALL" "$EXP_S" "$MPS_USED" "$WORKERS" "$STARTED_AT" "$FRACTIONS" <<'EOF'
import glob, json, os, shutil, sys

work, result, status, rc, wall, exp_s, mps, workers, started, fractions = sys.argv[1:]
exp = os.path.join(work, "experiment")


def load(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def label(f):
    return f"{float(f):g}"


facts = load(os.path.join(work, "facts.json"), {})
command = open(os.path.join(work, "experiment.cmd")).read().strip() if os.path.exists(os.path.join(work, "experiment.cmd")) else ""
sizes, summary, timings = {}, {}, {}
for f in fractions.split(","):
    d = os.path.join(exp, f"fraction-{label(f)}")
    summary[label(f)] = load(os.path.join(d, "summary.json"))
    timings[label(f)] = load(os.path.join(d, "timings.json"), {})
    # Classifier throughput: images trained (steps x batch of every run) over the wall time
    # from the first run's start to the last run's metrics (validation and evaluation included).
    images, starts, ends, per_run = 0, [], [], []
    for run in glob.glob(os.path.join(d, "runs", "*", "*")):
        info, cfg = load(os.path.join(run, "run.json"), {}), load(os.path.join(run, "config.json"), {})
        if not info.get("complete") or not os.path.exists(os.path.join(run, "metrics.json")):
            continue
        images += int(info.get("progress", 0)) * int(cfg.get("batch", 0))
        if info.get("starts"):
            starts.append(info["starts"][0]["time"])
        ends.append(os.path.getmtime(os.path.join(run, "metrics.json")))
        lines = [json.loads(l) for l in open(os.path.join(run, "history.jsonl")) if l.strip()] \
            if os.path.exists(os.path.join(run, "history.jsonl")) else []
        if lines and lines[-1].get("sec_per_step"):
            per_run.append(int(cfg.get("batch", 0)) / lines[-1]["sec_per_step"])
    span = None
    if starts and ends:
        import time as _t
        first = min(_t.mktime(_t.strptime(s, "%Y-%m-%dT%H:%M:%S")) for s in starts)
        span = max(ends) - first
    per_run.sort()
    sizes[label(f)] = dict(runs_done=len(ends), images_trained=images, classifier_wall_s=span and round(span, 1),
                           aggregate_images_per_s=round(images / span) if span else None,
                           median_run_images_per_s=round(per_run[len(per_run) // 2]) if per_run else None)

run = dict(facts=facts, started=started, status=status, exit=int(rc), wall_clock_s=int(wall),
           experiment_s=int(exp_s), mps=mps, concurrent_runs=int(workers), command=command,
           settings=open(os.path.join(work, "experiment.toml")).read(), sizes=sizes, timings=timings)
with open(os.path.join(result, "run.json"), "w") as fh:
    json.dump(run, fh, indent=1)
with open(os.path.join(result, "summary.json"), "w") as fh:
    json.dump(summary, fh, indent=1)

head = [f"# GPU experiment: {facts.get('gpu', '?')}, {facts.get('date', '')}", "",
        f"GPU: {facts.get('gpu', '?')} (sm {facts.get('arch', '?')}), torch {facts.get('torch', '?')} "
        f"(CUDA {facts.get('torch_cuda', '?')}), {facts.get('cores', '?')} cores; genmix._C: {facts.get('extension')}",
        "", f"wall-clock: {wall} s (the whole script; the experiment {exp_s} s, {status}"
        + (f", exit {rc}" if status != "ok" else "") + ")", "",
        f"{workers} classifier runs at once, MPS: {mps}", "", f"`{command}`", "", "```toml",
        run["settings"].strip(), "```", "", "| size | runs done | images trained | classifier wall (s) | "
        "aggregate images/s | median images/s of a run |", "|---|---:|---:|---:|---:|---:|"]
for f, s in sizes.items():
    head.append(f"| {f} | {s['runs_done']} | {s['images_trained']} | {s['classifier_wall_s']} | "
                f"{s['aggregate_images_per_s']} | {s['median_run_images_per_s']} |")
head += ["", "Aggregate images/s: every finished run's training images over the span from the first run's "
         "start to the last run's test metrics (per-epoch validation and each run's evaluation included). "
         "A run's images/s: its training steps' average speed as its last log line gives it (per-epoch validation included).", ""]
body = ""
if os.path.exists(os.path.join(exp, "report.md")):
    body = open(os.path.join(exp, "report.md")).read().replace("](figures/", "](")
else:
    body = "The learning-curve report was not written (the experiment did not finish); see the sizes' reports.\n"
with open(os.path.join(result, "report.md"), "w") as fh:
    fh.write("\n".join(head) + "\n" + body)
for f in fractions.split(","):
    src = os.path.join(exp, f"fraction-{label(f)}", "report.md")
    if os.path.exists(src):
        shutil.copy(src, os.path.join(result, f"report-{round(float(f) * 100):d}pct.md"))
figure = os.path.join(exp, "figures", "learning_curve.png")
if os.path.exists(figure):
    shutil.copy(figure, os.path.join(result, "learning_curve.png"))
print(f"gpu-experiment: results in {result}")
EOF
cp "$WORK/gpu-experiment.log" "$RESULT/" 2>/dev/null
say "wall-clock: ${WALL} s; experiment $STATUS; $RESULT"
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
    for f in report.md report-10pct.md report-100pct.md summary.json run.json learning_curve.png; do
        [ -f "$RESULT/$f" ] && cp "$RESULT/$f" "$OUT/"
    done
    cp "$WORK/gpu-experiment.log" "$OUT/" 2>/dev/null
fi
[ "$STATUS" = ok ]
