// Package watch calls a function when a file's content changes, for
// reloading a configuration without a signal (yedge serve --watch-config).
//
// It watches the file's directory, not the file: editors replace a file
// by renaming a new one over it, and a Kubernetes ConfigMap volume swaps
// the "..data" symlink to a new timestamped directory
// (yedge.yaml -> ..data/yedge.yaml), so the file's own inode never changes.
// A symlink's target folder is watched too. Events are debounced, and the
// function runs only when the content (SHA-256 of the file, symlinks
// followed) differs from the last one seen and has stayed the same for one
// more quiet period (a file saved in place is not taken half-written):
// a burst of events for one update is one call, and an event that leaves
// the content alone (a touch, the ConfigMap's cleanup of the old directory)
// is none.
package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/yedge/yedge/internal/fsx"
)

// DefaultDebounce is the quiet time Watch waits after the last event.
const DefaultDebounce = 500 * time.Millisecond

// Options tune WatchWith.
type Options struct {
	// Debounce is the quiet time after the last event before the file is
	// read again (0: DefaultDebounce).
	Debounce time.Duration
	// OnError receives errors of the watcher and of reading the file (a
	// missing file mid-update is not one); nil drops them.
	OnError func(error)
}

// Watch calls onChange, from one goroutine, each time the content of path
// changes, until ctx is done. It returns an error if the watch cannot be
// set up (the directory does not exist), else ctx's error.
func Watch(ctx context.Context, path string, onChange func()) error {
	return WatchWith(ctx, path, Options{}, onChange)
}

// WatchWith is Watch with options.
func WatchWith(ctx context.Context, path string, o Options, onChange func()) error {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	report := func(err error) {
		if o.OnError != nil && err != nil {
			o.OnError(err)
		}
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return err
	}
	// A symlink to a file in another folder (a config kept in a
	// repository, linked from /etc) changes there: watch the target's
	// folder too, and follow the link when it moves.
	target := ""
	follow := func() {
		t, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return
		}
		if d := filepath.Dir(t); d != filepath.Dir(abs) && d != target {
			if target != "" {
				_ = w.Remove(target)
			}
			if err := w.Add(d); err != nil {
				report(err)
				return
			}
			target = d
		}
	}
	follow()
	last, _ := digest(abs) // missing now: the first content seen is a change
	// candidate is new content seen once: it is taken only when a second
	// look, a quiet Debounce later, finds it unchanged, so that a file
	// being written in place (truncated, then written in parts) is read
	// once it has stopped changing, not half-written.
	var candidate [sha256.Size]byte

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch: watcher closed")
			}
			_ = ev // any change in the directory may change what path resolves to
			timer.Reset(o.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch: watcher closed")
			}
			report(err)
		case <-timer.C:
			d, err := digest(abs)
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					report(err)
				}
				continue // gone mid-update: the next event brings it back
			}
			follow()
			if d == last {
				continue
			}
			if d != candidate {
				candidate = d
				timer.Reset(o.Debounce)
				continue
			}
			last = d
			onChange()
		}
	}
}

// digest returns the SHA-256 of the file at path, symlinks followed.
func digest(path string) ([sha256.Size]byte, error) {
	b, err := fsx.ReadFile(path, fsx.MaxConfigBytes)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}
