package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

// TestFIFOSourceRefused: a FIFO given as the source of detect or of
// bench --pipeline is refused at once, naming it, instead of blocking
// (deaf to Ctrl-C) until a writer opens it.
func TestFIFOSourceRefused(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	fifo := filepath.Join(t.TempDir(), "cam.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"detect", "--model", model, "--source", fifo, "--max-frames", "1"},
		{"bench", "--pipeline", "--model", "null", "--source", fifo, "--frames", "1"},
	} {
		r := yedgeDeadline(t, 60*time.Second, args...)
		if r.code == exitOK || !strings.Contains(r.stderr, "not a regular file (a FIFO)") {
			t.Errorf("%s: exit %d, want a refusal naming the FIFO\n%s", args[0], r.code, r.stderr)
		}
	}
}

// TestSIGTERMWithHungSource: detect on a camera that answers and then
// sends nothing stops on SIGTERM at once, with the signal's exit, while
// it is still opening the source.
func TestSIGTERMWithHungSource(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace; boundary=frame")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "--frame\r\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer func() { close(release); _ = srv.Close() }()

	cmd := exec.Command(binPath, "detect", "--model", model, "--source", "http://"+ln.Addr().String()+"/video.mjpg")
	cmd.Env = append(os.Environ(), "YEDGE_ORT_LIB="+filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(3 * time.Second) // the model is loaded; the source is opening
	t0 := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Logf("stopped %v after SIGTERM (%v)", time.Since(t0).Round(time.Millisecond), err)
		if took := time.Since(t0); took > 5*time.Second {
			t.Errorf("detect took %v to stop on SIGTERM while opening a hung source", took)
		}
		if c := cmd.ProcessState.ExitCode(); c != exitInterrupted {
			t.Errorf("exit %d after SIGTERM, want %d (interrupted)\n%s", c, exitInterrupted, stderr.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("detect ignored SIGTERM for 60s while opening a hung source\n%s", stderr.String())
	}
}

// yedgeDeadline runs yedge as yedge does, killing it after d (a hang is
// a failure, not a stuck test).
func yedgeDeadline(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(os.Environ(), "YEDGE_ORT_LIB="+filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"))
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("yedge %v: still running after %v (killed)\n%s", args, d, se.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, so.String(), se.String()}
}

// TestUnboundedReadsRefused: every file the CLI reads whole is bounded:
// /dev/zero, /dev/urandom and FIFOs given as a model, names file,
// calibration cache or output end at once with a one-line error naming
// the file (no "out of memory" crash, no hang), and a names file of 100k
// lines, or one that does not match the model's classes, is refused.
func TestUnboundedReadsRefused(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	video := fixtures.Path(t, "media", "vtest.avi")
	calib := fixtures.Path(t, "datasets", "coco-calib128", "images")
	dir := t.TempDir()
	fifo := filepath.Join(dir, "x.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.names")
	if err := os.WriteFile(huge, []byte(strings.Repeat("x\n", 100000)), 0o644); err != nil {
		t.Fatal(err)
	}
	three := filepath.Join(dir, "three.names")
	if err := os.WriteFile(three, []byte("person\ncar\ndog\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	detect := func(extra ...string) []string {
		return append([]string{"detect", "--model", model, "--source", video, "--max-frames", "1", "--out", filepath.Join(dir, "d.jsonl")}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"inspect /dev/urandom", []string{"inspect", "/dev/urandom"}, "/dev/urandom: not a regular file (a character device)"},
		{"inspect FIFO", []string{"inspect", fifo}, "not a regular file (a FIFO)"},
		{"model /dev/zero", []string{"detect", "--model", "/dev/zero", "--source", video, "--max-frames", "1"}, "/dev/zero"},
		{"names /dev/zero", detect("--names", "/dev/zero"), "names file: /dev/zero: not a regular file"},
		{"names FIFO", detect("--names", fifo), "names file: " + fifo + ": not a regular file (a FIFO)"},
		{"names 100k lines", detect("--names", huge), "more than 10000 names"},
		{"names count mismatch", detect("--names", three), "has 3 names, the model has 80 classes"},
		{"out FIFO", []string{"detect", "--model", model, "--source", video, "--max-frames", "1", "--out", fifo}, "not a regular file (a FIFO)"},
		{"calib cache /dev/zero", []string{"quantize", "--model", model, "--calib", calib, "--calib-cache", "/dev/zero", "--out", filepath.Join(dir, "q.onnx")},
			"calibration cache: /dev/zero: not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := yedgeDeadline(t, 120*time.Second, tc.args...)
			last := strings.TrimSpace(r.stderr)
			if i := strings.LastIndexByte(last, '\n'); i >= 0 {
				last = last[i+1:]
			}
			if r.code == exitOK || !strings.HasPrefix(last, "yedge: ") || !strings.Contains(last, tc.want) || strings.Contains(r.stderr, "fatal error") {
				t.Errorf("exit %d, want a failure whose last line says %q\n%s", r.code, tc.want, r.stderr)
			}
			if strings.Contains(tc.want, "not a regular file") && r.code != exitUsage {
				t.Errorf("exit %d for a refused input file, want %d", r.code, exitUsage)
			}
		})
	}
}

// TestSignalsStopLongCommands: SIGINT and SIGTERM stop the long commands
// in the middle of their work, promptly, with exit 130 (interrupted
// before a result), and leave no half-written output.
func TestSignalsStopLongCommands(t *testing.T) {
	model := fixtures.Model(t, "yolov5n.onnx")
	calib := fixtures.Path(t, "datasets", "coco-calib128", "images")
	data := fixtures.Path(t, "datasets", "coco-val128")
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
		args []string
		out  string // must not exist afterwards
	}{
		{"quantize calibrating", syscall.SIGINT, []string{"quantize", "--model", model, "--calib", calib, "--target", "cpu", "--threads", "1",
			"--out", filepath.Join(dir, "q.onnx")}, filepath.Join(dir, "q.onnx")},
		{"eval", syscall.SIGTERM, []string{"eval", "--model", model, "--data", data, "--threads", "1", "--json"}, ""},
		{"bench", syscall.SIGTERM, []string{"bench", "--model", model, "--runs", "100000", "--threads", "1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(binPath, tc.args...)
			cmd.Env = append(os.Environ(), "YEDGE_ORT_LIB="+filepath.Join(fixtures.Root(), "third_party", "onnxruntime", "linux-x64", "libonnxruntime.so.1"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			time.Sleep(4 * time.Second) // the model is loaded; the work has begun
			t0 := time.Now()
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatalf("the command ended before the signal: %v\n%s", err, stderr.String())
			}
			select {
			case err := <-done:
				t.Logf("stopped %v after %v (%v)", time.Since(t0).Round(time.Millisecond), tc.sig, err)
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("still running 30s after %v\n%s", tc.sig, stderr.String())
			}
			if took := time.Since(t0); took > 10*time.Second {
				t.Errorf("took %v to stop", took)
			}
			if c := cmd.ProcessState.ExitCode(); c != exitInterrupted {
				t.Errorf("exit %d, want %d (interrupted)\n%s", c, exitInterrupted, stderr.String())
			}
			if tc.out != "" {
				if _, err := os.Stat(tc.out); err == nil {
					t.Errorf("%s written although interrupted", tc.out)
				}
			}
		})
	}
}
