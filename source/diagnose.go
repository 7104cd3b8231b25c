package source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Causes of a source that does not open, named in its error: errors.Is
// tells them apart.
var (
	// ErrRefused: the host answered, but nothing listens on the port.
	ErrRefused = errors.New("connection refused")
	// ErrTimedOut: the host did not answer in time (down, filtered, or a
	// wrong address), or answered and then sent no video.
	ErrTimedOut = errors.New("timed out")
	// ErrNotFound: no such host, or no such file.
	ErrNotFound = errors.New("not found")
	// ErrNotVideo: the source was reached, but it is not a video the
	// backend can decode (or the server refused the request: a wrong path,
	// missing credentials).
	ErrNotVideo = errors.New("not a video")
)

// noSuchFile is the error of a missing file source: it reads as ENOENT
// does and is both ENOENT and ErrNotFound.
type noSuchFile struct{}

func (noSuchFile) Error() string { return syscall.ENOENT.Error() }

func (noSuchFile) Is(target error) bool {
	return target == ErrNotFound || target == syscall.ENOENT || target == fs.ErrNotExist
}

// defaultPorts are the ports of the URL schemes FFmpeg opens over TCP.
var defaultPorts = map[string]string{
	"rtsp": "554", "rtsps": "322", "http": "80", "https": "443",
	"rtmp": "1935", "rtmps": "443", "tcp": "",
}

// diagnoseTimeout bounds the connection probe of diagnose.
const diagnoseTimeout = 3 * time.Second

// diagnose finds out why a network stream did not open: it connects to
// the URL's host and port itself and returns ErrNotFound (no such host),
// ErrRefused or ErrTimedOut, with the address, or nil when the connection
// is accepted (the server is there; what it sends is the problem). A URL
// it cannot probe (no host, a scheme not over TCP) gives nil too.
func diagnose(ctx context.Context, uri string) error {
	u, err := url.Parse(uri)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	port, ok := defaultPorts[strings.ToLower(u.Scheme)]
	if !ok {
		return nil
	}
	if p := u.Port(); p != "" {
		port = p
	}
	if port == "" {
		return nil
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	ctx, cancel := context.WithTimeout(ctx, diagnoseTimeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		return nil
	}
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && (dnsErr.IsNotFound || !dnsErr.IsTimeout):
		return fmt.Errorf("host %q: %w", u.Hostname(), ErrNotFound)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: %w", addr, ErrRefused)
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Errorf("connecting to %s: %w after %v", addr, ErrTimedOut, diagnoseTimeout)
	}
	return fmt.Errorf("connecting to %s: %w", addr, redactNetError(err))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// redactNetError drops the text of err that may hold the URL: the
// operation's address is already in the caller's message.
func redactNetError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// checkVideoFile refuses, before any backend sees it, what cannot be a
// video file: a missing path (ErrNotFound), something other than a regular
// file (a FIFO or a device would block the open until a writer comes, and
// neither shutdown nor a reload could interrupt it), or an empty file
// (ErrNotVideo).
func checkVideoFile(name, path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("source %q: %w", name, noSuchFile{})
	case err != nil:
		return fmt.Errorf("source %q: %w", name, redactPathError(err))
	case fi.IsDir():
		return fmt.Errorf("source %q: is a directory, not a video file", name)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("source %q: not a regular file (%s): give a video file, or a device as /dev/videoN", name, fileType(fi.Mode()))
	case fi.Size() == 0:
		return fmt.Errorf("source %q: empty file: %w", name, ErrNotVideo)
	}
	return nil
}

// fileType names the type of a file that is not a regular one.
func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeIrregular != 0:
		return "an irregular file"
	}
	return m.Type().String()
}

// captureOptionsEnv is the environment variable from which OpenCV's FFmpeg
// backend reads the options of every open (avformat_open_input's
// dictionary, "key;value|key;value").
const captureOptionsEnv = "OPENCV_FFMPEG_CAPTURE_OPTIONS"

// userSetCaptureOptions: the user set OPENCV_FFMPEG_CAPTURE_OPTIONS
// before the program started; it is then left as it is.
var _, userSetCaptureOptions = os.LookupEnv(captureOptionsEnv)

// ffmpegOpenMu serialises the opens of network streams with the options
// each sets in the environment just before. OpenCV 4.6 holds one lock of
// its own over every FFmpeg open in the process (files included), so
// these opens were serial already; what this adds is that each one is
// bounded by its own source's timeout, so that a server that stalls holds
// that lock, and every other stream's open behind it, only that long.
var ffmpegOpenMu sync.Mutex

// ffmpegOptions are the FFmpeg options of a network stream's open: RTSP
// over TCP first (OpenCV's own default), and socket timeouts (rw_timeout
// for any protocol, timeout for HTTP's and RTSP's sockets), in
// microseconds, so that FFmpeg itself gives up on a server that accepts
// the connection and then sends nothing, instead of after OpenCV's 30 s.
func ffmpegOptions(timeout time.Duration) string {
	us := timeout.Microseconds()
	return fmt.Sprintf("rtsp_flags;prefer_tcp|rw_timeout;%d|timeout;%d", us, us)
}

// withFFmpegOptions runs open with the capture options of a network
// stream bounded by timeout in the environment, unless the user set their
// own.
func withFFmpegOptions(timeout time.Duration, open func()) {
	ffmpegOpenMu.Lock()
	defer ffmpegOpenMu.Unlock()
	if !userSetCaptureOptions {
		_ = os.Setenv(captureOptionsEnv, ffmpegOptions(timeout))
	}
	open()
}
