package testdaemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yedge/yedge/config"
	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/plan"
	"github.com/yedge/yedge/serve"
)

// ModelsYAML is the model and provider part of a config: the given FP32
// and int8 models on the CPU provider with threads threads.
func ModelsYAML(fp32, int8 string, threads int) string {
	return fmt.Sprintf(`model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: %d
`, fp32, int8, threads)
}

// Models is ModelsYAML of the shared FP32 model and the shared Q/DQ int8
// model.
func Models(tb testing.TB, threads int) string {
	return ModelsYAML(fixtures.Model(tb, "yolov5n.onnx"), fixtures.Model(tb, "yolov5n-qdq-torch.onnx"), threads)
}

// Plan parses and validates a YAML config and builds and prepares its
// plan, as the command does; onnxruntime is loaded from the plan's
// library.
func Plan(tb testing.TB, yaml string) serve.Plan {
	tb.Helper()
	cfg, err := config.Parse([]byte(yaml), "")
	if err != nil {
		tb.Fatalf("config: %v\n%s", err, yaml)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("config: %v\n%s", err, yaml)
	}
	d, err := plan.Build(cfg, plan.Overrides{})
	if err != nil {
		tb.Fatalf("plan: %v\n%s", err, yaml)
	}
	if _, err := onnxrt.Init(d.Library, d.LibraryConfig); err != nil {
		tb.Fatal(err)
	}
	if err := d.Prepare(context.Background(), slog.New(slog.DiscardHandler)); err != nil {
		tb.Fatalf("prepare: %v", err)
	}
	return d.Serve
}

// ImageFolder makes a folder of n symbolic links to the images of the
// shared coco-val128, starting at the first-th image (in name order): an
// image folder source, read as fast as it decodes (video files are played
// in real time).
func ImageFolder(tb testing.TB, first, n int) string {
	tb.Helper()
	src := fixtures.Path(tb, "datasets", "coco-val128", "images")
	entries, err := os.ReadDir(src)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(strings.ToLower(e.Name()), ".jpg") {
			names = append(names, e.Name())
		}
	}
	if len(names) < first+n {
		tb.Fatalf("coco-val128 has %d images, want %d", len(names), first+n)
	}
	dir := tb.TempDir()
	for _, name := range names[first : first+n] {
		if err := os.Symlink(filepath.Join(src, name), filepath.Join(dir, name)); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}
