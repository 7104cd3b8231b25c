package serve_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/serve"
)

// TestPipelineShadowNeverDelaysInt8 serves an image folder (read as fast
// as the stages take it) with the FP32 shadow sampling every frame, and
// makes each shadowed frame take 300 ms more. A shadow on the int8 path
// would shadow every frame (and slow int8 to its pace); on its own worker
// it must drop the samples that find it busy, and count them. The
// pipeline's stage metrics are exposed.
func TestPipelineShadowNeverDelaysInt8(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process daemon test (about 20s)")
	}
	folder := testdaemon.ImageFolder(t, 0, 16)
	cfg := testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: folder
    uri: %s
    loop: true
shadow:
  every_n: 1
`, testdaemon.Models(t, 1), folder))
	defer serve.SetShadowHook(func() { time.Sleep(300 * time.Millisecond) })()
	d := soakStart(t, cfg)
	defer d.stop(t, time.Minute)
	d.waitInferred(t, "40 int8 frames", 3*time.Minute, func(total float64, _ map[string]float64) bool { return total >= 40 })
	m := testdaemon.Scrape(nil, d.srv.Addr())
	int8, _ := m.Value("yedge_frames_inferred_total", "stream", "folder", "precision", "int8")
	shadowed, _ := m.Value("yedge_shadow_frames_total", "stream", "folder")
	dropped, _ := m.Value("yedge_pipeline_dropped_total", "stage", "shadow")
	t.Logf("int8 %v, shadowed %v, shadow samples dropped %v", int8, shadowed, dropped)
	if shadowed == 0 || dropped == 0 || shadowed > int8/2 {
		t.Errorf("int8 frames %v, shadowed %v, dropped %v: the shadow must run beside int8 and drop what it cannot take", int8, shadowed, dropped)
	}
	for _, stage := range []string{"preprocess", "infer", "postprocess", "sink", "shadow"} {
		if v, ok := m.Value("yedge_pipeline_busy_seconds_total", "stage", stage); !ok || v <= 0 {
			t.Errorf("yedge_pipeline_busy_seconds_total{stage=%q} = %v, %v", stage, v, ok)
		}
	}
	for _, stage := range []string{"preprocess", "infer", "postprocess"} {
		if v, ok := m.Value("yedge_pipeline_queue_wait_seconds_count", "stage", stage); !ok || v < 40 {
			t.Errorf("yedge_pipeline_queue_wait_seconds_count{stage=%q} = %v, %v", stage, v, ok)
		}
	}
}
