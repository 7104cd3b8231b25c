package serve_test

// Security properties of the daemon's HTTP side, run in-process: it binds
// only the configured address, caps request bodies, cuts off slow
// clients, guards the POST endpoints (disabled, or bearer token) while the
// GET endpoints stay open, and never shows credentials of stream URIs in
// its log, its metrics or /status.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
	"github.com/yedge/yedge/internal/testkit/testdaemon"
)

// TestSecurityBindsConfiguredAddress: listen 127.0.0.1:0 binds loopback
// only; the port is closed on every other address of the machine.
func TestSecurityBindsConfiguredAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon")
	}
	d := ftStart(t, testdaemon.Plan(t, "listen: 127.0.0.1:0\n"+testdaemon.Models(t, 1)+ftFileStream(t)+"shutdown_timeout: 5s\n"))
	host, port, err := net.SplitHostPort(d.addr)
	if err != nil {
		t.Fatal(err)
	}
	if host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr() = %s, want 127.0.0.1:<port>", d.addr)
	}
	if code, _, err := testdaemon.Get(nil, d.addr, "/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz on %s: %d %v", d.addr, code, err)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	others := 0
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		others++
		target := net.JoinHostPort(ipn.IP.String(), port)
		c, err := net.DialTimeout("tcp", target, 2*time.Second)
		if err == nil {
			c.Close()
			t.Errorf("the daemon answers on %s, though it was told to listen on %s", target, d.addr)
			continue
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Logf("%s: %v (not refused, but not reachable either)", target, err)
		}
	}
	if others == 0 {
		t.Log("no address besides loopback on this machine: checked the bound host only")
	}
	// Another loopback address (127.0.0.0/8) is not bound either.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.2", port), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the daemon answers on 127.0.0.2:%s", port)
	}
	t.Logf("bound %s; %d other local addresses refused", d.addr, others)
}

// ftRawRequest sends a raw HTTP request and returns the status line of
// the answer ("" when the server closed the connection without one).
func ftRawRequest(addr, req string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// TestSecurityBodiesAndTimeouts: request bodies over http.max_body_bytes
// are refused with 413 (declared or chunked), and clients that send their
// headers or body too slowly are cut off after http.read_timeout.
func TestSecurityBodiesAndTimeouts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon")
	}
	d := ftStart(t, testdaemon.Plan(t, `listen: 127.0.0.1:0
`+testdaemon.Models(t, 1)+ftFileStream(t)+`http:
  max_body_bytes: 1024
  read_timeout: 1s
  write_timeout: 5s
shutdown_timeout: 5s
`))
	c := &http.Client{Timeout: 10 * time.Second}
	post := func(body io.Reader) int {
		t.Helper()
		resp, err := c.Post("http://"+d.addr+"/eval", "application/octet-stream", body)
		if err != nil {
			t.Fatalf("POST /eval: %v", err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	big := strings.Repeat("x", 4096)
	// Declared length over the cap.
	if code := post(strings.NewReader(big)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /eval with a 4096-byte body: %d, want 413", code)
	}
	// Chunked (no declared length): refused while reading.
	if code := post(io.MultiReader(strings.NewReader(big))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /eval with a chunked 4096-byte body: %d, want 413", code)
	}
	// A body within the cap passes the check (no eval.data here: 409).
	if code := post(strings.NewReader("{}")); code == http.StatusRequestEntityTooLarge {
		t.Errorf("POST /eval with a 2-byte body: 413")
	}
	// Header over the header cap.
	if line, err := ftRawRequest(d.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("y", 64<<10)+"\r\n\r\n"); err != nil ||
		!strings.Contains(line, "431") {
		t.Errorf("64 KiB header: %q %v, want 431", line, err)
	}

	// A client that sends its headers slowly (one every 200ms, for up to
	// 10s) is cut off after read_timeout (1s), not served forever.
	slow := func(what, head, trickle string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", d.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		closed := make(chan time.Duration, 1)
		var answer strings.Builder
		var mu sync.Mutex
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := conn.Read(buf)
				mu.Lock()
				answer.Write(buf[:n])
				mu.Unlock()
				if err != nil {
					closed <- time.Since(start)
					return
				}
			}
		}()
		_, _ = io.WriteString(conn, head)
		var cut time.Duration
	loop:
		for i := 0; i < 50; i++ {
			select {
			case cut = <-closed:
				break loop
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := io.WriteString(conn, trickle); err != nil {
				cut = time.Since(start)
				break
			}
		}
		if cut == 0 {
			select {
			case cut = <-closed:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: still connected after %v", what, time.Since(start))
			}
		}
		mu.Lock()
		got := answer.String()
		mu.Unlock()
		t.Logf("%s: cut off after %v (answer %q)", what, cut.Round(10*time.Millisecond), firstLine(got))
		if cut > 3*time.Second {
			t.Errorf("%s: cut off after %v, want about read_timeout (1s)", what, cut)
		}
		if strings.Contains(got, " 200 ") || strings.Contains(got, " 202 ") || strings.Contains(got, " 413 ") {
			t.Errorf("%s: answered %q", what, firstLine(got))
		}
	}
	slow("slow headers", "GET /healthz HTTP/1.1\r\nHost: x\r\n", "X-Slow: a\r\n")
	slow("slow body", "POST /eval HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a")

	to := d.srv.HTTPTimeouts()
	if to.ReadHeader <= 0 || to.ReadHeader > time.Second || to.Read != time.Second || to.Write != 5*time.Second || to.Idle <= 0 {
		t.Errorf("HTTP timeouts %+v, want read-header <= read 1s, write 5s, idle > 0", to)
	}
	// The daemon still serves others.
	if code, _, err := testdaemon.Get(nil, d.addr, "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz after the slow clients: %d %v", code, err)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// ftDataset makes a YOLO dataset of the first n images of coco-val128
// (symlinks) with their labels.
func ftDataset(tb testing.TB, n int) string {
	tb.Helper()
	src := fixtures.Path(tb, "datasets", "coco-val128")
	dir := filepath.Join(tb.TempDir(), "data")
	for _, sub := range []string{"images", "labels"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(src, "images"))
	if err != nil {
		tb.Fatal(err)
	}
	k := 0
	for _, e := range entries {
		if k == n {
			break
		}
		if !strings.HasSuffix(e.Name(), ".jpg") {
			continue
		}
		label := strings.TrimSuffix(e.Name(), ".jpg") + ".txt"
		if _, err := os.Stat(filepath.Join(src, "labels", label)); err != nil {
			continue
		}
		if err := os.Symlink(filepath.Join(src, "images", e.Name()), filepath.Join(dir, "images", e.Name())); err != nil {
			tb.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(src, "labels", label), filepath.Join(dir, "labels", label)); err != nil {
			tb.Fatal(err)
		}
		k++
	}
	if k < n {
		tb.Fatalf("only %d labelled images in %s", k, src)
	}
	if b, err := os.ReadFile(filepath.Join(src, "data.yaml")); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "data.yaml"), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// TestSecurityPostEndpoints: http.enable_post false refuses POST with 403;
// with a token file, POST needs the bearer token (401 without it or with
// a wrong one, 202 with it); GET endpoints stay open in both cases, and the
// token shows nowhere.
func TestSecurityPostEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon twice")
	}
	data := ftDataset(t, 2)
	do := func(addr, method, path, auth string) int {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", method, path)
		}
		return resp.StatusCode
	}
	gets := func(addr string) {
		t.Helper()
		for _, p := range []string{"/healthz", "/status", "/metrics"} {
			if code := do(addr, "GET", p, ""); code != http.StatusOK {
				t.Errorf("GET %s without a token: %d, want 200", p, code)
			}
		}
	}
	base := "listen: 127.0.0.1:0\n" + testdaemon.Models(t, 1) + ftFileStream(t) + fmt.Sprintf("eval:\n  data: %s\n  on_start: false\nshutdown_timeout: 10s\n", data)

	t.Run("disabled", func(t *testing.T) {
		d := ftStart(t, testdaemon.Plan(t, base+"http:\n  enable_post: false\n"))
		if code := do(d.addr, "POST", "/eval", ""); code != http.StatusForbidden {
			t.Errorf("POST /eval with enable_post false: %d, want 403", code)
		}
		gets(d.addr)
		if st, _ := d.status(); len(st.Errors) > 0 {
			t.Logf("errors: %+v", st.Errors)
		}
	})

	t.Run("token", func(t *testing.T) {
		const token = "tok-9f2c1e7a5b"
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d := ftStart(t, testdaemon.Plan(t, base+fmt.Sprintf("http:\n  token_file: %s\n", tokenFile)))
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Bearer " + token[:len(token)-1], "Basic " + token, token} {
			if code := do(d.addr, "POST", "/eval", auth); code != http.StatusUnauthorized {
				t.Errorf("POST /eval with Authorization %q: %d, want 401", auth, code)
			}
		}
		gets(d.addr)
		if code := do(d.addr, "POST", "/eval", "Bearer "+token); code != http.StatusAccepted {
			t.Fatalf("POST /eval with the token: %d, want 202", code)
		}
		// The evaluation runs on the 2-image dataset and lands in /status.
		testdaemon.Wait(t, "the evaluation of both precisions", 45*time.Second, func() bool {
			_, body := d.status()
			return strings.Contains(body, `"int8"`) && strings.Contains(body, `"fp32"`) && strings.Contains(body, `"images": 2`)
		})
		_, status := d.status()
		for what, s := range map[string]string{"log": d.logs.String(), "/status": status, "/metrics": testdaemon.MetricsText(nil, d.addr)} {
			if strings.Contains(s, token) {
				t.Errorf("the token shows in %s", what)
			}
		}
	})
}

// ftCaptureStderr redirects file descriptor 2 (where OpenCV and FFmpeg
// write their own messages) into a buffer until the returned function is
// called; the function returns what was written.
func ftCaptureStderr(tb testing.TB) func() string {
	tb.Helper()
	saved, err := syscall.Dup(2)
	if err != nil {
		tb.Skipf("dup stderr: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Dup2(int(w.Fd()), 2); err != nil {
		tb.Skipf("dup2 stderr: %v", err)
	}
	var buf testdaemon.SyncBuffer
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(&buf, r)
		close(done)
	}()
	var once sync.Once
	restore := func() string {
		once.Do(func() {
			_ = syscall.Dup2(saved, 2)
			syscall.Close(saved)
			w.Close()
			<-done
			r.Close()
		})
		return buf.String()
	}
	tb.Cleanup(func() { restore() })
	return restore
}

// TestSecurityNoCredentialsShown: streams whose URIs carry credentials
// (user:password in an http URL, a token in an rtsp query) and point at a
// closed port keep failing and reconnecting; the daemon's log, its
// /metrics and /status, and what OpenCV/FFmpeg print on stderr never show
// the secrets.
func TestSecurityNoCredentialsShown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the daemon")
	}
	closed := testdaemon.FreePort(t) // a closed port: connections are refused
	stderr := ftCaptureStderr(t)
	d := ftStart(t, testdaemon.Plan(t, fmt.Sprintf(`listen: 127.0.0.1:0
%sstreams:
  - name: cam
    uri: %s
    loop: true
  - name: door
    uri: http://admin:hunter2@%s/x
    reconnect:
      min_backoff: 100ms
      max_backoff: 400ms
  - name: gate
    uri: rtsp://%s/live?token=s3cr3tT0k&user=admin
    reconnect:
      min_backoff: 100ms
      max_backoff: 400ms
shutdown_timeout: 5s
`, testdaemon.Models(t, 1), fixtures.Path(t, "media", "vtest.avi"), closed, closed)))
	testdaemon.Wait(t, "reconnect attempts of both streams", 30*time.Second, func() bool {
		m := d.metrics()
		a, _ := m.Value("yedge_stream_reconnects_total", "stream", "door")
		b, _ := m.Value("yedge_stream_reconnects_total", "stream", "gate")
		return a >= 3 && b >= 3
	})
	d.waitRising("detection on the healthy stream", 1, 30*time.Second, "cam")
	st, status := d.status()
	metricsText := testdaemon.MetricsText(nil, d.addr)
	d.stop()
	errText := stderr()
	logs := d.logs.String()
	for what, s := range map[string]string{"log": logs, "/status": status, "/metrics": metricsText, "stderr": errText} {
		for _, secret := range []string{"hunter2", "s3cr3tT0k"} {
			if strings.Contains(s, secret) {
				i := strings.Index(s, secret)
				t.Errorf("%q shows in %s: ...%s...", secret, what, s[max(0, i-120):min(len(s), i+40)])
			}
		}
	}
	// The sources are still identifiable, redacted.
	found := 0
	for _, s := range st.Streams {
		switch s.Name {
		case "door":
			found++
			if !strings.Contains(s.Source, "***@"+closed) || s.LastError == "" {
				t.Errorf("door in /status: %+v", s)
			}
		case "gate":
			found++
			if !strings.Contains(s.Source, "token=***") {
				t.Errorf("gate in /status: %+v", s)
			}
		}
	}
	if found != 2 {
		t.Errorf("streams in /status: %+v", st.Streams)
	}
	if !strings.Contains(logs, "***@"+closed) {
		t.Errorf("the log does not name the failing source (redacted)")
	}
	t.Logf("log %d bytes, stderr %d bytes, /status %d bytes, /metrics %d bytes checked; stderr starts: %s", len(logs), len(errText), len(status), len(metricsText), ftTail(firstLine(errText), 200))
}
