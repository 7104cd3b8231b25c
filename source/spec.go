// Package source provides the frame sources of yedge: cameras, V4L2 devices,
// video files, network streams (RTSP, HTTP, RTMP), GStreamer pipelines,
// single images and folders of images, all decoded with gocv (OpenCV).
//
// A source is described by a [Spec], usually obtained from a command-line
// argument with [Parse] (or [CameraSpec] for --camera N), and opened with
// [Open]. Every [Source] decodes into a caller-owned gocv.Mat that is reused
// from frame to frame. Live sources (cameras, devices, streams, pipelines)
// can reconnect with exponential backoff when they fail or stall.
//
// Source names may carry credentials (rtsp://user:pass@host/...). This
// package never prints them: every name that reaches an error or a log line
// goes through [Redact] first.
package source

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind classifies a source.
type Kind int

// The kinds of source. The zero value, Unknown, makes [Open] classify
// Spec.URI with [Parse].
const (
	// Unknown is the zero Kind: not yet classified.
	Unknown Kind = iota
	// Camera is a local camera opened by index (--camera N).
	Camera
	// Device is a V4L2 device node such as /dev/video0.
	Device
	// Video is a video file.
	Video
	// Stream is a network stream URL (rtsp, rtsps, http, https, rtmp, ...).
	Stream
	// GStreamer is a GStreamer pipeline description; OpenCV reads its
	// appsink (" ! videoconvert ! appsink" is appended when it has none).
	GStreamer
	// Image is a single image file.
	Image
	// Folder is a directory of image files, read in name order.
	Folder
)

var kindNames = [...]string{
	Unknown:   "unknown",
	Camera:    "camera",
	Device:    "device",
	Video:     "video",
	Stream:    "stream",
	GStreamer: "gstreamer",
	Image:     "image",
	Folder:    "folder",
}

// String returns the lower-case name of the kind ("camera", "stream", ...).
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Live reports whether sources of this kind are live (cameras, devices,
// streams and pipelines) rather than finite files.
func (k Kind) Live() bool {
	switch k {
	case Camera, Device, Stream, GStreamer:
		return true
	}
	return false
}

// Default reconnect backoff bounds, applied by [Parse], [CameraSpec] and
// [Open] when Spec.MinBackoff or Spec.MaxBackoff is zero.
const (
	// DefaultMinBackoff is the first reconnect delay.
	DefaultMinBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff caps the reconnect delay.
	DefaultMaxBackoff = 30 * time.Second
	// DefaultLiveReadTimeout is the stall bound (Spec.ReadTimeout) that the
	// daemon gives live sources when none is configured.
	DefaultLiveReadTimeout = 10 * time.Second
)

// Spec describes a source to [Open].
type Spec struct {
	// URI is the source as the user gave it: a path, URL or pipeline.
	URI string
	// Camera is the camera index (>= 0) for Kind Camera, -1 otherwise.
	Camera int
	// Kind is the classification of URI (or Camera).
	Kind Kind
	// Reconnect makes live sources (Camera, Device, Stream, GStreamer)
	// reopen with backoff when opening or reading fails, instead of
	// returning an error. Finite sources ignore it.
	Reconnect bool
	// MinBackoff and MaxBackoff bound the reconnect delay, which starts at
	// MinBackoff and doubles (with +-20% jitter) up to MaxBackoff.
	// Zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetries is how many consecutive reconnect attempts are made before
	// giving up; the count starts again after a frame is read. 0 is unlimited.
	MaxRetries int
	// ReadTimeout, when positive, bounds each frame read: a read that takes
	// longer is a stall, reported as ErrStalled (or reconnected, for a live
	// source with Reconnect). For a live source it also bounds opening (to
	// at least 5s), so that a server that accepts the connection and then
	// sends nothing is a stall too. 0 waits as long as the backend does.
	ReadTimeout time.Duration
	// Loop restarts finite sources (video files, images, folders) at their
	// end instead of returning io.EOF; for demos and tests.
	Loop bool
	// Monitor, when set, receives the source's connection state (see
	// Monitor); nil: the source keeps its own.
	Monitor *Monitor
}

// CameraSpec returns the Spec of local camera number index (--camera N).
func CameraSpec(index int) Spec {
	return Spec{
		URI:        strconv.Itoa(index),
		Camera:     index,
		Kind:       Camera,
		MinBackoff: DefaultMinBackoff,
		MaxBackoff: DefaultMaxBackoff,
	}
}

// imageExts are the file extensions (lower case) read as images.
var imageExts = map[string]bool{
	".jpg": true, ".jpeg": true, ".png": true, ".bmp": true,
	".webp": true, ".tif": true, ".tiff": true,
}

// IsImageFile reports whether name has an image extension (jpg, jpeg, png,
// bmp, webp, tif, tiff; case-insensitive).
func IsImageFile(name string) bool {
	return imageExts[strings.ToLower(filepath.Ext(name))]
}

// streamSchemes are the URL schemes opened with the FFmpeg backend.
var streamSchemes = map[string]bool{
	"rtsp": true, "rtsps": true, "http": true, "https": true,
	"rtmp": true, "rtmps": true, "udp": true, "tcp": true, "srt": true,
}

// gstElements are GStreamer source elements that mark a pipeline when they
// start the argument, even without " ! ".
var gstElements = []string{
	"nvarguscamerasrc", "v4l2src", "videotestsrc", "filesrc", "rtspsrc",
	"uridecodebin", "urisourcebin", "souphttpsrc", "libcamerasrc", "udpsrc",
	"appsrc", "playbin", "decodebin",
}

var (
	schemeRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.\-]*)://`)
	digitsRE = regexp.MustCompile(`^[0-9]+$`)
)

// Parse classifies a source argument:
//   - a number N (with no file of that name), or "camera:N", is camera N;
//   - a string containing " ! ", or starting with a GStreamer source element
//     (nvarguscamerasrc, v4l2src, videotestsrc, filesrc, ...), is a pipeline;
//   - an rtsp, rtsps, http, https, rtmp (rtmps, udp, tcp, srt) URL is a stream;
//     file:// URLs are taken as paths;
//   - a path under /dev/ is a V4L2 device (it need not exist yet);
//   - any other path must exist: a directory is a folder of images, a file
//     with an image extension an image, and any other file a video.
//
// The returned Spec has Camera -1 (unless it is a camera), the default
// backoff bounds, and Reconnect, MaxRetries, ReadTimeout and Loop unset.
func Parse(arg string) (Spec, error) {
	uri := strings.TrimSpace(arg)
	if uri == "" {
		return Spec{}, errors.New("source: empty source")
	}
	spec := Spec{
		URI:        uri,
		Camera:     -1,
		MinBackoff: DefaultMinBackoff,
		MaxBackoff: DefaultMaxBackoff,
	}
	if rest, ok := strings.CutPrefix(uri, "camera:"); ok {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 || !digitsRE.MatchString(rest) {
			return Spec{}, fmt.Errorf("source %q: want camera:N with N a camera index (0, 1, ...)", Redact(uri))
		}
		return CameraSpec(n), nil
	}
	if strings.Contains(uri, " ! ") || strings.Contains(uri, "\t!") || hasGstPrefix(uri) {
		spec.Kind = GStreamer
		return spec, nil
	}
	path := uri
	if m := schemeRE.FindStringSubmatch(uri); m != nil {
		scheme := strings.ToLower(m[1])
		switch {
		case streamSchemes[scheme]:
			spec.Kind = Stream
			return spec, nil
		case scheme == "file":
			path = uri[len(m[0]):]
		default:
			return Spec{}, fmt.Errorf("source %q: unsupported URL scheme %q", Redact(uri), scheme)
		}
	}
	if strings.HasPrefix(path, "/dev/") {
		spec.Kind = Device
		return spec, nil
	}
	fi, err := os.Stat(path)
	if digitsRE.MatchString(path) && err != nil {
		n, convErr := strconv.Atoi(path)
		if convErr == nil {
			return CameraSpec(n), nil
		}
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Spec{}, fmt.Errorf("source %q: %w", Redact(uri), noSuchFile{})
	case err != nil:
		return Spec{}, fmt.Errorf("source %q: %w", Redact(uri), redactPathError(err))
	case fi.IsDir():
		spec.Kind = Folder
	case IsImageFile(path):
		spec.Kind = Image
	default:
		spec.Kind = Video
	}
	spec.URI = path
	return spec, nil
}

// LocalPath reports whether arg names a local file or folder to [Parse]
// (a plain path or a file:// URL, not a camera, device, URL or pipeline),
// without reading the file system, and returns that path. A bare number is
// not a local path: Parse takes it as a camera unless such a file exists,
// so callers that resolve relative paths leave it alone.
func LocalPath(arg string) (string, bool) {
	uri := strings.TrimSpace(arg)
	switch {
	case uri == "", strings.HasPrefix(uri, "camera:"), strings.HasPrefix(uri, "/dev/"),
		strings.Contains(uri, " ! "), strings.Contains(uri, "\t!"), hasGstPrefix(uri), digitsRE.MatchString(uri):
		return "", false
	}
	if m := schemeRE.FindStringSubmatch(uri); m != nil {
		if strings.ToLower(m[1]) != "file" || len(uri) == len(m[0]) {
			return "", false
		}
		return uri[len(m[0]):], true
	}
	return uri, true
}

// hasGstPrefix reports whether s starts with a known GStreamer source element.
func hasGstPrefix(s string) bool {
	first := s
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		first = s[:i]
	}
	for _, e := range gstElements {
		if first == e {
			return true
		}
	}
	return false
}

// redactPathError drops the path from an *os.PathError (the caller names the
// source itself, redacted) and keeps the cause.
func redactPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
