#!/usr/bin/env bash
# Reproduces the README's accuracy-by-calibrator table: one calibration on
# coco-calib128 (cached), then every target x calibrator x head option
# quantized from the cache and evaluated on coco-val128.
# Usage: scripts/calib-table.sh [OUTDIR]   (needs bin/yedge and ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/calib-table}
shared=${SHARED:-../shared}
mkdir -p "$out"
printf '%-9s %-11s %-10s %s\n' target method head_float map50_95
for target in tensorrt cpu; do
  for keep in true false; do
    for method in max entropy mse percentile; do
      m="$out/$target-$method-$keep.onnx"
      bin/yedge quantize --model "$shared/models/yolov5n.onnx" --calib "$shared/datasets/coco-calib128/images" \
        --calib-cache "$out/calib.json" --target "$target" --method "$method" --keep-head="$keep" \
        --out "$m" --log-level warn >/dev/null
      v=$(bin/yedge eval --model "$m" --data "$shared/datasets/coco-val128" --json --log-level warn |
        sed -n 's/.*"map50_95": \([0-9.]*\).*/\1/p' | head -1)
      printf '%-9s %-11s %-10s %.4f\n' "$target" "$method" "$keep" "$v"
    done
  done
done
