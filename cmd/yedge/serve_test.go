package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
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

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
)

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

// pollEvery is how often the tests of the command poll the daemon and
// Prometheus.
const pollEvery = 250 * time.Millisecond

// ortEnv is the environment of this process with YEDGE_ORT_LIB set to the
// repository's onnxruntime library.
func ortEnv() []string {
	return append(os.Environ(), "YEDGE_ORT_LIB="+filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"))
}

// serveProcess is `yedge serve` running as a child process.
type serveProcess struct {
	cmd    *exec.Cmd
	logs   *testdaemon.SyncBuffer // its stdout and stderr
	exited chan error             // what Wait returned
}

// startServe starts `yedge serve` with args and the repository's
// onnxruntime library. At the end of the test it is killed, and its log
// shown if the test failed.
func startServe(t *testing.T, args ...string) *serveProcess {
	t.Helper()
	d := &serveProcess{
		cmd:    exec.Command(binPath, append([]string{"serve"}, args...)...),
		logs:   &testdaemon.SyncBuffer{},
		exited: make(chan error, 1),
	}
	d.cmd.Env = ortEnv()
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("yedge log:\n%s", d.logs.String())
		}
	})
	return d
}

// term sends SIGTERM and fails the test unless the daemon exits with
// status 0 within 20s.
func (d *serveProcess) term(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
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
	testdaemon.MakeClip(t, clip, 40)
	camAddr := testdaemon.FreePort(t)
	cam := testdaemon.ServeClipFile(t, camAddr, clip)

	listen := testdaemon.FreePort(t)
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
%sstreams:
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
`, listen, testdaemon.Models(t, 2), fixtures.Path(t, "media", "vtest.avi"),
			web, fixtures.Path(t, "datasets", "coco-val128"), sink)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(true)
	if r := yedge(t, nil, "config", "check", cfgPath); r.code != 0 {
		t.Fatalf("config check: %s%s", r.stdout, r.stderr)
	}

	d := startServe(t, "--config", cfgPath)
	testdaemon.Poll(t, pollEvery, "/readyz", 60*time.Second, func() bool {
		code, _, err := testdaemon.Get(nil, listen, "/readyz")
		return err == nil && code == http.StatusOK
	})

	// A real Prometheus scraping yedge every second.
	prom := testdaemon.FreePort(t)
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
	testdaemon.Poll(t, pollEvery, "Prometheus to scrape both streams", 60*time.Second, func() bool {
		v := promQuery(t, prom, `yedge_frames_inferred_total{precision="int8"}`, "stream")
		return v["file"] > 0 && v["web"] > 0
	})
	testdaemon.Poll(t, pollEvery, "latency histograms, agreement and eval gauges in Prometheus", 90*time.Second, func() bool {
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
	cam.Stop()
	testdaemon.Poll(t, pollEvery, "the web stream to go down", 30*time.Second, func() bool {
		v, ok := testdaemon.Scrape(nil, listen).Value("yedge_stream_up", "stream", "web")
		return ok && v == 0
	})
	fileBefore, _ := testdaemon.Scrape(nil, listen).Value("yedge_frames_inferred_total", "precision", "int8", "stream", "file")
	testdaemon.Poll(t, pollEvery, "reconnect attempts while the source is down (in Prometheus)", 30*time.Second, func() bool {
		return promQuery(t, prom, `yedge_stream_reconnects_total`, "stream")["web"] >= before+2
	})
	fileAfter, _ := testdaemon.Scrape(nil, listen).Value("yedge_frames_inferred_total", "precision", "int8", "stream", "file")
	if fileAfter <= fileBefore {
		t.Errorf("the file stream stopped while the web stream was down: %v -> %v", fileBefore, fileAfter)
	}
	testdaemon.Poll(t, pollEvery, "Prometheus to see the web stream down", 30*time.Second, func() bool {
		v, ok := promQuery(t, prom, `yedge_stream_up`, "stream")["web"]
		return ok && v == 0
	})
	testdaemon.ServeClipFile(t, camAddr, clip) // stopped at the end of the test
	testdaemon.Poll(t, pollEvery, "the web stream to come back", 60*time.Second, func() bool {
		v, ok := testdaemon.Scrape(nil, listen).Value("yedge_stream_up", "stream", "web")
		return ok && v == 1
	})

	// SIGHUP with the web stream removed: streams change, models stay.
	writeCfg(false)
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	testdaemon.Poll(t, pollEvery, "the reload to drop the web stream", 30*time.Second, func() bool {
		var st struct {
			Streams []struct{ Name string } `json:"streams"`
		}
		_, _ = testdaemon.GetStatus(nil, listen, &st)
		return len(st.Streams) == 1 && st.Streams[0].Name == "file"
	})
	if strings.Contains(testdaemon.MetricsText(nil, listen), `stream="web"`) {
		t.Error("metrics of the removed stream are still exported")
	}
	if strings.Count(d.logs.String(), "model ready") != 2 {
		t.Errorf("the models were reloaded on a streams-only change")
	}

	// SIGTERM: exit 0 in bounded time with the sink flushed.
	d.term(t)
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
