#!/bin/bash
# mAP on coco-val128 of every model kind with the raw-head decode and with
# the full graph (the parity table of README "Raw-head decode"), and of the
# quantizer's head placements (head convs float, the default, or int8) for
# both targets. Usage: scripts/accuracy-rawhead.sh [OUTDIR]
# (default out/accuracy-rawhead; about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
out=${1:-out/accuracy-rawhead}
mkdir -p "$out"
y=bin/yedge
[ -x "$y" ] || go build -o "$y" ./cmd/yedge
calib=$shared/datasets/coco-calib128/images
data=$shared/datasets/coco-val128
models=("$shared/models/yolov5n.onnx" "$shared/models/yolov5n-dynamic.onnx" "$shared/models/yolov5n-qdq-torch.onnx")
for target in cpu tensorrt; do
  for head in float int8; do
    m=$out/q-$target-head-$head.onnx
    keep=true
    [ "$head" = int8 ] && keep=false
    [ -f "$m" ] || $y quantize --model "$shared/models/yolov5n.onnx" --calib "$calib" --target "$target" --keep-head=$keep --out "$m" 2>/dev/null
    models+=("$m")
  done
done
printf '%-40s %-10s %10s %10s\n' model decode mAP50 mAP50-95
for m in "${models[@]}"; do
  for decode in raw-head full-graph; do
    flag=()
    [ "$decode" = full-graph ] && flag=(--full-graph)
    $y eval "${flag[@]}" --model "$m" --data "$data" --json 2>/dev/null |
      python3 -c 'import json, sys; r = json.load(sys.stdin); print("%-40s %-10s %10.5f %10.5f" % (sys.argv[1], sys.argv[2], r["map50"], r["map50_95"]))' "$(basename "$m")" "$decode"
  done
done | tee "$out/map.txt"
