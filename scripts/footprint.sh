#!/bin/bash
# The daemon's footprint (issue 18): `yedge serve` with one looping stream
# (vtest.avi), the cpu-layout int8 model from `yedge quantize --target cpu`
# and one onnxruntime thread, run with the FP32 shadow (every 5th frame)
# and without it. Prints resident memory (VmRSS: the median of the samples
# of the second half of the run, split into RssAnon and RssFile, the
# shared libraries' pages; and VmHWM, the peak) from
# /proc/PID/status, the Go heap in use (go_memstats_heap_inuse_bytes of
# /metrics), and the time from the process start to the first frame
# inferred (yedge_frames_inferred_total > 0): with the int8 model file,
# and with model.quantize (FP32 serves at once; the int8 model is
# quantized on 8 calibration images, then runs a canary of 10 shadowed
# frames before it serves).
# Usage: scripts/footprint.sh [SECONDS [RUN...]]   (seconds of each run
# after its first int8 frame, default 40; runs: int8-shadow, int8-no-shadow,
# quantize-shadow, default all; SHARED: the fixtures, default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=$(cd "${SHARED:-../shared}" && pwd)
secs=${1:-40}
runs=${*:2}
runs=${runs:-int8-shadow int8-no-shadow quantize-shadow}
y=${YEDGE_BIN:-bin/yedge}
[ -x "$y" ] || make build
fp32=$shared/models/yolov5n.onnx
calib=$shared/datasets/coco-calib128/images
video=$shared/media/vtest.avi
cache=build/footprint
mkdir -p "$cache"
q=$cache/q-cpu.onnx
[ -f "$q" ] || $y quantize --model "$fp32" --calib "$calib" --target cpu --out "$q" 2>/dev/null
q=$(realpath "$q")

tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }
# metric NAME [LABEL-FILTER]: the sum of a /metrics series' values (0 when absent).
metric() {
  curl -fsS --max-time 2 "http://127.0.0.1:$port/metrics" 2>/dev/null |
    awk -v n="$1" -v f="${2:-}" '$1 ~ "^"n"([{]|$)" && index($1, f) { s += $2 } END { printf "%.0f\n", s }'
}

# config NAME SHADOW MODEL-LINES: writes a serve config, prints its path.
config() {
  local dir=$tmp/$1
  mkdir -p "$dir/state"
  cat >"$dir/yedge.yaml" <<EOF
listen: 127.0.0.1:$port
log_level: info
state_dir: $dir/state
model:
  fp32: $fp32
$3
provider:
  name: cpu
  threads: 1
streams:
  - name: vtest
    uri: $video
    loop: true
shadow:
  enabled: $2
  every_n: 5
  budget: 0
canary:
  frames: 10
sinks:
  - type: jsonl
    path: $dir/detections.jsonl
EOF
  echo "$dir/yedge.yaml"
}

# run NAME SHADOW MODEL-LINES: one daemon run; prints a table row.
run() {
  [[ " $runs " == *" $1 "* ]] || return 0
  port=$(free_port)
  local cfg t0 first="" int8="" rss=() anon=() file=() deadline
  cfg=$(config "$1" "$2" "$3")
  t0=$(now)
  $y serve --config "$cfg" 2>"$tmp/$1/serve.log" &
  pid=$!
  deadline=$(($(date +%s) + 600))
  while [ -z "$int8" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "yedge serve ($1) exited; its log:" >&2; cat "$tmp/$1/serve.log" >&2; exit 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no int8 frame after 600 s ($1)" >&2; exit 1; }
    if [ -z "$first" ] && [ "$(metric yedge_frames_inferred_total)" -gt 0 ]; then
      first=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
    fi
    if [ -n "$first" ] && [ "$(metric yedge_frames_inferred_total 'precision="int8"')" -gt 0 ]; then
      int8=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
    fi
    sleep 0.05
  done
  for ((i = 0; i < secs; i++)); do
    sleep 1
    rss+=("$(status_kb VmRSS)")
    anon+=("$(status_kb RssAnon)")
    file+=("$(status_kb RssFile)")
  done
  local steady peak heap frames shadowed
  # median_mb KB...: the median of the second half of the samples, in MB.
  median_mb() { shift $(($# / 2)); printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "%.0f", v[int((NR + 1) / 2)] / 1024 }'; }
  steady=$(median_mb "${rss[@]}")
  peak=$(awk '{ printf "%.0f", $1 / 1024 }' <<<"$(status_kb VmHWM)")
  heap=$(awk '{ printf "%.0f", $1 / 1048576 }' <<<"$(metric go_memstats_heap_inuse_bytes)")
  frames=$(metric yedge_frames_inferred_total 'precision="int8"')
  shadowed=$(metric yedge_shadow_frames_total)
  kill -TERM "$pid"
  wait "$pid" || { echo "yedge serve ($1) did not stop cleanly; its log:" >&2; cat "$tmp/$1/serve.log" >&2; exit 1; }
  pid=
  printf '| %s | %s MB | %s / %s MB | %s MB | %s MB | %s s | %s s | %s / %s |\n' "$1" "$steady" "$(median_mb "${anon[@]}")" \
    "$(median_mb "${file[@]}")" "$peak" "$heap" "$first" "$int8" "$frames" "$shadowed"
}

echo "yedge serve, 1 stream ($(basename "$video"), loop), provider cpu, 1 thread, $secs s after the first int8 frame"
echo
echo "| run | RSS steady | of which anonymous / file-backed | RSS peak (VmHWM) | Go heap in use | first frame | first int8 frame | int8 / shadowed frames |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
run int8-shadow true "  int8: $q"
run int8-no-shadow false "  int8: $q"
run quantize-shadow true "  quantize:
    calib: $calib
    images: 8
    target: cpu
    cache_dir: $tmp/quantize-shadow/quant"
