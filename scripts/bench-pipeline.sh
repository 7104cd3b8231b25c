#!/bin/bash
# The figures of the pipeline (issue 13), measured side by side in one run:
# the CPU stages' ceiling (null model), the pipelined int8 throughput
# against its inference bound at 1 and 2 threads (the threads rule), the
# interleaved int8/FP32 inference speed-up with both decodes, and end to
# end detect on vtest.avi with the dynamic models at 480x640.
# Usage: scripts/bench-pipeline.sh [OUTDIR]   (default out/bench-pipeline)
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
out=${1:-out/bench-pipeline}
mkdir -p "$out"
y=bin/yedge
[ -x "$y" ] || go build -o "$y" ./cmd/yedge
vtest=$shared/media/vtest.avi
hd=$shared/media/vtest-1080p.mp4
calib=$shared/datasets/coco-calib128/images
q=$out/q-cpu.onnx
qh=$out/q-cpu-int8-head.onnx
qd=$out/q-dynamic-cpu-480x640.onnx
[ -f "$q" ] || $y quantize --model "$shared/models/yolov5n.onnx" --calib "$calib" --target cpu --out "$q" 2>/dev/null
[ -f "$qh" ] || $y quantize --model "$shared/models/yolov5n.onnx" --calib "$calib" --target cpu --keep-head=false --out "$qh" 2>/dev/null
[ -f "$qd" ] || $y quantize --model "$shared/models/yolov5n-dynamic.onnx" --imgsz 480x640 --calib "$calib" --target cpu --out "$qd" 2>/dev/null

summary() { python3 -c '
import json, sys
d = json.load(sys.stdin)
for r in d["results"]:
    s = r["stages"]
    bound = 1000 / r["infer_median_ms"] if r["infer_median_ms"] > 0 else float("inf")
    print("  %-32s threads %d: %6.1f fps pipelined, infer median %6.2f ms (bound %6.1f fps, %3.0f%%); read %.2f ms %2.0f%% busy, preprocess %.2f ms %2.0f%% busy, postprocess %.2f ms" % (
        r["model"].split("/")[-1], r["threads"], r["pipeline_fps"], r["infer_median_ms"], bound,
        100 * r["pipeline_fps"] / bound, s["read"]["median_ms"], 100 * s["read"]["busy"],
        s["preprocess"]["median_ms"], 100 * s["preprocess"]["busy"], s["postprocess"]["median_ms"]))
'; }

for src in "$vtest" "$hd"; do
  echo "== $(basename "$src"): pipeline ceiling (null model) and int8 cpu, 300 frames"
  $y bench --pipeline --model null --source "$src" --frames 300 --warmup 20 --json 2>/dev/null | tee "$out/null-$(basename "$src").json" | summary
  for t in 1 2; do
    $y bench --pipeline --model "$q" --source "$src" --frames 300 --warmup 20 --threads "$t" --provider cpu --json 2>/dev/null |
      tee "$out/int8-t$t-$(basename "$src").json" | summary
  done
done

echo "== interleaved inference, 1 thread, both decodes (int8 with the head convs float, the default, and int8)"
$y bench --model "$shared/models/yolov5n.onnx" --model "$q" --model "$qh" --both-decodes --threads 1 --runs 50 --source "$vtest" --provider cpu 2>/dev/null | tee "$out/interleaved.txt"

echo "== detect end to end, vtest.avi 300 frames, 480x640, 2 threads"
for m in "$shared/models/yolov5n-dynamic.onnx" "$qd"; do
  $y detect --model "$m" --source "$vtest" --imgsz 480x640 --max-frames 300 --threads 2 --provider cpu --out /dev/null 2>&1 | grep -A8 '^source'
done | tee "$out/detect.txt"
