package serve_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/internal/testkit/testmodels"
	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// paddedClasses writes a copy of a full-graph YOLOv5 model whose decoded
// output [1, rows, 85] gains 920 zero columns: [1, rows, 1005], a model
// "for 1000 classes" whose first 80 are COCO's.
func paddedClasses(t *testing.T, path string) string {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Proto.Graph
	out := g.Output[0]
	dims := out.GetType().GetTensorType().GetShape().GetDim()
	rows := dims[1].GetDimValue()
	shape := make([]byte, 24)
	for i, v := range []int64{1, rows, 920} {
		binary.LittleEndian.PutUint64(shape[8*i:], uint64(v))
	}
	g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: "pad_shape", Dims: []int64{3},
		DataType: int32(onnxpb.TensorProto_INT64), RawData: shape})
	g.Node = append(g.Node,
		&onnxpb.NodeProto{OpType: "ConstantOfShape", Input: []string{"pad_shape"}, Output: []string{"pad_zeros"}},
		&onnxpb.NodeProto{OpType: "Concat", Input: []string{out.Name, "pad_zeros"}, Output: []string{"padded"},
			Attribute: []*onnxpb.AttributeProto{{Name: "axis", Type: onnxpb.AttributeProto_INT, I: 2}}})
	g.Output[0] = &onnxpb.ValueInfoProto{Name: "padded", Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxpb.TensorProto_FLOAT), Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
			{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1}},
			{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: rows}},
			{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1005}}}}}}}}
	p := filepath.Join(t.TempDir(), "padded.onnx")
	if err := m.Save(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPushHostile: pushes that are no model for this daemon never stay in
// the store. Text, random bytes, an empty body and half a model are 400
// before any 202 (twenty of them leave the store empty); an ONNX graph
// that is not YOLOv5, and a YOLOv5 model for 1000 classes (80 + zero
// columns), are accepted, fail to build, and are removed; the serving
// model and its class names stay.
func TestPushHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("loads several models")
	}
	dir := t.TempDir()
	fp32 := fixtures.Model(t, "yolov5n.onnx")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  int8: %s
  full_graph: true
provider:
  name: cpu
  threads: 1
streams:
  - name: cam
    uri: %s
    loop: true
state_dir: %s
store:
  keep: 3
`, fp32, fixtures.Model(t, "yolov5n-qdq-torch.onnx"), fixtures.Path(t, "datasets", "coco-val128", "images"), filepath.Join(dir, "state"))
	d := lcStart(t, lcPlan(t, yaml).Serve, nil)
	lcWait(t, "int8 frames", 60*time.Second, func() bool { return d.inferred("int8") > 1 })
	models := filepath.Join(dir, "state", "models")
	storeFiles := func() []string {
		es, _ := os.ReadDir(models)
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	post := func(body []byte) (int, string) {
		resp, err := http.Post("http://"+d.addr+"/models", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	qdq, err := os.ReadFile(fixtures.Model(t, "yolov5n-qdq-torch.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 4096)
	_, _ = rand.Read(random)
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"text", []byte("this is not a model\n")},
		{"random bytes", random},
		{"empty body", nil},
		{"half a model", qdq[:len(qdq)/2]},
	} {
		if code, msg := post(tc.body); code != http.StatusBadRequest || !strings.Contains(msg, "not an ONNX model") {
			t.Errorf("%s: POST /models = %d %q, want 400 not an ONNX model", tc.name, code, msg)
		}
	}
	for range 20 {
		_, _ = rand.Read(random)
		if code, _ := post(random); code != http.StatusBadRequest {
			t.Errorf("random push: %d, want 400", code)
		}
	}
	if f := storeFiles(); len(f) != 0 {
		t.Errorf("store after 24 refused pushes: %v, want empty", f)
	}

	// Accepted (they parse), then refused when built, and removed.
	for _, tc := range []struct {
		name, path, why string
	}{
		{"not YOLOv5", testmodels.WrongOutput(t, fp32), "not loaded"},
		{"1000 classes", paddedClasses(t, fp32), "has 1000 classes, the serving model has 80"},
	} {
		body, err := os.ReadFile(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		before := strings.Count(d.logs.String(), "new int8 model not loaded")
		if code, msg := post(body); code != http.StatusAccepted {
			t.Fatalf("%s: POST /models = %d %q, want 202", tc.name, code, msg)
		}
		lcWait(t, tc.name+" refused", 60*time.Second, func() bool {
			return strings.Count(d.logs.String(), "new int8 model not loaded") > before
		})
		if tc.name == "1000 classes" && !strings.Contains(d.logs.String(), tc.why) {
			t.Errorf("%s: the log does not say %q", tc.name, tc.why)
		}
		lcWait(t, tc.name+" removed from the store", 10*time.Second, func() bool { return len(storeFiles()) == 0 })
	}
	// Still serving the int8 model with COCO names.
	n := d.inferred("int8")
	lcWait(t, "int8 frames after the refused pushes", 60*time.Second, func() bool { return d.inferred("int8") > n+1 })
	if m := testdaemon.MetricsText(nil, d.addr); strings.Contains(m, `class="class0"`) || !strings.Contains(m, `class="person"`) {
		t.Error("class names changed to class0")
	}
}

// slowReader gives its data in chunks at about rate bytes per second.
type slowReader struct {
	data []byte
	rate int
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.rate/10, len(r.data))
	time.Sleep(time.Duration(n) * time.Second / time.Duration(r.rate))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestPushSlowAndFullDisk: a model pushed over a slow link (in about 4 s,
// with http.read_timeout 1s) arrives: the body is bounded
// by a minimum rate, not by the read timeout. On a full disk (a 1 MiB
// tmpfs as state_dir) the push is 507, logged and in last_errors, and
// leaves no file behind. A body that trickles under the minimum rate is
// 408 after one window.
func TestPushSlowAndFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("loads two models")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", full).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", full).Run() })
	qdqPath := fixtures.Model(t, "yolov5n-qdq-torch.onnx")
	qdq, err := os.ReadFile(qdqPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, state string
		body        io.Reader
		want        int
	}{
		{"slow link", filepath.Join(dir, "state"), &slowReader{data: qdq, rate: len(qdq) / 4}, http.StatusAccepted},
		{"full disk", full, bytes.NewReader(qdq), http.StatusInsufficientStorage},
		// 1 KiB a second: under the minimum rate, dropped after a window.
		{"trickle", filepath.Join(dir, "state2"), &slowReader{data: qdq, rate: 1 << 10}, http.StatusRequestTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 1
streams:
  - name: cam
    uri: %s
state_dir: %s
http:
  read_timeout: 1s
`, fixtures.Model(t, "yolov5n.onnx"), qdqPath, fixtures.Path(t, "datasets", "coco-val128", "images"), tc.state)
			d := lcStart(t, lcPlan(t, yaml).Serve, nil)
			resp, err := http.Post("http://"+d.addr+"/models", "application/octet-stream", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("POST /models = %d %q, want %d", resp.StatusCode, msg, tc.want)
			}
			if tc.want != http.StatusInsufficientStorage {
				return
			}
			if !strings.Contains(d.logs.String(), "model store: writing a pushed model failed") {
				t.Error("the full disk is not in the log")
			}
			var st struct {
				Errors []struct {
					Class string `json:"class"`
				} `json:"last_errors"`
			}
			if _, err := testdaemon.GetStatus(nil, d.addr, &st); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range st.Errors {
				found = found || e.Class == "store"
			}
			if !found {
				t.Errorf("last_errors has no store error: %+v", st.Errors)
			}
			left, _ := filepath.Glob(filepath.Join(full, "models", "*"))
			if len(left) != 0 {
				t.Errorf("files left on the full disk: %v", left)
			}
		})
	}
}

// TestStoreUnavailableShown: a state_dir the store cannot use (a
// read-only mount) is an error in /status (lifecycle.store.error),
// last_errors and /readyz's answer, and pushes say why they are refused.
func TestStoreUnavailableShown(t *testing.T) {
	if testing.Short() {
		t.Skip("loads two models")
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting a read-only tmpfs needs root")
	}
	ro := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", ro).Run() })
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 1
streams:
  - name: cam
    uri: %s
    loop: true
state_dir: %s
`, fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), fixtures.Path(t, "datasets", "coco-val128", "images"), ro)
	d := lcStart(t, lcPlan(t, yaml).Serve, nil)
	lcWait(t, "int8 frames", 60*time.Second, func() bool { return d.inferred("int8") > 0 })
	var st struct {
		Lifecycle struct {
			Store struct {
				Error string `json:"error"`
			} `json:"store"`
		} `json:"lifecycle"`
		Errors []struct {
			Class string `json:"class"`
		} `json:"last_errors"`
	}
	if _, err := testdaemon.GetStatus(nil, d.addr, &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Lifecycle.Store.Error, "read-only") {
		t.Errorf("lifecycle.store.error = %q, want the read-only file system", st.Lifecycle.Store.Error)
	}
	found := false
	for _, e := range st.Errors {
		found = found || e.Class == "store"
	}
	if !found {
		t.Errorf("last_errors has no store error: %+v", st.Errors)
	}
	lcWait(t, "/readyz naming the store", 30*time.Second, func() bool {
		code, body, _ := testdaemon.Get(nil, d.addr, "/readyz")
		return code == http.StatusOK && strings.Contains(body, "model store:")
	})
	resp, err := http.Post("http://"+d.addr+"/models", "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(msg), "read-only") {
		t.Errorf("POST /models = %d %q, want 409 naming the read-only state_dir", resp.StatusCode, msg)
	}
}

// TestStoreDamagedWhileRunning: an index.json damaged while the daemon
// runs is a store error in /status and /readyz, and a push answers 500
// with a log line and a store entry in last_errors (the next start
// rebuilds the index).
func TestStoreDamagedWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("loads two models")
	}
	state := filepath.Join(t.TempDir(), "state")
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 1
streams:
  - name: cam
    uri: %s
    loop: true
state_dir: %s
`, fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), fixtures.Path(t, "datasets", "coco-val128", "images"), state)
	d := lcStart(t, lcPlan(t, yaml).Serve, nil)
	lcWait(t, "int8 frames", 60*time.Second, func() bool { return d.inferred("int8") > 0 })
	if err := os.WriteFile(filepath.Join(state, "index.json"), []byte(`{"models": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	var st struct {
		Lifecycle struct {
			Store struct {
				Error string `json:"error"`
			} `json:"store"`
		} `json:"lifecycle"`
		Errors []struct {
			Class string `json:"class"`
		} `json:"last_errors"`
	}
	if _, err := testdaemon.GetStatus(nil, d.addr, &st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Lifecycle.Store.Error, "damaged index") {
		t.Errorf("lifecycle.store.error = %q, want the damaged index", st.Lifecycle.Store.Error)
	}
	if code, body, _ := testdaemon.Get(nil, d.addr, "/readyz"); code != http.StatusOK || !strings.Contains(body, "damaged index") {
		t.Errorf("/readyz = %d %q, want ready and the store error", code, body)
	}
	resp, err := http.Post("http://"+d.addr+"/models", "application/octet-stream", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("POST /models = %d, want 500", resp.StatusCode)
	}
	if _, err := testdaemon.GetStatus(nil, d.addr, &st); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range st.Errors {
		found = found || e.Class == "store"
	}
	if !found || !strings.Contains(d.logs.String(), "model store: writing a pushed model failed") {
		t.Errorf("the store failure is not in last_errors (%+v) or the log", st.Errors)
	}
}
