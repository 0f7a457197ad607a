#!/usr/bin/env bash
# gpu-check.sh: the one GPU check of the CUDA backend. Run it on the GPU machine from the
# bundle `make gpu-check-bundle` builds here (the GPU machine has no Go):
#
#   make gpu-check-bundle                                  # here: .cache/gpucheck/bundle.tgz
#   scripts/gpu-check.sh --bundle .cache/gpucheck --out "$OUT"   # there
#
# Steps (each logs to OUT/<step>.log and prints TSV lines gathered into OUT/results.tsv):
#   parity   op-by-op parity of every Backend op with the CPU backend on random inputs, fp32
#            (rel. error < 1e-5) and bf16 (< 1e-2), outputs poisoned with NaN first
#   train    cuda.test: the tiny model's loss curve on GPU vs CPU, fp32 and bf16; a
#            checkpointed chain's gradients equal the plain chain's on the GPU
#   learn    the two-class learning run through bin/simpletuner-trainer-cuda (loss halves)
#   bench    step time, tokens/s, MFU, peak memory for base and xl: ours vs PyTorch eager and
#            torch.compile (bf16 autocast), same card, same run, same weights
#   api      the daemon's NVML inventory and a job pinned to the GPU by UUID through the API
# The last thing printed is a short table. Without a GPU every step says it was skipped.
#
# Options: --bundle DIR  --out DIR  --steps "parity train learn bench api"  --flavours "base xl"
#          --batch N --resolution N --tokens N --bench-steps N --python PY --dry-run
set -uo pipefail

BUNDLE=.cache/gpucheck
OUTDIR="${OUT:-$PWD/gpucheck-out}"
STEPS="parity train learn bench api"
FLAVOURS="base xl"
BATCH=8
RES=64
TOKENS=77
BENCH_STEPS=5
PYTHON=python3
DRY=0

usage() { sed -n '2,22p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE="$2"; shift 2 ;;
    --out) OUTDIR="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --flavours) FLAVOURS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --resolution) RES="$2"; shift 2 ;;
    --tokens) TOKENS="$2"; shift 2 ;;
    --bench-steps) BENCH_STEPS="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for s in $STEPS; do
  case "$s" in parity|train|learn|bench|api) ;; *) echo "gpu-check: unknown step $s" >&2; exit 2 ;; esac
done
for n in "$BATCH" "$RES" "$TOKENS" "$BENCH_STEPS"; do
  case "$n" in ''|*[!0-9]*) echo "gpu-check: $n is not a positive integer" >&2; exit 2 ;; esac
done

mkdir -p "$OUTDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpucheck.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RESULTS="$OUTDIR/results.tsv"
: >"$RESULTS"
declare -A STATUS TIME

# GPU present? The CUDA binaries exit at start-up without one (gorgonia.org/cu's init).
GPU=""
if [ "$DRY" = 0 ] && command -v nvidia-smi >/dev/null 2>&1; then
  GPU=$(nvidia-smi --query-gpu=name,uuid,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
if [ -n "$GPU" ]; then
  echo "gpu-check: $GPU"
  nvidia-smi >"$OUTDIR/nvidia-smi.txt" 2>&1 || true
else
  echo "gpu-check: no GPU here (nvidia-smi absent or shows none)$([ "$DRY" = 1 ] && echo ', --dry-run')"
fi

B="$WORK/bundle"
if [ -n "$GPU" ]; then
  if [ ! -f "$BUNDLE/bundle.tgz" ]; then
    echo "gpu-check: $BUNDLE/bundle.tgz missing: run make gpu-check-bundle and carry $BUNDLE" >&2
    exit 2
  fi
  mkdir -p "$B" && tar xzf "$BUNDLE/bundle.tgz" -C "$B"
fi

# step NAME TIMEOUT CMD...: run one step, log it, keep its result lines.
step() {
  local name=$1 limit=$2
  shift 2
  if [ -z "$GPU" ]; then
    STATUS[$name]="SKIP"
    echo "gpu-check: step $name skipped: needs a GPU (would run: ${*##*/})"
    return
  fi
  echo "gpu-check: step $name (limit ${limit}s)"
  local t0=$SECONDS rc=0
  timeout "$limit" "$@" >"$OUTDIR/$name.log" 2>&1 || rc=$?
  TIME[$name]=$((SECONDS - t0))
  grep -E '^(PARITY|LOSSCURVE|LEARN|BENCH|API)|PARITY	|LOSSCURVE	' "$OUTDIR/$name.log" | sed 's/^ *[a-z_]*_test.go:[0-9]*: //' >>"$RESULTS" || true
  case $rc in
    0) STATUS[$name]="PASS" ;;
    124) STATUS[$name]="TIMEOUT" ;;
    *) STATUS[$name]="FAIL($rc)"; tail -n 15 "$OUTDIR/$name.log" | sed "s/^/  $name| /" ;;
  esac
}

for s in $STEPS; do
  case "$s" in
    parity) step parity 240 "$B/bin/gpucheck" parity ;;
    train) step train 300 "$B/bin/cuda.test" -test.v -test.count=1 -test.run 'TestTinyTrainingMatchesCPU|TestCheckpointOnGPU' ;;
    learn) step learn 300 "$B/bin/gpucheck" learn -trainer "$B/bin/simpletuner-trainer-cuda" -work "$WORK" ;;
    bench)
      for f in $FLAVOURS; do
        step "bench-$f" 420 "$B/bin/gpucheck" bench -flavour "$f" -batch "$BATCH" -resolution "$RES" -tokens "$TOKENS" \
          -steps "$BENCH_STEPS" -warmup 2 -python "$PYTHON" -torch-script "$B/torch_dit_gpu.py" -work "$WORK"
      done ;;
    api) step api 300 "$B/bin/gpucheck" api -daemon "$B/bin/simpletuner" -work "$WORK" ;;
  esac
done

# The table (last, so it is what a truncated log still shows).
echo
echo "=== gpu-check summary ${GPU:+($GPU)} ==="
printf '%-12s %-10s %s\n' step status seconds
for s in parity train learn $(for f in $FLAVOURS; do echo "bench-$f"; done) api; do
  [ -n "${STATUS[$s]:-}" ] && printf '%-12s %-10s %s\n' "$s" "${STATUS[$s]}" "${TIME[$s]:--}"
done
if grep -q '^PARITY' "$RESULTS" 2>/dev/null; then
  echo "parity: $(grep -c $'\tPASS' <(grep '^PARITY' "$RESULTS")) pass, $(grep -c $'\tFAIL' <(grep '^PARITY' "$RESULTS")) fail; worst per op and precision:"
  grep '^PARITY' "$RESULTS" | awk -F'\t' '{k=$2" "$3; if (!(k in w) || $4+0 > w[k]+0) {w[k]=$4; s[k]=$6}} END {for (k in w) printf "  %-22s %-9s %s\n", k, w[k], s[k]}' | sort
fi
grep -h '^LOSSCURVE\|^LEARN\|^API' "$RESULTS" 2>/dev/null | cut -c1-160
if grep -q '^BENCH' "$RESULTS" 2>/dev/null; then
  printf '%-6s %-28s %-5s %9s %11s %6s %9s\n' model impl prec step_ms tokens/s MFU% peak_MiB
  grep '^BENCH' "$RESULTS" | awk -F'\t' '{printf "%-6s %-28s %-5s %9s %11s %6s %9s %s\n", $2, substr($3,1,28), $4, $5, $6, $7, $8, $10}'
fi
fail=0
for s in "${!STATUS[@]}"; do
  case "${STATUS[$s]}" in PASS) ;; SKIP) ;; *) fail=1 ;; esac
done
if [ -z "$GPU" ]; then
  echo "no GPU: nothing was checked"
  [ "$DRY" = 1 ] && exit 0 || exit 3
fi
exit $fail
