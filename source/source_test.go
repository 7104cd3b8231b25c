package source

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"image/color"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gocv.io/x/gocv"
)

// sharedDir returns ../../shared (the project's read-only fixtures), skipping
// the test when it is absent, or failing it when CI=true.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared")
	if _, err := os.Stat(dir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared fixtures missing at %s (required in CI): %v", dir, err)
		}
		t.Skipf("shared fixtures missing at %s: skipping (set up ../shared beside the repo to run)", dir)
	}
	return dir
}

// vtest returns the path of shared/media/vtest.avi (768x576, 10 fps, 795 frames).
func vtest(t *testing.T) string {
	t.Helper()
	p := filepath.Join(sharedDir(t), "media", "vtest.avi")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("fixture %s missing: %v", p, err)
		}
		t.Skipf("fixture %s missing: skipping", p)
	}
	return p
}

const (
	vtestW, vtestH, vtestFrames = 768, 576, 795
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger returns a debug logger writing to a buffer the test can check.
func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// writeImage writes a w x h image of one colour with gocv.IMWrite.
func writeImage(t *testing.T, path string, w, h int, c color.RGBA) {
	t.Helper()
	m := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(float64(c.B), float64(c.G), float64(c.R), 0), h, w, gocv.MatTypeCV8UC3)
	defer m.Close()
	if !gocv.IMWrite(path, m) {
		t.Fatalf("IMWrite %s failed", path)
	}
}

// writeGarbage writes n random bytes to path.
func writeGarbage(t *testing.T, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// makeClip writes the first n frames of vtest.avi as an MJPG AVI in dir.
func makeClip(t *testing.T, dir string, n int) string {
	t.Helper()
	src, err := gocv.VideoCaptureFile(vtest(t))
	if err != nil {
		src.Close()
		t.Fatalf("open vtest: %v", err)
	}
	defer src.Close()
	out := filepath.Join(dir, "clip.avi")
	vw, err := gocv.VideoWriterFile(out, "MJPG", 10, vtestW, vtestH, true)
	if err != nil {
		t.Fatalf("VideoWriterFile: %v", err)
	}
	defer vw.Close()
	if !vw.IsOpened() {
		t.Fatal("VideoWriter for MJPG AVI did not open")
	}
	m := gocv.NewMat()
	defer m.Close()
	for i := 0; i < n; i++ {
		if !src.Read(&m) || m.Empty() {
			t.Fatalf("vtest frame %d unreadable", i)
		}
		if err := vw.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	video := filepath.Join(dir, "file.mp4")
	img := filepath.Join(dir, "photo.JPG")
	folder := filepath.Join(dir, "frames")
	for _, p := range []string{video, img} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.mp4")

	tests := []struct {
		name    string
		arg     string
		kind    Kind
		uri     string // expected Spec.URI when it differs from arg
		camera  int
		wantErr string
	}{
		{name: "camera index", arg: "0", kind: Camera, camera: 0},
		{name: "camera index 3", arg: "3", kind: Camera, camera: 3},
		{name: "v4l2 device", arg: "/dev/video0", kind: Device, camera: -1},
		{name: "video file", arg: video, kind: Video, camera: -1},
		{name: "file URL", arg: "file://" + video, kind: Video, uri: video, camera: -1},
		{name: "rtsp with credentials", arg: "rtsp://u:p@h/x", kind: Stream, camera: -1},
		{name: "rtsps", arg: "RTSPS://cam.local:322/live", kind: Stream, camera: -1},
		{name: "http", arg: "http://example.com/cam.mjpg", kind: Stream, camera: -1},
		{name: "https", arg: "https://example.com/live.m3u8", kind: Stream, camera: -1},
		{name: "rtmp", arg: "rtmp://example.com/live/key", kind: Stream, camera: -1},
		{name: "jetson pipeline", arg: "nvarguscamerasrc ! nvvidconv ! appsink", kind: GStreamer, camera: -1},
		{name: "test pipeline", arg: "videotestsrc ! appsink", kind: GStreamer, camera: -1},
		{name: "pipeline by element", arg: "v4l2src device=/dev/video0", kind: GStreamer, camera: -1},
		{name: "filesrc element", arg: "filesrc location=a.mp4", kind: GStreamer, camera: -1},
		{name: "pipeline with URL", arg: "rtspsrc location=rtsp://u:p@h/x ! decodebin ! appsink", kind: GStreamer, camera: -1},
		{name: "image", arg: img, kind: Image, camera: -1},
		{name: "folder", arg: folder, kind: Folder, camera: -1},
		{name: "trimmed", arg: "  " + video + "\n", kind: Video, uri: video, camera: -1},
		{name: "missing path", arg: missing, wantErr: `source "` + missing + `": no such file or directory`},
		{name: "empty", arg: "", wantErr: "empty source"},
		{name: "blank", arg: "   ", wantErr: "empty source"},
		{name: "unsupported scheme", arg: "ftp://u:pw@h/x.mp4", wantErr: `unsupported URL scheme "ftp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := Parse(tt.arg)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error %q", tt.arg, spec, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error %q, want it to contain %q", tt.arg, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw@") {
					t.Fatalf("error leaks a credential: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.arg, err)
			}
			uri := tt.uri
			if uri == "" {
				uri = tt.arg
			}
			if spec.Kind != tt.kind || spec.Camera != tt.camera || spec.URI != uri {
				t.Fatalf("Parse(%q) = kind %v camera %d uri %q, want %v %d %q", tt.arg, spec.Kind, spec.Camera, spec.URI, tt.kind, tt.camera, uri)
			}
			if spec.MinBackoff != DefaultMinBackoff || spec.MaxBackoff != DefaultMaxBackoff {
				t.Fatalf("backoff defaults = %v, %v", spec.MinBackoff, spec.MaxBackoff)
			}
		})
	}

	t.Run("missing path is ErrNotExist", func(t *testing.T) {
		_, err := Parse(missing)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("errors.Is(%v, fs.ErrNotExist) = false", err)
		}
	})
}

func TestCameraSpec(t *testing.T) {
	s := CameraSpec(2)
	if s.Kind != Camera || s.Camera != 2 || s.URI != "2" || s.MinBackoff != DefaultMinBackoff || s.MaxBackoff != DefaultMaxBackoff {
		t.Fatalf("CameraSpec(2) = %+v", s)
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		k    Kind
		name string
		live bool
	}{
		{Unknown, "unknown", false},
		{Camera, "camera", true},
		{Device, "device", true},
		{Video, "video", false},
		{Stream, "stream", true},
		{GStreamer, "gstreamer", true},
		{Image, "image", false},
		{Folder, "folder", false},
		{Kind(42), "Kind(42)", false},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.name {
			t.Errorf("Kind(%d).String() = %q, want %q", int(tt.k), got, tt.name)
		}
		if got := tt.k.Live(); got != tt.live {
			t.Errorf("%v.Live() = %v, want %v", tt.k, got, tt.live)
		}
	}
}

func TestIsImageFile(t *testing.T) {
	for _, n := range []string{"a.jpg", "a.JPEG", "b.png", "c.Bmp", "d.webp", "e.tif", "f.TIFF"} {
		if !IsImageFile(n) {
			t.Errorf("IsImageFile(%q) = false", n)
		}
	}
	for _, n := range []string{"a.txt", "b.mp4", "jpg", "c.jpg.bak", ""} {
		if IsImageFile(n) {
			t.Errorf("IsImageFile(%q) = true", n)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"rtsp://user:pass@host/x", "rtsp://***@host/x"},
		{"rtsp://user:pass@192.168.1.10:554/Streaming/Channels/101", "rtsp://***@192.168.1.10:554/Streaming/Channels/101"},
		{"rtsp://admin@host/x", "rtsp://***@host/x"},
		{"RTSPS://u:p@h:322/live", "RTSPS://***@h:322/live"},
		{"rtsp://host/x", "rtsp://host/x"},
		{"http://u:p%40ss@h/cam.mjpg", "http://***@h/cam.mjpg"},
		{"rtsp://user:p@ss@host/x", "rtsp://***@host/x"},
		{"rtsp://user:pa/ss@host/x", "rtsp://***@host/x"},
		{"http://h/live.m3u8?token=abc123&quality=hd", "http://h/live.m3u8?token=***&quality=hd"},
		{"http://h/x?user=bob&password=hunter2", "http://h/x?user=bob&password=***"},
		{"http://h/x?PWD=1&passwd=2&key=3&auth=4&secret=5", "http://h/x?PWD=***&passwd=***&key=***&auth=***&secret=***"},
		{"https://h/x?api_key=k&access_token=t&keyframe=1", "https://h/x?api_key=***&access_token=***&keyframe=1"},
		{"rtsp://u:p@h/x?token=t", "rtsp://***@h/x?token=***"},
		{"rtspsrc location=rtsp://u:p@h/x latency=0 ! decodebin ! videoconvert ! appsink",
			"rtspsrc location=rtsp://***@h/x latency=0 ! decodebin ! videoconvert ! appsink"},
		{`rtspsrc location="rtsp://u:p@h/x?token=t" ! decodebin ! appsink`,
			`rtspsrc location="rtsp://***@h/x?token=***" ! decodebin ! appsink`},
		{"rtspsrc location=rtsp://h/x user-id=admin user-pw=hunter2 ! decodebin ! appsink",
			"rtspsrc location=rtsp://h/x user-id=admin user-pw=*** ! decodebin ! appsink"},
		{"souphttpsrc location=http://h/x proxy-pw=pw ! jpegdec ! appsink",
			"souphttpsrc location=http://h/x proxy-pw=*** ! jpegdec ! appsink"},
		{"admin:hunter2@10.0.0.5:554/stream", "***@10.0.0.5:554/stream"},
		{"/data/videos/cam1.mp4", "/data/videos/cam1.mp4"},
		{"videotestsrc ! appsink", "videotestsrc ! appsink"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestOpenErrorRedacted: opening an unreachable stream fails with an error
// (and logs) naming the source without its password.
func TestOpenErrorRedacted(t *testing.T) {
	const uri = "rtsp://user:secret@127.0.0.1:1/x?token=tok3n"
	spec, err := Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	log, logs := testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	src, err := Open(ctx, spec, log)
	if err == nil {
		closeOK(t, src)
		t.Fatal("Open of a closed port succeeded")
	}
	msg := err.Error()
	if strings.Contains(msg, "secret") || strings.Contains(msg, "tok3n") {
		t.Fatalf("error leaks a credential: %q", msg)
	}
	if !strings.Contains(msg, "rtsp://***@127.0.0.1:1/x?token=***") {
		t.Fatalf("error %q does not name the redacted source", msg)
	}
	if l := logs.String(); strings.Contains(l, "secret") || strings.Contains(l, "tok3n") {
		t.Fatalf("logs leak a credential: %s", l)
	}
}

// TestStreamRetriesGiveUp: with Reconnect and MaxRetries 2, a stream that
// never opens is retried twice with backoff, then Open fails.
func TestStreamRetriesGiveUp(t *testing.T) {
	spec, err := Parse("rtsp://user:secret@127.0.0.1:1/x")
	if err != nil {
		t.Fatal(err)
	}
	spec.Reconnect = true
	spec.MaxRetries = 2
	spec.MinBackoff = 50 * time.Millisecond
	spec.MaxBackoff = 80 * time.Millisecond
	log, logs := testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	src, err := Open(ctx, spec, log)
	elapsed := time.Since(start)
	if err == nil {
		closeOK(t, src)
		t.Fatal("Open of a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "gave up after 2 reconnect attempts") {
		t.Fatalf("error %q does not say it gave up after 2 attempts", err)
	}
	// delays: 50ms*[0.8,1.2] then min(100ms*[0.8,1.2], 80ms)
	if min := 40*time.Millisecond + 64*time.Millisecond; elapsed < min {
		t.Fatalf("gave up after %v, want at least %v of backoff", elapsed, min)
	}
	if elapsed > 10*time.Second {
		t.Fatalf("took %v to give up", elapsed)
	}
	l := logs.String()
	if strings.Count(l, "reconnect failed") != 2 {
		t.Fatalf("want 2 failed reconnects logged, got:\n%s", l)
	}
	if strings.Contains(err.Error()+l, "secret") {
		t.Fatalf("credential leaked:\n%v\n%s", err, l)
	}
}

// TestStreamRetryCancelled: an unlimited reconnect loop stops when ctx is done.
func TestStreamRetryCancelled(t *testing.T) {
	spec, err := Parse("rtsp://127.0.0.1:1/x")
	if err != nil {
		t.Fatal(err)
	}
	spec.Reconnect = true
	spec.MinBackoff = 10 * time.Second
	log, _ := testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	src, err := Open(ctx, spec, log)
	if err == nil {
		closeOK(t, src)
		t.Fatal("Open succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		rand     func() float64
	}{
		{"defaults random", 0, 0, nil},
		{"low jitter", 100 * time.Millisecond, 2 * time.Second, func() float64 { return 0 }},
		{"high jitter", 100 * time.Millisecond, 2 * time.Second, func() float64 { return 0.999999 }},
		{"mid jitter", 10 * time.Millisecond, 35 * time.Millisecond, func() float64 { return 0.5 }},
		{"max below min", time.Second, time.Millisecond, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBackoff(tt.min, tt.max)
			lo, hi := tt.min, tt.max
			if lo == 0 {
				lo = DefaultMinBackoff
			}
			if hi == 0 {
				hi = DefaultMaxBackoff
			}
			if hi < lo {
				hi = lo
			}
			if b.min != lo || b.max != hi {
				t.Fatalf("bounds = %v..%v, want %v..%v", b.min, b.max, lo, hi)
			}
			if tt.rand != nil {
				b.rand = tt.rand
			}
			for round := 0; round < 2; round++ {
				base := lo
				for i := 0; i < 40; i++ {
					d := b.Next()
					low := time.Duration(float64(base) * 0.8)
					high := time.Duration(float64(base) * 1.2)
					if high > hi {
						high = hi
					}
					if d < low || d > high {
						t.Fatalf("round %d step %d: delay %v outside [%v, %v]", round, i, d, low, high)
					}
					if d > hi {
						t.Fatalf("delay %v above max %v", d, hi)
					}
					base = min(base*2, hi)
				}
				b.Reset()
			}
		})
	}
}

func TestVideo(t *testing.T) {
	path := vtest(t)
	spec, err := Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Kind != Video {
		t.Fatalf("kind = %v, want video", spec.Kind)
	}
	src, err := Open(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, src)
	if w, h := src.Size(); w != vtestW || h != vtestH {
		t.Fatalf("Size() before reading = %dx%d, want %dx%d", w, h, vtestW, vtestH)
	}
	if src.Live() || src.Kind() != Video || src.Name() != path {
		t.Fatalf("Live %v Kind %v Name %q", src.Live(), src.Kind(), src.Name())
	}
	m := gocv.NewMat()
	defer m.Close()
	var prev Frame
	for i := 0; i < 30; i++ {
		f, err := src.Read(context.Background(), &m)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if m.Cols() != vtestW || m.Rows() != vtestH || m.Channels() != 3 {
			t.Fatalf("frame %d: %dx%dx%d", i, m.Cols(), m.Rows(), m.Channels())
		}
		if f.Index != int64(i) || f.Name != "" || f.Time.IsZero() {
			t.Fatalf("frame %d: %+v", i, f)
		}
		if i > 0 && f.PTS <= prev.PTS {
			t.Fatalf("frame %d: PTS %v not after %v", i, f.PTS, prev.PTS)
		}
		prev = f
	}
	// 10 fps: frame 29 is at 2.9s.
	if want := 2900 * time.Millisecond; prev.PTS < want-time.Millisecond || prev.PTS > want+time.Millisecond {
		t.Fatalf("PTS of frame 29 = %v, want %v", prev.PTS, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src.Read(ctx, &m); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with cancelled ctx: %v", err)
	}
	if _, err := src.Read(context.Background(), nil); err == nil {
		t.Fatal("Read into nil Mat succeeded")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := src.Read(context.Background(), &m); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
}

// TestVideoReadTimeoutResume: with ReadTimeout a video file is read through
// the goroutine path; when its capture is dropped (as after a stall) the
// next Read reopens it and resumes at the same frame.
func TestVideoReadTimeoutResume(t *testing.T) {
	spec, err := Parse(vtest(t))
	if err != nil {
		t.Fatal(err)
	}
	spec.ReadTimeout = 10 * time.Second
	src, err := Open(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, src)
	m := gocv.NewMat()
	defer m.Close()
	read := func(i int) Frame {
		t.Helper()
		f, err := src.Read(context.Background(), &m)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Index != int64(i) || m.Cols() != vtestW || m.Rows() != vtestH {
			t.Fatalf("frame %d: index %d, %dx%d", i, f.Index, m.Cols(), m.Rows())
		}
		return f
	}
	for i := 0; i < 10; i++ {
		read(i)
	}
	src.(*captureSource).closeCur()
	if f := read(10); f.PTS != time.Second {
		t.Fatalf("PTS after reopen = %v, want 1s (frame 10 at 10 fps)", f.PTS)
	}
}

func TestVideoEOF(t *testing.T) {
	src, err := Open(context.Background(), Spec{URI: vtest(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, src)
	m := gocv.NewMat()
	defer m.Close()
	n := 0
	for {
		_, err := src.Read(context.Background(), &m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d frames: %v", n, err)
		}
		n++
	}
	if n != vtestFrames {
		t.Fatalf("read %d frames, want %d", n, vtestFrames)
	}
	if _, err := src.Read(context.Background(), &m); err != io.EOF {
		t.Fatalf("Read after EOF = %v, want io.EOF", err)
	}
}

func TestVideoLoop(t *testing.T) {
	spec, err := Parse(vtest(t))
	if err != nil {
		t.Fatal(err)
	}
	spec.Loop = true
	src, err := Open(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, src)
	// Start near the end to reach it quickly.
	src.(*captureSource).cur.vc.Set(gocv.VideoCapturePosFrames, vtestFrames-5)
	m := gocv.NewMat()
	defer m.Close()
	wraps := 0
	var prev Frame
	for i := 0; i < 15; i++ {
		f, err := src.Read(context.Background(), &m)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Index != int64(i) || m.Cols() != vtestW || m.Rows() != vtestH {
			t.Fatalf("frame %d: index %d size %dx%d", i, f.Index, m.Cols(), m.Rows())
		}
		if i > 0 && f.PTS < prev.PTS {
			wraps++
			if f.PTS != 0 {
				t.Fatalf("first frame after the loop has PTS %v, want 0", f.PTS)
			}
		}
		prev = f
	}
	if wraps != 1 {
		t.Fatalf("video wrapped %d times in 15 frames from 5 before the end, want 1", wraps)
	}
}

func TestOpenMissingAndBadVideo(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "gone.avi")
	bad := filepath.Join(dir, "bad.mp4")
	writeGarbage(t, bad, 4096)
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"missing video", Spec{URI: missing, Kind: Video}, `source "` + missing + `": no such file or directory`},
		{"missing by URI", Spec{URI: missing}, `source "` + missing + `": no such file or directory`},
		{"corrupt video", Spec{URI: bad, Kind: Video}, `source "` + bad + `": cannot open video`},
		{"missing device", Spec{URI: "/dev/video99", Kind: Device}, `source "/dev/video99": no such file or directory`},
		{"negative camera", Spec{Kind: Camera, Camera: -2}, "invalid camera index"},
		{"empty", Spec{}, "empty source"},
		{"negative retries", Spec{URI: "rtsp://h/x", Kind: Stream, MaxRetries: -1}, "negative MaxRetries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := Open(context.Background(), tt.spec, nil)
			if err == nil {
				closeOK(t, src)
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFolder(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.jpg")
	b := filepath.Join(dir, "b.jpg")
	c := filepath.Join(dir, "c.JPG")
	writeImage(t, a, 64, 48, color.RGBA{R: 255, A: 255})
	writeGarbage(t, b, 2048)
	writeImage(t, c, 80, 60, color.RGBA{G: 255, A: 255})
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := Parse(dir)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Kind != Folder {
		t.Fatalf("kind = %v, want folder", spec.Kind)
	}
	log, logs := testLogger()
	src, err := Open(context.Background(), spec, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, src)
	m := gocv.NewMat()
	defer m.Close()
	want := []struct {
		name string
		w, h int
		bgr  [3]uint8
	}{{a, 64, 48, [3]uint8{0, 0, 255}}, {c, 80, 60, [3]uint8{0, 255, 0}}}
	for i, w := range want {
		f, err := src.Read(context.Background(), &m)
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		if f.Index != int64(i) || f.Name != w.name || m.Cols() != w.w || m.Rows() != w.h {
			t.Fatalf("image %d: %+v %dx%d, want %s %dx%d", i, f, m.Cols(), m.Rows(), w.name, w.w, w.h)
		}
		px := m.GetVecbAt(w.h/2, w.w/2)
		for ch := 0; ch < 3; ch++ {
			if d := int(px[ch]) - int(w.bgr[ch]); d < -8 || d > 8 {
				t.Fatalf("image %d: centre pixel %v, want about %v", i, px, w.bgr)
			}
		}
	}
	if _, err := src.Read(context.Background(), &m); err != io.EOF {
		t.Fatalf("after the images: %v, want io.EOF", err)
	}
	if src.Skipped() != 1 {
		t.Fatalf("Skipped() = %d, want 1", src.Skipped())
	}
	if w, h := src.Size(); w != 80 || h != 60 {
		t.Fatalf("Size() = %dx%d", w, h)
	}
	if !strings.Contains(logs.String(), "skipping unreadable image") || !strings.Contains(logs.String(), "b.jpg") {
		t.Fatalf("skip not logged:\n%s", logs)
	}
}

func TestFolderErrors(t *testing.T) {
	corrupt := t.TempDir()
	writeGarbage(t, filepath.Join(corrupt, "x.jpg"), 1000)
	writeGarbage(t, filepath.Join(corrupt, "y.png"), 1000)
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "readme.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("all corrupt", func(t *testing.T) {
		log, _ := testLogger()
		src, err := Open(context.Background(), Spec{URI: corrupt}, log)
		if err != nil {
			t.Fatal(err)
		}
		defer closeOK(t, src)
		m := gocv.NewMat()
		defer m.Close()
		_, err = src.Read(context.Background(), &m)
		if err == nil || err == io.EOF || !strings.Contains(err.Error(), "none of the 2 images could be read") {
			t.Fatalf("Read = %v, want an error that no image could be read", err)
		}
		if src.Skipped() != 2 {
			t.Fatalf("Skipped() = %d, want 2", src.Skipped())
		}
	})
	t.Run("no images", func(t *testing.T) {
		_, err := Open(context.Background(), Spec{URI: empty}, nil)
		if err == nil || !strings.Contains(err.Error(), `source "`+empty+`": no images`) {
			t.Fatalf("Open = %v, want an error naming the folder", err)
		}
	})
}

func TestImage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "one.png")
	writeImage(t, p, 32, 24, color.RGBA{B: 200, A: 255})
	bad := filepath.Join(dir, "bad.jpeg")
	writeGarbage(t, bad, 500)

	for _, loop := range []bool{false, true} {
		spec, err := Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		if spec.Kind != Image {
			t.Fatalf("kind = %v", spec.Kind)
		}
		spec.Loop = loop
		src, err := Open(context.Background(), spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if w, h := src.Size(); w != 32 || h != 24 {
			t.Fatalf("Size() = %dx%d", w, h)
		}
		m := gocv.NewMat()
		n := 0
		for ; n < 3; n++ {
			f, err := src.Read(context.Background(), &m)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Name != p || f.Index != int64(n) || m.Cols() != 32 || m.Rows() != 24 {
				t.Fatalf("frame %+v %dx%d", f, m.Cols(), m.Rows())
			}
		}
		m.Close()
		closeOK(t, src)
		if want := map[bool]int{false: 1, true: 3}[loop]; n != want {
			t.Fatalf("loop=%v: %d frames, want %d", loop, n, want)
		}
	}

	if _, err := Open(context.Background(), Spec{URI: bad}, nil); err == nil || !strings.Contains(err.Error(), "cannot decode image") {
		t.Fatalf("Open of a corrupt image = %v", err)
	}
}

// TestStreamReconnect serves a short clip over HTTP (a real FFmpeg stream):
// at its end the source reconnects and goes on; when the server goes away,
// it gives up after MaxRetries attempts.
func TestStreamReconnect(t *testing.T) {
	const clipFrames = 12
	clip := makeClip(t, t.TempDir(), clipFrames)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, clip)
	}))
	defer ts.Close()

	spec, err := Parse(ts.URL + "/clip.avi?token=s3cr3t")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Kind != Stream {
		t.Fatalf("kind = %v", spec.Kind)
	}
	spec.Reconnect = true
	spec.MaxRetries = 2
	spec.MinBackoff = 10 * time.Millisecond
	spec.MaxBackoff = 40 * time.Millisecond
	log, logs := testLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := Open(ctx, spec, log)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, src)
	if !src.Live() || strings.Contains(src.Name(), "s3cr3t") || !strings.Contains(src.Name(), "token=***") {
		t.Fatalf("Live %v Name %q", src.Live(), src.Name())
	}
	m := gocv.NewMat()
	defer m.Close()
	// Past the end of the first connection: one reconnect.
	for i := 0; i < clipFrames+4; i++ {
		f, err := src.Read(ctx, &m)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Index != int64(i) || m.Cols() != vtestW || m.Rows() != vtestH {
			t.Fatalf("frame %d: index %d, %dx%d", i, f.Index, m.Cols(), m.Rows())
		}
	}
	if got := src.Reconnects(); got != 1 {
		t.Fatalf("Reconnects() = %d after one end of stream, want 1", got)
	}
	// The server goes away: the rest of the buffered stream, then two failed
	// attempts, then an error.
	ts.CloseClientConnections()
	ts.Close()
	var rerr error
	for i := 0; i < 10*clipFrames && rerr == nil; i++ {
		_, rerr = src.Read(ctx, &m)
	}
	if rerr == nil || !strings.Contains(rerr.Error(), "gave up after 2 reconnect attempts") {
		t.Fatalf("Read = %v, want it to give up after 2 attempts", rerr)
	}
	if got := src.Reconnects(); got != 3 {
		t.Fatalf("Reconnects() = %d, want 3 (1 good, 2 failed)", got)
	}
	if _, err := src.Read(ctx, &m); err == nil || err.Error() != rerr.Error() {
		t.Fatalf("Read after giving up = %v, want the same error", err)
	}
	if l := logs.String() + rerr.Error(); strings.Contains(l, "s3cr3t") {
		t.Fatalf("credential leaked:\n%s", l)
	}
}

// TestStreamStall: a server that stops sending mid-stream makes Read fail
// with ErrStalled after ReadTimeout instead of blocking.
func TestStreamStall(t *testing.T) {
	clip := makeClip(t, t.TempDir(), 40)
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/x-msvideo")
		w.WriteHeader(http.StatusOK)
		if _, err := w.Write(data[:len(data)*2/3]); err != nil {
			return // the client is gone
		}
		w.(http.Flusher).Flush()
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	defer func() {
		close(stop)
		ts.CloseClientConnections()
		ts.Close()
	}()
	spec, err := Parse(ts.URL + "/stall.avi")
	if err != nil {
		t.Fatal(err)
	}
	spec.ReadTimeout = 700 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := Open(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeOK(t, src)
	m := gocv.NewMat()
	defer m.Close()
	n := 0
	for ; n < 100; n++ {
		start := time.Now()
		_, err = src.Read(ctx, &m)
		if err != nil {
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("stalled read returned after %v", d)
			}
			break
		}
	}
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("after %d frames: %v, want ErrStalled", n, err)
	}
	if n == 0 {
		t.Fatal("no frame before the stall")
	}
}

// TestGStreamerEnded: a finite test pipeline is a live source that ends;
// without Reconnect, Read reports ErrStreamEnded.
func TestGStreamerEnded(t *testing.T) {
	spec, err := Parse("videotestsrc num-buffers=5 ! video/x-raw,width=320,height=240 ! videoconvert ! appsink")
	if err != nil {
		t.Fatal(err)
	}
	if spec.Kind != GStreamer {
		t.Fatalf("kind = %v", spec.Kind)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := Open(ctx, spec, nil)
	if err != nil {
		t.Skipf("GStreamer videotestsrc unavailable here: %v", err)
	}
	defer closeOK(t, src)
	m := gocv.NewMat()
	defer m.Close()
	for i := 0; i < 5; i++ {
		if _, err := src.Read(ctx, &m); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if m.Cols() != 320 || m.Rows() != 240 {
			t.Fatalf("frame %d: %dx%d", i, m.Cols(), m.Rows())
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := src.Read(ctx, &m); !errors.Is(err, ErrStreamEnded) {
			t.Fatalf("read %d after the end: %v, want ErrStreamEnded", i, err)
		}
	}
}

func TestCameraMissing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, err := Open(ctx, CameraSpec(63), nil)
	if err == nil {
		closeOK(t, src)
		t.Skip("a camera 63 exists here")
	}
	if !strings.Contains(err.Error(), `source "camera 63": cannot open camera`) {
		t.Fatalf("error %q", err)
	}
}

// closeOK closes c and fails the test if that fails.
func closeOK(tb testing.TB, c io.Closer) {
	tb.Helper()
	if err := c.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
}
