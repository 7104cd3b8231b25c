package plan

import (
	"log/slog"
	"runtime"

	"golang.org/x/sys/unix"
)

// backgroundNice is the nice value of background preparation.
const backgroundNice = 10

// lowPriority runs f on an OS thread of its own at nice 10. Linux nice
// values are per thread: the goroutine is locked to its thread, which is
// lowered and, since f returns without unlocking, exits with the goroutine
// instead of going back to the scheduler's pool. Threads created from it
// inherit the value (onnxruntime's calibration session is created there);
// Go goroutines that f starts (histogramming) run on ordinary threads.
func lowPriority(log *slog.Logger, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), backgroundNice); err != nil {
			log.Debug("background priority not lowered", "err", err)
		}
		f()
	}()
	<-done
}
