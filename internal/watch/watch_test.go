package watch

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

const debounce = 100 * time.Millisecond

// start runs WatchWith on path and returns a channel of calls.
func start(t *testing.T, path string) (<-chan struct{}, *atomic.Int32) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 100)
	var n atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- WatchWith(ctx, path, Options{Debounce: debounce, OnError: func(err error) { t.Errorf("watch: %v", err) }},
			func() { n.Add(1); calls <- struct{}{} })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != context.Canceled {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	time.Sleep(50 * time.Millisecond) // let the watch be set up
	return calls, &n
}

func wantCall(t *testing.T, calls <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-calls:
	case <-time.After(5 * time.Second):
		t.Fatalf("no call after %s", what)
	}
}

func wantNoCall(t *testing.T, calls <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-calls:
		t.Fatalf("a call after %s", what)
	case <-time.After(4 * debounce):
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchPlainFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "yedge.yaml")
	write(t, p, "a: 1\n")
	calls, n := start(t, p)

	write(t, p, "a: 2\n")
	wantCall(t, calls, "an in-place write")

	// Several writes in a burst: one call.
	for i := range 5 {
		write(t, p, "a: "+string(rune('3'+i))+"\n")
		time.Sleep(10 * time.Millisecond)
	}
	wantCall(t, calls, "a burst of writes")
	wantNoCall(t, calls, "the burst settled")

	// An editor's atomic save: write a temp file, rename it over.
	tmp := filepath.Join(dir, ".yedge.yaml.swp")
	write(t, tmp, "a: 9\n")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	wantCall(t, calls, "a rename over the file")

	// Same content, other files in the folder: no call.
	write(t, p, "a: 9\n")
	write(t, filepath.Join(dir, "other.txt"), "x")
	wantNoCall(t, calls, "a write of the same content and of another file")
	if got := n.Load(); got != 3 {
		t.Errorf("%d calls, want 3", got)
	}
}

// configMap lays out a ConfigMap volume as the kubelet does: the file is a
// symlink to ..data/<file>, ..data a symlink to a timestamped directory,
// and an update writes a new directory, points ..data_tmp at it and renames
// ..data_tmp over ..data, then removes the old directory.
type configMap struct {
	t   *testing.T
	dir string
	gen int
	cur string
}

func (c *configMap) update(content string) {
	c.t.Helper()
	c.gen++
	ts := filepath.Join(c.dir, "..2026_12_03_07_00_0"+string(rune('0'+c.gen)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		c.t.Fatal(err)
	}
	write(c.t, filepath.Join(ts, "yedge.yaml"), content)
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
	if c.cur != "" {
		if err := os.RemoveAll(c.cur); err != nil {
			c.t.Fatal(err)
		}
	}
	c.cur = ts
}

func TestWatchConfigMapSymlinkSwap(t *testing.T) {
	cm := &configMap{t: t, dir: t.TempDir()}
	cm.update("streams: [a]\n")
	p := filepath.Join(cm.dir, "yedge.yaml")
	if err := os.Symlink(filepath.Join("..data", "yedge.yaml"), p); err != nil {
		t.Fatal(err)
	}
	calls, n := start(t, p)

	cm.update("streams: [a, b]\n")
	wantCall(t, calls, "a ConfigMap update (..data swap)")
	wantNoCall(t, calls, "the update settled")

	// The kubelet re-syncs with unchanged data: a new directory, same
	// content, no call.
	cm.update("streams: [a, b]\n")
	wantNoCall(t, calls, "a re-sync with the same content")

	cm.update("streams: [b]\n")
	wantCall(t, calls, "a second ConfigMap update")
	if got := n.Load(); got != 2 {
		t.Errorf("%d calls, want 2", got)
	}
}

func TestWatchMissingDir(t *testing.T) {
	err := Watch(context.Background(), filepath.Join(t.TempDir(), "nope", "yedge.yaml"), func() {})
	if err == nil {
		t.Fatal("Watch on a missing directory: no error")
	}
}

// TestWatchSymlinkToOtherFolder: the watched path is a symlink to a file
// in another folder (a config kept elsewhere, linked from /etc); editing
// the target in place is seen.
func TestWatchSymlinkToOtherFolder(t *testing.T) {
	real, etc := t.TempDir(), t.TempDir()
	target := filepath.Join(real, "config.yaml")
	write(t, target, "a: 1\n")
	link := filepath.Join(etc, "yedge.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	calls, _ := start(t, link)
	write(t, target, "a: 2\n")
	wantCall(t, calls, "editing the symlink's target in its own folder")
}

// TestWatchWaitsForWriteToSettle: a file saved in place in two parts,
// with a pause longer than the debounce between them (an editor writing
// a large file, a slow copy), is one change, seen once complete, not a
// change to the half-written file and then another.
func TestWatchWaitsForWriteToSettle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "yedge.yaml")
	write(t, path, "a: 1\nb: 1\n")
	calls, n := start(t, path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("a: 2\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(debounce * 3 / 2)
	if _, err := f.WriteString("b: 2\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	wantCall(t, calls, "the file written in two parts")
	wantNoCall(t, calls, "the complete file, seen once")
	if got := n.Load(); got != 1 {
		t.Errorf("%d calls, want 1", got)
	}
}
