#!/usr/bin/env bash
# Issue 45's GPU check: one entry point for a lent GPU machine (benchmarks/gpu/README.md).
#
#   bash benchmarks/gpu/run.sh              on the GPU machine, with OUT set (results come back from there)
#   bash benchmarks/gpu/run.sh --dry-run    here, on a CPU: the plan, the equivalence on the CPU, and
#                                           the report from a stored run (OUT defaults to a temp dir)
#   bash benchmarks/gpu/run.sh --only matrix,report   a second try: only the steps named
#
# Steps, in the issue's priority order, each under its own `timeout`, each one's output appended
# to $OUT/run.log; a step that fails or times out is recorded in $OUT/summary.txt and the next one
# runs. The whole script keeps inside GPU_BUDGET_S (default 540 s, inside the device tool's 600 s
# per command): each step's limit is cut to what is left, and the last report keeps a reserve.
#
# Environment: OUT (required on the device), PYTHON (default python3, the image's), GPU_BUDGET_S,
# GPU_WORK (scratch; default a new /tmp dir), GPU_COMMIT (the commit sent: the copied tree has no
# .git), GPU_BASELINE (the stored run the dry run reports on).
set -uo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }
DRY=0
ONLY=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --only) ONLY="${2:-}"; shift ;;
        --only=*) ONLY="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export COLUMNS="${COLUMNS:-200}"  # rich tables in the log, unfolded
PY="${PYTHON:-python3}"
if [ -z "${OUT:-}" ]; then
    if [ "$DRY" = 1 ]; then
        OUT=$(mktemp -d /tmp/lstm-bench-gpu-dry-XXXXXX)
    else
        echo "run.sh: OUT is not set (the device tool sets it; for a rehearsal here use --dry-run)" >&2
        exit 2
    fi
fi
mkdir -p "$OUT" || exit 2
WORK="${GPU_WORK:-$(mktemp -d /tmp/lstm-bench-gpu-XXXXXX)}"
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
BUDGET="${GPU_BUDGET_S:-540}"
RESERVE="${GPU_RESERVE_S:-40}"   # kept for the final report and packing
MIN_STEP="${GPU_MIN_STEP_S:-15}"  # a step that would get less is skipped, not started
CELL_TIMEOUT=90                  # per cell: one hung worker cannot eat a whole step
T0=$SECONDS
LOG="$OUT/run.log"
SUMMARY="$OUT/summary.txt"
CHECKS="$OUT/checks.json"
REPORT="$OUT/report.md"
COMMIT="${GPU_COMMIT:-$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)}"
DATE=$(date -u +%Y%m%d)
if [ "$DRY" = 1 ]; then
    DEV=gpu-dryrun-cpu
else
    NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
    DEV="gpu-$("$PY" benchmarks/gpu/gpu_check.py slug "${NAME:-unknown}" 2>/dev/null || echo unknown)"
fi
PREFIX="$DEV-$DATE"   # run ids: $PREFIX-matrix, ... ; the report: results/published/$PREFIX.md

# The matrix, in priority order (issue 45, item 2); each is one `run` and one run directory.
MODELS=lstm128,lstm512,lstm3x256,cnn_tutorial
MATRIX=(-f torch,tf,jax -m "$MODELS" -d gpu -b 128,1024 --precision fp32 --strict)
JAXCUDNN=(-f jax --variant cudnn -m lstm128,lstm512,lstm3x256 -d gpu -b 128,1024 --precision fp32 --strict)
B8192=(-f torch,tf,jax -m "$MODELS" -d gpu -b 8192 --precision fp32 --strict)
TF32=(-f torch,jax -m "$MODELS" -d gpu -b 1024 --precision tf32 --strict)
COMMON=(--memory-rounds 1 --timeout "$CELL_TIMEOUT" --quiet --results-dir "$RESULTS")
RUNS=()  # the runs made so far, for the report

{
    echo "lstm-bench GPU check (benchmarks/gpu/run.sh$([ "$DRY" = 1 ] && echo ' --dry-run'))"
    echo "commit: $COMMIT; started $(date -u +%Y-%m-%dT%H:%M:%SZ); budget ${BUDGET}s; run ids: $PREFIX-*"
    printf '%-14s %-34s %6s %7s\n' step status seconds limit
} > "$SUMMARY"

record() {  # record STEP STATUS SECONDS LIMIT
    printf '%-14s %-34s %6s %7s\n' "$1" "$2" "$3" "$4" >> "$SUMMARY"
    echo "=== $1: $2 (${3}s of ${4}s)" | tee -a "$LOG"
}

selected() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

step() {  # step NAME NOMINAL_SECONDS [final] -- COMMAND...: under timeout, output tee'd to the log
    local name=$1 nominal=$2 reserve=$RESERVE
    shift 2
    if [ "$1" = final ]; then reserve=0; shift; fi
    [ "$1" = -- ] && shift
    if ! selected "$name"; then
        record "$name" "not selected (--only)" 0 0
        return 0
    fi
    local left=$((BUDGET - (SECONDS - T0) - reserve))
    local limit=$nominal
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt "$MIN_STEP" ]; then
        record "$name" "skipped: no time left" 0 "$limit"
        return 0
    fi
    echo "=== $name: $* (limit ${limit}s, $(date -u +%H:%M:%S))" | tee -a "$LOG"
    local s=$SECONDS rc
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    case $rc in
        0) record "$name" ok $((SECONDS - s)) "$limit" ;;
        124|137) record "$name" "timed out" $((SECONDS - s)) "$limit" ;;
        *) record "$name" "failed (exit $rc)" $((SECONDS - s)) "$limit" ;;
    esac
    if [ "$DRY" = 0 ] && command -v nvidia-smi >/dev/null; then  # a worker left on the GPU would skew the next step
        local left_pids
        left_pids=$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | tr '\n' ' ')
        [ -n "${left_pids// /}" ] && echo "note: processes still on the GPU after $name: $left_pids" | tee -a "$LOG"
    fi
    return 0
}

pack() {  # pack RUN_ID NAME: one tar.gz per run under $OUT (the device returns at most 8 files)
    if [ -d "$RESULTS/$1" ]; then
        tar -czf "$OUT/runs-$2.tar.gz" -C "$RESULTS" "$1" && RUNS+=("$1")
        echo "packed $1 -> $OUT/runs-$2.tar.gz" | tee -a "$LOG"
    fi
}

matrix_step() {  # matrix_step NAME NOMINAL ARGS...: one `run`, then its records packed
    local name=$1 nominal=$2
    shift 2
    step "$name" "$nominal" -- "$PY" -m bench run "$@" "${COMMON[@]}" --run-id "$PREFIX-$name"
    selected "$name" && pack "$PREFIX-$name" "$name"
}

report_step() {  # report_step NAME [final]
    local runs=() r
    for r in "${RUNS[@]}"; do runs+=(--run "$r"); done
    step "$1" 60 ${2:-} -- "$PY" benchmarks/gpu/gpu_check.py report --results-dir "$RESULTS" "${runs[@]}" \
        --checks "$CHECKS" --summary "$SUMMARY" --title "lstm-bench on GPU: $PREFIX (commit $COMMIT)" --out "$REPORT"
}

if [ "$DRY" = 0 ]; then
    # 1. the machine, the GPU named by `bench list`, equivalence on the GPU
    step env 20 -- bash -c "nvidia-smi; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; $PY -m bench --version"
    step list 45 -- bash -c "$PY -m bench list | tee '$WORK/list.txt'; grep -q '^devices: .*gpu: no GPU' '$WORK/list.txt' && { echo 'bench list names no GPU'; exit 1; }; exit 0"
    step equivalence 120 -- "$PY" benchmarks/gpu/gpu_check.py equivalence --device gpu --out "$CHECKS"
    # 2. the matrix (TF cells are recorded as skipped: no tensorflow on the image)
    matrix_step matrix 240 "${MATRIX[@]}"
    matrix_step jax-cudnn 100 "${JAXCUDNN[@]}"
    # 3-5. memory, probes, the report: written now, so the extras below cannot cost it
    report_step report
    # time left: batch 8192, then a tf32 pass
    matrix_step b8192 100 "${B8192[@]}"
    matrix_step tf32 100 "${TF32[@]}"
    report_step final-report final
else
    step env 20 -- bash -c "uname -srm; (nvidia-smi -L 2>&1 || echo 'no nvidia-smi: no GPU here'); $PY -m bench --version"
    step list 45 -- "$PY" -m bench list
    # the plan of each matrix step, as `run --dry-run` gives it on this machine
    for spec in matrix:MATRIX jax-cudnn:JAXCUDNN b8192:B8192 tf32:TF32; do
        name=${spec%%:*}
        declare -n args="${spec#*:}"
        step "plan-$name" 60 -- "$PY" -m bench run "${args[@]}" "${COMMON[@]}" --run-id "$PREFIX-$name" --dry-run
        unset -n args
    done
    # --kernels: the reading of what ran (torch.profiler, JAX's compiled step), here on CPU ops
    step equivalence 300 -- "$PY" benchmarks/gpu/gpu_check.py equivalence --device cpu --kernels --out "$CHECKS"
    # what `run` records, for real, where there is no GPU (here) and where tensorflow is not
    # importable (as on the GPU image; hidden from this one process): every cell skipped, with its
    # reason, and no worker started
    step skips 60 -- "$PY" benchmarks/gpu/gpu_check.py without-tf -- run -f torch,tf -m lstm128,cnn_tutorial -d gpu \
        --profile smoke "${COMMON[@]}" --run-id "$PREFIX-skips"
    selected skips && pack "$PREFIX-skips" skips
    # the report, by the device's code path, from a stored run
    BASE="${GPU_BASELINE:-$ROOT/results/baselines/cpu-2core-quick-tensor-memory}"
    if [ -d "$BASE" ]; then
        cp -r "$BASE" "$RESULTS/" && RUNS+=("$(basename "$BASE")")
    fi
    report_step final-report final
fi

{
    echo "finished $(date -u +%Y-%m-%dT%H:%M:%SZ) after $((SECONDS - T0))s"
    echo "files under OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
    echo "publish as: results/published/$PREFIX.md (report.md), results/baselines/ (the runs-*.tar.gz)"
} >> "$SUMMARY"
echo "--- summary ($SUMMARY)"
cat "$SUMMARY"
n=$(find "$OUT" -type f | wc -l)
[ "$n" -le 8 ] || echo "warning: $n files under OUT; the device tool returns at most 8" >&2
exit 0
