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

	"github.com/yedge/yedge/internal/fixtures"
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
