package serve_test

// The web view, run in-process: its JSON and image endpoints, the MJPEG
// stream (multipart framing, valid JPEGs, no goroutine left by viewers
// that leave), no image work without a viewer, http.ui: false, no
// credentials shown; a real headless Chromium driving the pages; and the
// cost of a viewer (BenchmarkViewerCost). Helpers are prefixed wu.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
	"github.com/yedge/yedge/serve"
)

// wuSecret is the password of the stream that never connects.
const wuSecret = "pa55w0rdXYZ"

// wuConfig is a daemon with a looping video (cam), a paced image folder
// (imgs), and an rtsp stream with credentials on a closed port (door),
// shadowing every 2nd frame.
func wuConfig(tb testing.TB) serve.Plan {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	return testdaemon.Plan(tb, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: cam
    uri: %s
    loop: true
  - name: imgs
    uri: %s
    loop: true
    fps: 4
  - name: door
    uri: rtsp://admin:%s@%s/live
    reconnect:
      min_backoff: 200ms
      max_backoff: 1s
shadow:
  every_n: 2
shutdown_timeout: 10s
`, testdaemon.Models(tb, 1), fixtures.Path(tb, "media", "vtest.avi"), testdaemon.ImageFolder(tb, 0, 12), wuSecret, closed))
}

type wuStream struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Health  string `json:"health"`
	Watched bool   `json:"watched"`
	Encoded int64  `json:"images_encoded"`
	Model   string `json:"model"`
	Links   map[string]string
}

func wuStreams(tb testing.TB, addr string) map[string]wuStream {
	tb.Helper()
	code, body, err := testdaemon.Get(nil, addr, "/api/streams")
	if err != nil || code != http.StatusOK {
		tb.Fatalf("/api/streams: %d %v %s", code, err, body)
	}
	var out struct{ Streams []wuStream }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		tb.Fatalf("/api/streams: %v\n%s", err, body)
	}
	m := map[string]wuStream{}
	for _, s := range out.Streams {
		m[s.Name] = s
	}
	return m
}

func wuIsJPEG(b []byte) bool {
	return len(b) > 4 && b[0] == 0xFF && b[1] == 0xD8 && b[len(b)-2] == 0xFF && b[len(b)-1] == 0xD9
}

// wuReadMJPEG opens the MJPEG endpoint and reads n parts.
func wuReadMJPEG(c *http.Client, url string, n int) ([][]byte, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	if resp.StatusCode != http.StatusOK {
		return nil, ct, fmt.Errorf("status %d", resp.StatusCode)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "multipart/x-mixed-replace" || params["boundary"] == "" {
		return nil, ct, fmt.Errorf("content type %q: %v", ct, err)
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var parts [][]byte
	for len(parts) < n {
		p, err := mr.NextPart()
		if err != nil {
			return parts, ct, fmt.Errorf("part %d: %w", len(parts), err)
		}
		if got := p.Header.Get("Content-Type"); got != "image/jpeg" {
			return parts, ct, fmt.Errorf("part %d: content type %q", len(parts), got)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return parts, ct, fmt.Errorf("part %d: %w", len(parts), err)
		}
		parts = append(parts, b)
	}
	return parts, ct, nil
}

// TestWebUIEndpoints: no image is encoded before anyone watches; the
// snapshot, compare and MJPEG endpoints serve valid JPEGs (MJPEG as
// multipart/x-mixed-replace parts); viewers that disconnect leave no
// goroutine behind; encoding stops after the linger; credentials never
// show; http.ui: false (applied by a reload) answers 404 for the view
// while /status and /metrics stay. Under make soak (-tags matprofile) no
// gocv Mat is left once the daemon stopped.
func TestWebUIEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon")
	}
	stderr := ftCaptureStderr(t) // what FFmpeg prints about the failing stream
	cfg := wuConfig(t)
	mats := 0
	if soakMats != nil { // make soak: every Mat the view cloned is closed
		mats = soakMats()
	}
	d := ftStart(t, cfg)
	d.waitRising("frames on both healthy streams", 4, 90*time.Second, "cam", "imgs")
	testdaemon.Wait(t, "shadowed frames", 60*time.Second, func() bool { return d.metric("yedge_shadow_frames_total", "stream", "cam") >= 2 })

	// Nobody watched: nothing was drawn or encoded.
	for name, s := range wuStreams(t, d.addr) {
		if s.Encoded != 0 || s.Watched {
			t.Errorf("%s before any viewer: %d images encoded, watched %v", name, s.Encoded, s.Watched)
		}
	}

	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := c.Get("http://" + d.addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp, b
	}
	for _, path := range []string{"/api/streams/cam/snapshot.jpg", "/api/streams/imgs/snapshot.jpg", "/api/streams/cam/compare.jpg"} {
		resp, b := get(path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" || !wuIsJPEG(b) {
			t.Errorf("%s: %d %q, %d bytes, JPEG %v", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(b), wuIsJPEG(b))
		}
		if strings.HasSuffix(path, "compare.jpg") && resp.Header.Get("X-Yedge-Matched") == "" {
			t.Errorf("%s: no X-Yedge-Matched header", path)
		}
	}
	for _, tc := range []struct {
		path string
		code int
	}{{"/api/streams/nope/snapshot.jpg", 404}, {"/streams/nope", 404}, {"/api/streams/cam/mjpeg?fps=abc", 400},
		{"/api/streams/cam/mjpeg?fps=-1", 400}, {"/", 200}, {"/streams/cam", 200}, {"/streams/cam/compare", 200},
		{"/ui/app.js", 200}, {"/ui/app.css", 200}, {"/ui/", 404}, {"/api/streams/cam", 200}, {"/api/streams/cam/worst", 200}} {
		if resp, b := get(tc.path); resp.StatusCode != tc.code {
			t.Errorf("GET %s: %d, want %d: %s", tc.path, resp.StatusCode, tc.code, ftTail(string(b), 200))
		}
	}

	// MJPEG: three viewers at once, three parts each, then they leave.
	before := goleak.IgnoreCurrent()
	errs := make(chan error, 3)
	for _, name := range []string{"cam", "imgs", "cam"} {
		go func() {
			parts, ct, err := wuReadMJPEG(c, "http://"+d.addr+"/api/streams/"+name+"/mjpeg?fps=15", 3)
			if err == nil {
				for i, p := range parts {
					if !wuIsJPEG(p) {
						err = fmt.Errorf("part %d is not a whole JPEG (%d bytes, % x...)", i, len(p), p[:min(4, len(p))])
					}
				}
			}
			if err != nil {
				err = fmt.Errorf("%s (%s): %w", name, ct, err)
			} else {
				t.Logf("mjpeg %s: %s, 3 parts of %d, %d, %d bytes", name, ct, len(parts[0]), len(parts[1]), len(parts[2]))
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	c.CloseIdleConnections()
	var leak error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if leak = goleak.Find(before); leak == nil {
			break
		}
	}
	if leak != nil {
		t.Errorf("goroutines left after the MJPEG viewers left: %v", leak)
	}

	// Watched, images were encoded; after the linger with no viewer, none
	// are encoded any more.
	var after map[string]wuStream
	testdaemon.Wait(t, "the viewers' linger to end", 30*time.Second, func() bool {
		after = wuStreams(t, d.addr)
		return !after["cam"].Watched && !after["imgs"].Watched
	})
	if after["cam"].Encoded == 0 || after["imgs"].Encoded == 0 {
		t.Errorf("no image encoded while watched: %+v", after)
	}
	d.waitRising("frames without a viewer", 3, 60*time.Second, "cam")
	if later := wuStreams(t, d.addr); later["cam"].Encoded != after["cam"].Encoded || later["imgs"].Encoded != after["imgs"].Encoded {
		t.Errorf("images encoded with no viewer: cam %d -> %d, imgs %d -> %d", after["cam"].Encoded, later["cam"].Encoded,
			after["imgs"].Encoded, later["imgs"].Encoded)
	}

	// Credentials never show, and the failing stream is visible as down.
	testdaemon.Wait(t, "door to fail", 30*time.Second, func() bool { return wuStreams(t, d.addr)["door"].Health == "down" })
	for _, path := range []string{"/api/streams", "/api/streams/door", "/", "/streams/door", "/ui/app.js"} {
		_, b := get(path)
		if bytes.Contains(b, []byte(wuSecret)) {
			t.Errorf("%s shows the stream's password", path)
		}
	}
	if s := wuStreams(t, d.addr)["door"].Source; !strings.Contains(s, "***@") {
		t.Errorf("door source %q: want it redacted", s)
	}
	if strings.Contains(d.logs.String(), wuSecret) {
		t.Errorf("the log shows the stream's password")
	}

	// An open MJPEG connection ends when the view is turned off, and
	// another one when the daemon stops (without holding its shutdown).
	mjpegEnds := func() <-chan error {
		ended := make(chan error, 1)
		resp, err := (&http.Client{}).Get("http://" + d.addr + "/api/streams/cam/mjpeg")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer resp.Body.Close()
			_, err := io.Copy(io.Discard, resp.Body)
			ended <- err
		}()
		return ended
	}
	waitEnd := func(what string, ended <-chan error) {
		t.Helper()
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("MJPEG after %s: %v, want a clean end", what, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("MJPEG still open 30s after %s", what)
		}
	}
	open := mjpegEnds()

	// http.ui: false, applied by a reload.
	off := cfg
	off.HTTP.UI = false
	if ch, err := d.srv.Reload(context.Background(), off); err != nil || !ch.Settings {
		t.Fatalf("reload with http.ui false: %+v %v", ch, err)
	}
	waitEnd("http.ui false", open)
	for _, path := range []string{"/", "/streams/cam", "/streams/cam/compare", "/ui/app.js", "/api/streams", "/api/streams/cam",
		"/api/streams/cam/snapshot.jpg", "/api/streams/cam/mjpeg", "/api/streams/cam/compare.jpg", "/api/streams/cam/worst"} {
		if resp, _ := get(path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s with http.ui false: %d, want 404", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/status", "/metrics", "/healthz"} {
		if resp, _ := get(path); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with http.ui false: %d, want 200", path, resp.StatusCode)
		}
	}
	if _, err := d.srv.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	open = mjpegEnds()
	d.stop()
	waitEnd("shutdown", open)
	if strings.Contains(d.logs.String(), "http shutdown") {
		t.Errorf("the HTTP shutdown waited for the MJPEG viewer: %s", ftTail(d.logs.String(), 1000))
	}
	soakMatsLeft(t, mats)
	if strings.Contains(stderr(), wuSecret) {
		t.Errorf("stderr shows the stream's password")
	}
}

// wuChromium finds the browser: missing, the test skips, except under
// CI=true where it fails.
func wuChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (scripts/setup.sh installs it)")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// wuOut is the git-ignored folder of test artefacts at the repository root.
func wuOut(t *testing.T) string {
	dir := filepath.Join("..", "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWebUIBrowser drives the pages in a real headless Chromium: the
// index shows a tile per stream whose image moves, the stream page its
// live view, chart and facts, the compare view matched int8/FP32 boxes.
// Every control has an accessible name; the index fits a phone's width.
// Screenshots go to out/webui-{index,index-phone,stream,compare}.png.
func TestWebUIBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon and a browser")
	}
	browser := wuChromium(t)
	out := wuOut(t)
	d := ftStart(t, wuConfig(t))
	d.waitRising("frames on both healthy streams", 2, 90*time.Second, "cam", "imgs")

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	// The first Do starts the browser, for the life of bctx: no timeout.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}
	ctx, cancelT := context.WithTimeout(bctx, 4*time.Minute)
	defer cancelT()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	poll := func(expr string, timeout time.Duration) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(200*time.Millisecond))
	}
	screenshot := func(what string, a chromedp.Action[[]byte]) []byte {
		t.Helper()
		b, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return b
	}
	save := func(name string) {
		t.Helper()
		do("settle", chromedp.Sleep(1500*time.Millisecond))
		b := screenshot(name, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("saved out/%s (%d bytes)", name, len(b))
	}
	// Every control has an accessible name, every image a text.
	accessible := func(page string) {
		t.Helper()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`[...document.querySelectorAll('input,button,select,textarea')]
			.every(e => (e.labels && e.labels.length > 0) || e.getAttribute('aria-label')) &&
			[...document.querySelectorAll('img')].every(i => i.getAttribute('alt'))`))
		if err != nil || !ok {
			t.Errorf("%s: a control without an accessible name or an image without alt text (%v)", page, err)
		}
	}
	base := "http://" + d.addr

	// Index: both healthy tiles load an image, and it moves.
	do("index", chromedp.Navigate(base+"/"),
		poll(`['cam','imgs'].every(n => { const i = document.querySelector('article[data-stream="'+n+'"] img');
			return i && i.complete && i.naturalWidth > 0; })`, 90*time.Second))
	for _, name := range []string{"cam", "imgs"} {
		sel := chromedp.CSS(`article[data-stream="` + name + `"] img`)
		first := screenshot("tile "+name, chromedp.Screenshot(sel))
		moved := false
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !moved; {
			time.Sleep(700 * time.Millisecond)
			moved = !bytes.Equal(first, screenshot("tile "+name, chromedp.Screenshot(sel)))
		}
		if !moved {
			t.Errorf("the %s tile's image did not change in 60s", name)
		}
	}
	do("door tile down", poll(`document.querySelector('article[data-stream="door"]')?.dataset.health === 'down'`, 60*time.Second))
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, wuSecret) {
		t.Errorf("the index page shows the door stream's password")
	}
	for _, want := range []string{"yolov5n-qdq-torch.onnx", "int8", "vs FP32"} {
		if !strings.Contains(html, want) {
			t.Errorf("the index page lacks %q", want)
		}
	}
	accessible("/")
	save("webui-index.png")
	// On a phone: one column, nothing wider than the screen.
	do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Sleep(time.Second),
		poll(`document.documentElement.scrollWidth <= window.innerWidth + 1 &&
			document.querySelector('article[data-stream="cam"]').getBoundingClientRect().width > 300`, 10*time.Second))
	save("webui-index-phone.png")
	do("desktop", chromedp.EmulateViewport(1280, 1000))

	// Stream page: the MJPEG live view shows, the chart has lines.
	do("stream page", chromedp.Navigate(base+"/streams/cam"),
		poll(`document.getElementById('live').naturalWidth > 0 &&
			document.querySelectorAll('#chart path[data-stage="infer_ms"]').length > 0 &&
			(document.querySelector('dd[data-key="serving"]')?.textContent || '').includes('int8')`, 60*time.Second))
	accessible("/streams/cam")
	save("webui-stream.png")

	// Compare view: matched int8/FP32 boxes, counted in data attributes.
	do("compare page", chromedp.Navigate(base+"/streams/cam/compare"),
		poll(`Number(document.getElementById('n-matched').dataset.matched) > 0`, 60*time.Second))
	counts := map[string]string{}
	for _, a := range [][2]string{{"#n-matched", "data-matched"}, {"#n-int8", "data-int8-only"}, {"#n-fp32", "data-fp32-only"}} {
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(a[0]), a[1]))
		if err != nil || !v.Exists {
			t.Fatalf("%s %s: %+v %v", a[0], a[1], v, err)
		}
		counts[a[1]] = v.Value
	}
	// The strip fills as disagreeing frames come; it may stay empty when
	// int8 and FP32 agree on every frame.
	_ = chromedp.Do(ctx, poll(`document.querySelectorAll('#worst img').length > 0`, 20*time.Second))
	strip, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#worst img').length`))
	if err != nil {
		t.Fatal(err)
	}
	accessible("/streams/cam/compare")
	save("webui-compare.png")
	t.Logf("compare view: %v; disagreement strip %d frames", counts, strip)
}

// BenchmarkViewerCost measures what the web view costs the int8 frame rate:
// two image-folder streams (not paced, so inference is the bottleneck) on
// one daemon, alternating windows with no viewer and with one MJPEG viewer
// (at the 15 fps cap) on every stream. Run it once:
//
//	go test -run '^$' -bench ViewerCost -benchtime 1x ./serve
func BenchmarkViewerCost(b *testing.B) {
	int8Path := filepath.Join(b.TempDir(), "int8-cpu.onnx")
	ftQuantizeCPU(b, int8Path)
	images := testdaemon.ImageFolder(b, 0, 20)
	d := ftStart(b, testdaemon.Plan(b, fmt.Sprintf(`listen: 127.0.0.1:0
model:
  fp32: %s
  int8: %s
provider:
  name: cpu
  threads: 2
streams:
  - name: s0
    uri: %s
    loop: true
  - name: s1
    uri: %s
    loop: true
shadow:
  every_n: 10
shutdown_timeout: 10s
`, fixtures.Model(b, "yolov5n.onnx"), int8Path, images, images)))
	names := []string{"s0", "s1"}
	d.waitRising("warm-up frames", 10, 60*time.Second, names...)
	inferred := func() float64 {
		v := 0.0
		for _, n := range names {
			v += d.metric("yedge_frames_inferred_total", "stream", n, "precision", "int8")
		}
		return v
	}
	measure := func(window time.Duration) float64 {
		c0, t0 := inferred(), time.Now()
		time.Sleep(window)
		return (inferred() - c0) / time.Since(t0).Seconds()
	}
	const window = 15 * time.Second
	var idle, watched []float64
	b.ResetTimer()
	for range b.N {
		for round := 0; round < 2; round++ {
			time.Sleep(4 * time.Second) // the linger of earlier viewers
			idle = append(idle, measure(window))
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan struct{}, len(names))
			for _, n := range names {
				go func() {
					defer func() { done <- struct{}{} }()
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+"/api/streams/"+n+"/mjpeg?fps=15", nil)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						return
					}
					defer resp.Body.Close()
					_, _ = io.Copy(io.Discard, resp.Body)
				}()
			}
			time.Sleep(2 * time.Second)
			watched = append(watched, measure(window))
			stop()
			for range names {
				<-done
			}
		}
	}
	b.StopTimer()
	mean := func(x []float64) float64 {
		s := 0.0
		for _, v := range x {
			s += v
		}
		return s / float64(len(x))
	}
	fi, fw := mean(idle), mean(watched)
	b.ReportMetric(fi, "fps-no-viewer")
	b.ReportMetric(fw, "fps-one-viewer-each")
	b.ReportMetric(100*(1-fw/fi), "cost-%")
	b.Logf("int8 fps (2 streams together): no viewer %.2f %v, one MJPEG viewer per stream %.2f %v", fi, idle, fw, watched)
}
