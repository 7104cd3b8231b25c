// Package fleettest runs a small fleet on loopback: three yedge daemons as
// three devices, each scraped by its own Prometheus in agent mode with the
// shipped deploy/prometheus/agent.yml, all remote-writing to one central
// Prometheus with the shipped central.yml and fleet-rules.yml.
package fleettest

import (
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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

const (
	scrapeInterval = time.Second
	outage         = 30 * time.Second
)

// need returns the path of a program, skipping the test when it is missing
// (failing it under CI=true).
func need(t *testing.T, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (CI=true): %s", name, hint)
		}
		t.Skipf("%s not found: %s", name, hint)
	}
	return p
}

// freeAddr picks a free loopback port.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a child process in its own process group, logging to a file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, dir, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(5 * time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, b)
		}
	})
	return p
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var client = &http.Client{Timeout: 5 * time.Second}

// waitFor polls cond every 250 ms until it holds or timeout passes.
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

func httpOK(u string) bool {
	resp, err := client.Get(u)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
	Values [][2]any          `json:"values"`
}

// query runs an instant PromQL query at time at (zero: now).
func query(prom, q string, at time.Time) ([]sample, error) {
	v := url.Values{"query": {q}}
	if !at.IsZero() {
		v.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64))
	}
	resp, err := client.Get("http://" + prom + "/api/v1/query?" + v.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []sample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, r.Error)
	}
	return r.Data.Result, nil
}

func val(s sample) float64 {
	str, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(str, 64)
	return f
}

// byDevice runs q and returns its values by device_id.
func byDevice(prom, q string) map[string]float64 {
	r, err := query(prom, q, time.Time{})
	if err != nil {
		return nil
	}
	m := map[string]float64{}
	for _, s := range r {
		m[s.Metric["device_id"]] = val(s)
	}
	return m
}

// readYAML decodes a shipped config into a generic map.
func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mapOf(t *testing.T, v any, what string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: not a mapping in the shipped config", what)
	}
	return m
}

func listOf(t *testing.T, v any, what string) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok || len(l) == 0 {
		t.Fatalf("%s: not a non-empty list in the shipped config", what)
	}
	return l
}

type device struct {
	id, site, zone string
	listen         string
	yedge, agent   *proc
}

// agentFlags returns the flags that turn on agent mode: --agent on
// Prometheus >= 3, the agent feature flag on 2.x (Debian 12 has 2.42).
func agentFlags(t *testing.T, prom string) []string {
	out, _ := exec.Command(prom, "--help").CombinedOutput()
	if regexp.MustCompile(`(?m)^\s+--agent\b`).Match(out) {
		return []string{"--agent"}
	}
	return []string{"--enable-feature=agent"}
}

// TestFleet: three devices, agents remote-writing to a central
// Prometheus; the central receiver goes away for 30 s and comes back on the
// same storage without a gap in any device's samples; a killed daemon
// fires YedgeDeviceDown at central.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("fleet integration test (about 2 minutes): not with -short")
	}
	promBin := need(t, "prometheus", "make setup installs Debian's prometheus")
	int8Model := fixtures.Model(t, "yolov5n-qdq-torch.onnx")
	fp32Model := fixtures.Model(t, "yolov5n.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	root := fixtures.Root()
	ortLib := filepath.Join(root, "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1")
	if _, err := os.Stat(ortLib); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("onnxruntime missing (CI=true; make setup installs it): %v", err)
		}
		t.Skipf("onnxruntime missing (make setup installs it): %v", err)
	}
	testStart := time.Now()
	dir := t.TempDir()

	// The daemon, built as make build does.
	bin := filepath.Join(dir, "yedge")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/yedge")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built yedge in %v", time.Since(testStart).Round(time.Second))

	// Central: the shipped central.yml and fleet-rules.yml, with the time
	// constants of the rules scaled from minutes to seconds.
	promDir := filepath.Join(root, "deploy", "prometheus")
	rules, err := os.ReadFile(filepath.Join(promDir, "fleet-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	testRules := string(rules)
	for _, r := range [][2]string{
		{"for: 5m", "for: 3s"}, // YedgeDeviceDown
		{"timestamp(up{job=\"yedge\"}) < 120", "timestamp(up{job=\"yedge\"}) < 10"}, // freshness
	} {
		if !strings.Contains(testRules, r[0]) {
			t.Fatalf("fleet-rules.yml no longer contains %q: update this test", r[0])
		}
		testRules = strings.ReplaceAll(testRules, r[0], r[1])
	}
	if err := os.WriteFile(filepath.Join(dir, "fleet-rules.yml"), []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	central := freeAddr(t)
	ccfg := readYAML(t, filepath.Join(promDir, "central.yml"))
	mapOf(t, ccfg["global"], "global")["evaluation_interval"] = "1s"
	if rf := listOf(t, ccfg["rule_files"], "rule_files"); rf[0] != "fleet-rules.yml" {
		t.Fatalf("central.yml rule_files = %v, want fleet-rules.yml", rf)
	}
	for _, sc := range listOf(t, ccfg["scrape_configs"], "scrape_configs") {
		mapOf(t, sc, "scrape_configs[]")["static_configs"] = []any{map[string]any{"targets": []any{central}}}
	}
	centralCfg := filepath.Join(dir, "central.yml")
	writeYAML(t, centralCfg, ccfg)
	centralData := filepath.Join(dir, "central-data")
	startCentral := func() *proc {
		p := start(t, dir, "central", nil, promBin, "--config.file="+centralCfg,
			"--storage.tsdb.path="+centralData, "--web.listen-address="+central,
			"--web.enable-remote-write-receiver", "--log.level=warn")
		waitFor(t, "central Prometheus ready", 60*time.Second, func() bool { return httpOK("http://" + central + "/-/ready") })
		return p
	}
	cen := startCentral()

	// Three devices: a yedge daemon and a Prometheus agent each.
	agentMode := agentFlags(t, promBin)
	acfgShipped := readYAML(t, filepath.Join(promDir, "agent.yml"))
	devs := []*device{
		{id: "dev-a1", site: "site-a", zone: "gate"},
		{id: "dev-a2", site: "site-a", zone: "dock"},
		{id: "dev-b1", site: "site-b", zone: "gate"},
	}
	for _, d := range devs {
		d.listen = freeAddr(t)
		cfg := fmt.Sprintf(`listen: %s
log_level: warn
device:
  id: %s
  labels:
    site: %s
    zone: %s
model:
  fp32: %s
  int8: %s
  batch: 1
provider:
  name: cpu
  threads: 1
streams:
  - name: cam
    uri: %s
    loop: true
    fps: 2
shadow:
  every_n: 1000
`, d.listen, d.id, d.site, d.zone, fp32Model, int8Model, video)
		cfgPath := filepath.Join(dir, d.id+".yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		d.yedge = start(t, dir, d.id, []string{"YEDGE_ORT_LIB=" + ortLib}, bin, "serve", "--config", cfgPath)

		// The shipped agent.yml, with test timings: 1 s scrapes and a short
		// retry backoff (so the test need not wait out a 1 min backoff).
		var acfg map[string]any
		b, _ := yaml.Marshal(acfgShipped)
		if err := yaml.Unmarshal(b, &acfg); err != nil {
			t.Fatal(err)
		}
		g := mapOf(t, acfg["global"], "global")
		g["scrape_interval"], g["scrape_timeout"] = "1s", "1s"
		job := mapOf(t, listOf(t, acfg["scrape_configs"], "scrape_configs")[0], "scrape_configs[0]")
		job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
		sd := mapOf(t, listOf(t, job["file_sd_configs"], "file_sd_configs")[0], "file_sd_configs[0]")
		sdFile := filepath.Join(dir, d.id+"-device.yml")
		sd["files"] = []any{sdFile}
		writeYAML(t, sdFile, []any{map[string]any{
			"targets": []any{d.listen},
			"labels":  map[string]any{"device_id": d.id, "site": d.site, "zone": d.zone},
		}})
		rw := mapOf(t, listOf(t, acfg["remote_write"], "remote_write")[0], "remote_write[0]")
		rw["url"] = "http://" + central + "/api/v1/write"
		q := mapOf(t, rw["queue_config"], "queue_config")
		q["min_backoff"], q["max_backoff"], q["batch_send_deadline"] = "200ms", "1s", "1s"
		agentCfg := filepath.Join(dir, d.id+"-agent.yml")
		writeYAML(t, agentCfg, acfg)
		args := append(slices.Clone(agentMode), "--config.file="+agentCfg,
			"--storage.agent.path="+filepath.Join(dir, d.id+"-wal"),
			"--web.listen-address="+freeAddr(t), "--log.level=warn")
		d.agent = start(t, dir, d.id+"-agent", nil, promBin, args...)
	}
	for _, d := range devs {
		waitFor(t, d.id+" /readyz", 120*time.Second, func() bool {
			if d.yedge.exited() {
				t.Fatalf("%s exited", d.id)
			}
			return httpOK("http://" + d.listen + "/readyz")
		})
	}
	t.Logf("devices ready after %v", time.Since(testStart).Round(time.Second))

	// Every device's series reach central, labelled by the agent.
	waitFor(t, "each device's up == 1 at central", 60*time.Second, func() bool {
		v := byDevice(central, `up{job="yedge"}`)
		return v["dev-a1"] == 1 && v["dev-a2"] == 1 && v["dev-b1"] == 1
	})
	waitFor(t, "frames and device info of each device at central", 60*time.Second, func() bool {
		v := byDevice(central, `yedge_frames_read_total{stream="cam"}`)
		return len(v) == 3
	})
	for _, d := range devs {
		r, err := query(central, fmt.Sprintf(`yedge_device_info{device_id=%q}`, d.id), time.Time{})
		if err != nil || len(r) != 1 {
			t.Fatalf("yedge_device_info of %s at central: %v %v", d.id, r, err)
		}
		if m := r[0].Metric; m["site"] != d.site || m["zone"] != d.zone || m["exported_device_id"] != "" {
			t.Errorf("yedge_device_info of %s: labels %v", d.id, m)
		}
		r, err = query(central, fmt.Sprintf(`yedge_frames_read_total{device_id=%q}`, d.id), time.Time{})
		if err != nil || len(r) != 1 || r[0].Metric["site"] != d.site || r[0].Metric["zone"] != d.zone {
			t.Errorf("yedge_frames_read_total of %s at central lacks the target labels: %v %v", d.id, r, err)
		}
	}
	logCardinality(t, devs[0].listen, central)

	// The central receiver goes away for 30 s: the agents keep scraping
	// into their WAL and retry; after the restart (same storage) nothing
	// is missing.
	time.Sleep(3 * time.Second)
	from := time.Now()
	cen.stop(15 * time.Second)
	t.Logf("central stopped; waiting %v", outage)
	time.Sleep(outage)
	startCentral() // stopped by start's cleanup, as every process
	restarted := time.Now()
	waitFor(t, "the agents to catch up after the outage", 60*time.Second, func() bool {
		v := byDevice(central, `timestamp(up{job="yedge"})`)
		for _, d := range devs {
			if v[d.id] < float64(restarted.Unix()+2) {
				return false
			}
		}
		return true
	})
	to := time.Now()
	window := to.Sub(from) + 2*time.Second
	rng := fmt.Sprintf("%ds", int(window.Seconds())+1)
	raw, err := query(central, `up{job="yedge"}[`+rng+`]`, to)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range raw {
		id := s.Metric["device_id"]
		seen[id] = true
		var ts []float64
		for _, v := range s.Values {
			f, _ := v[0].(float64)
			ts = append(ts, f)
		}
		slices.Sort(ts)
		gap := 0.0
		for i := 1; i < len(ts); i++ {
			gap = max(gap, ts[i]-ts[i-1])
		}
		span := ts[len(ts)-1] - ts[0]
		want := int(span/scrapeInterval.Seconds()) + 1
		t.Logf("%s: %d samples of up over %.1fs across the outage (want %d at 1s), largest gap %.2fs", id, len(ts), span, want, gap)
		if span < window.Seconds()-5 {
			t.Errorf("%s: samples span only %.1fs of the %.0fs window", id, span, window.Seconds())
		}
		if len(ts) < want-1 || gap > 2.5*scrapeInterval.Seconds() {
			t.Errorf("%s: samples lost across the outage: %d of %d, largest gap %.2fs", id, len(ts), want, gap)
		}
	}
	if len(seen) != 3 {
		t.Errorf("devices with samples across the outage: %v, want 3", seen)
	}
	counts := byDevice(central, `count_over_time(yedge_build_info[`+rng+`])`)
	t.Logf("count_over_time(yedge_build_info[%s]) per device: %v", rng, counts)

	// A device's daemon dies: YedgeDeviceDown fires at central for it
	// alone.
	victim := devs[2]
	victim.yedge.kill()
	killed := time.Now()
	waitFor(t, "YedgeDeviceDown for "+victim.id+" at central", 60*time.Second, func() bool {
		v := byDevice(central, `ALERTS{alertname="YedgeDeviceDown",alertstate="firing"}`)
		return v[victim.id] == 1
	})
	t.Logf("YedgeDeviceDown fired %v after the kill", time.Since(killed).Round(time.Second))
	if v := byDevice(central, `ALERTS{alertname="YedgeDeviceDown"}`); len(v) != 1 {
		t.Errorf("YedgeDeviceDown active for %v, want %s alone", v, victim.id)
	}
	if r, err := query(central, `site:yedge_devices_down:ratio`, time.Time{}); err == nil {
		for _, s := range r {
			t.Logf("site:yedge_devices_down:ratio{site=%q} = %v", s.Metric["site"], val(s))
		}
	}
	t.Logf("fleet test took %v", time.Since(testStart).Round(time.Second))
}

// logCardinality counts the series a device exposes in /metrics (with the
// stream's series apart) and those central stores for it.
func logCardinality(t *testing.T, listen, central string) {
	resp, err := client.Get("http://" + listen + "/metrics")
	if err != nil {
		t.Errorf("scrape: %v", err)
		return
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = io.Copy(&body, resp.Body)
	total, stream, yedge := 0, 0, 0
	for _, l := range strings.Split(body.String(), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		total++
		if strings.Contains(l, `stream="`) {
			stream++
		}
		if strings.HasPrefix(l, "yedge_") {
			yedge++
		}
	}
	n := byDevice(central, `count by (device_id) ({job="yedge", device_id!=""})`)
	t.Logf("cardinality: /metrics of one device with 1 stream: %d series (%d yedge_, %d with the stream label, %d without); central stores %v per device (after the agent's drop of go_gc/go_memstats)",
		total, yedge, stream, total-stream, n)
}
