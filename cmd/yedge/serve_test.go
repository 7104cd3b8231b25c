package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/yedge/yedge/internal/fixtures"
)

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// makeClip writes the first n frames of vtest.avi as an MJPG clip.
func makeClip(t *testing.T, path string, n int) {
	cap, err := gocv.VideoCaptureFile(fixtures.Path(t, "media", "vtest.avi"))
	if err != nil {
		t.Fatal(err)
	}
	defer cap.Close()
	img := gocv.NewMat()
	defer img.Close()
	var w *gocv.VideoWriter
	for i := 0; i < n && cap.Read(&img); i++ {
		if w == nil {
			if w, err = gocv.VideoWriterFile(path, "MJPG", 10, img.Cols(), img.Rows(), true); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Write(img); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
}

// clipServer serves a clip over HTTP on addr until stopped.
type clipServer struct {
	srv *http.Server
}

func startClipServer(t *testing.T, addr, clip string) *clipServer {
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a stop
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/cam.avi", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, clip) })
	s := &clipServer{srv: &http.Server{Handler: mux}}
	go func() { _ = s.srv.Serve(l) }()
	return s
}

func (c *clipServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
	c.srv.Close()
}

// promQuery runs an instant query against Prometheus and returns the
// values by the given label.
func promQuery(t *testing.T, prom, q, label string) map[string]float64 {
	resp, err := http.Get("http://" + prom + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, x := range r.Data.Result {
		s, _ := x.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err == nil {
			out[x.Metric[label]] = v
		}
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

func scrape(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metricValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, series+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, series)), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestServeWithPrometheus runs the daemon on two streams (a looping video
// file and a local HTTP source) with a real Prometheus scraping it, kills
// and restores the HTTP source, reloads the config with SIGHUP and stops
// with SIGTERM. Nothing is mocked.
func TestServeWithPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (about a minute)")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus not installed (make setup installs Debian's prometheus)")
		}
		t.Skip("prometheus not installed")
	}
	dir := t.TempDir()
	clip := filepath.Join(dir, "clip.avi")
	makeClip(t, clip, 40)
	camAddr := freePort(t)
	cam := startClipServer(t, camAddr, clip)
	defer func() { cam.stop() }()

	listen := freePort(t)
	sink := filepath.Join(dir, "detections.jsonl")
	cfgPath := filepath.Join(dir, "yedge.yaml")
	writeCfg := func(withWeb bool) {
		web := ""
		if withWeb {
			web = fmt.Sprintf(`
  - name: web
    uri: http://%s/cam.avi
    reconnect:
      min_backoff: 200ms
      max_backoff: 1s`, camAddr)
		}
		cfg := fmt.Sprintf(`listen: %s
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: file
    uri: %s
    loop: true%s
shadow:
  every_n: 5
eval:
  data: %s
  images: 8
sinks:
  - type: jsonl
    path: %s
    flush_interval: 200ms
shutdown_timeout: 10s
`, listen, fixtures.Model(t, "yolov5n.onnx"), fixtures.Model(t, "yolov5n-qdq-torch.onnx"), fixtures.Path(t, "media", "vtest.avi"),
			web, fixtures.Path(t, "datasets", "coco-val128"), sink)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(true)
	if r := yedge(t, nil, "config", "check", cfgPath); r.code != 0 {
		t.Fatalf("config check: %s%s", r.stdout, r.stderr)
	}

	cmd := exec.Command(binPath, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "YEDGE_ORT_LIB="+filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("yedge log:\n%s", logs.String())
		}
	}()
	waitFor(t, "/readyz", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// A real Prometheus scraping yedge every second.
	prom := freePort(t)
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: yedge\n    static_configs:\n      - targets: ['%s']\n", listen)), 0o644); err != nil {
		t.Fatal(err)
	}
	pc := exec.Command(promBin, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+prom, "--log.level=warn")
	var promLog bytes.Buffer
	pc.Stdout, pc.Stderr = &promLog, &promLog
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = pc.Process.Signal(syscall.SIGTERM)
		_ = pc.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", promLog.String())
		}
	}()
	waitFor(t, "Prometheus to scrape both streams", 60*time.Second, func() bool {
		v := promQuery(t, prom, `yedge_frames_inferred_total{precision="int8"}`, "stream")
		return v["file"] > 0 && v["web"] > 0
	})
	waitFor(t, "latency histograms, agreement and eval gauges in Prometheus", 90*time.Second, func() bool {
		lat := promQuery(t, prom, `histogram_quantile(0.95, sum by (le, precision) (rate(yedge_stage_duration_seconds_bucket{stage="infer"}[1m])))`, "precision")
		agr := promQuery(t, prom, `yedge_agreement_recall`, "stream")
		ev := promQuery(t, prom, `yedge_eval_map50_95`, "precision")
		return lat["int8"] > 0 && lat["fp32"] > 0 && len(agr) == 2 && ev["int8"] > 0 && ev["fp32"] > 0
	})
	ev := promQuery(t, prom, `yedge_eval_map50_95`, "precision")
	agr := promQuery(t, prom, `yedge_agreement_precision`, "stream")
	t.Logf("eval mAP50-95 %v, agreement precision %v", ev, agr)

	// Kill the HTTP source: that stream goes down and reconnects, the file
	// stream keeps going.
	before := promQuery(t, prom, `yedge_stream_reconnects_total`, "stream")["web"]
	cam.stop()
	waitFor(t, "the web stream to go down", 30*time.Second, func() bool {
		v, ok := metricValue(scrape(listen), `yedge_stream_up{stream="web"}`)
		return ok && v == 0
	})
	fileBefore, _ := metricValue(scrape(listen), `yedge_frames_inferred_total{precision="int8",stream="file"}`)
	waitFor(t, "reconnect attempts while the source is down (in Prometheus)", 30*time.Second, func() bool {
		return promQuery(t, prom, `yedge_stream_reconnects_total`, "stream")["web"] >= before+2
	})
	fileAfter, _ := metricValue(scrape(listen), `yedge_frames_inferred_total{precision="int8",stream="file"}`)
	if fileAfter <= fileBefore {
		t.Errorf("the file stream stopped while the web stream was down: %v -> %v", fileBefore, fileAfter)
	}
	waitFor(t, "Prometheus to see the web stream down", 30*time.Second, func() bool {
		v, ok := promQuery(t, prom, `yedge_stream_up`, "stream")["web"]
		return ok && v == 0
	})
	cam = startClipServer(t, camAddr, clip)
	waitFor(t, "the web stream to come back", 60*time.Second, func() bool {
		v, ok := metricValue(scrape(listen), `yedge_stream_up{stream="web"}`)
		return ok && v == 1
	})

	// SIGHUP with the web stream removed: streams change, models stay.
	writeCfg(false)
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to drop the web stream", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + listen + "/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Streams []struct{ Name string } `json:"streams"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return len(st.Streams) == 1 && st.Streams[0].Name == "file"
	})
	if strings.Contains(scrape(listen), `stream="web"`) {
		t.Error("metrics of the removed stream are still exported")
	}
	if strings.Count(logs.String(), "model ready") != 2 {
		t.Errorf("the models were reloaded on a streams-only change")
	}

	// SIGTERM: exit 0 in bounded time with the sink flushed.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
	f, err := os.Open(sink)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			t.Fatalf("sink line %d is not complete JSON: %q", n, sc.Text())
		}
		n++
	}
	if n < 10 {
		t.Errorf("only %d records in the sink", n)
	}
	t.Logf("%d sink records", n)
}
