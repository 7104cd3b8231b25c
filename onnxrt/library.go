// Package onnxrt owns the onnxruntime shared library and inference sessions
// for yedge: it finds and loads libonnxruntime, chooses execution providers
// (TensorRT, CUDA, CPU), discovers model inputs and outputs, and runs models on
// preallocated tensors. It is the only package that calls into onnxruntime and
// knows nothing about cameras, YOLO or metrics.
package onnxrt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvLibrary is the environment variable that names the onnxruntime shared
// library when no --ort-lib flag is given.
const EnvLibrary = "YEDGE_ORT_LIB"

// SetupDir is the folder, relative to the project root, into which `make
// setup` extracts the official onnxruntime build.
const SetupDir = "third_party/onnxruntime"

// LibraryNotFoundError lists every place that was searched for the
// onnxruntime library.
type LibraryNotFoundError struct {
	Tried []string
}

func (e *LibraryNotFoundError) Error() string {
	return "onnxruntime library not found; tried: " + strings.Join(e.Tried, ", ") +
		" (give its path, set " + EnvLibrary + ", or run `make setup`)"
}

// OriginExplicit is the origin of a library path given by the caller (a
// command's flag).
const OriginExplicit = "explicit"

// LibraryCandidate is one place the onnxruntime library may be, with the
// source of that place (flag, env, config, setup, system).
type LibraryCandidate struct {
	Path   string
	Origin string
}

// BundledDir is where an installed yedge keeps the onnxruntime library it
// ships, relative to the folder of the executable: /usr/bin/yedge loads
// /usr/lib/yedge/libonnxruntime.so.1 (the .deb, the OCI image), and
// PREFIX/bin/yedge loads PREFIX/lib/yedge (deploy/install.sh).
const BundledDir = "../lib/yedge"

// Candidates returns the places searched for the onnxruntime library, in
// order: the explicit flag, the YEDGE_ORT_LIB environment variable, the
// config file value, the project's setup folder (next to the executable or a
// parent of the working directory), the library installed beside the
// executable (BundledDir), then standard system places.
func Candidates(flagPath, configPath string) []LibraryCandidate {
	var c []LibraryCandidate
	if flagPath != "" {
		c = append(c, LibraryCandidate{flagPath, OriginExplicit})
	}
	if env := os.Getenv(EnvLibrary); env != "" {
		c = append(c, LibraryCandidate{env, EnvLibrary})
	}
	if configPath != "" {
		c = append(c, LibraryCandidate{configPath, "config"})
	}
	sub := filepath.Join(SetupDir, platformDir(), "libonnxruntime.so.1")
	seen := map[string]bool{}
	addSetup := func(dir string) {
		for d := dir; ; d = filepath.Dir(d) {
			p := filepath.Join(d, sub)
			if !seen[p] {
				seen[p] = true
				c = append(c, LibraryCandidate{p, "setup"})
			}
			if filepath.Dir(d) == d {
				return
			}
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return
			}
		}
	}
	if exe, err := os.Executable(); err == nil {
		addSetup(filepath.Dir(exe))
	}
	if wd, err := os.Getwd(); err == nil {
		addSetup(wd)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		c = append(c, LibraryCandidate{filepath.Join(filepath.Dir(exe), BundledDir, "libonnxruntime.so.1"), "bundled"})
	}
	for _, dir := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if dir != "" {
			c = append(c, LibraryCandidate{filepath.Join(dir, "libonnxruntime.so"), "LD_LIBRARY_PATH"})
		}
	}
	for _, p := range []string{
		"/usr/local/lib/libonnxruntime.so",
		"/usr/lib/libonnxruntime.so",
		"/usr/lib/" + multiarch() + "/libonnxruntime.so",
		"/opt/onnxruntime/lib/libonnxruntime.so",
		"/usr/local/lib/libonnxruntime.so.1",
		"/usr/lib/" + multiarch() + "/libonnxruntime.so.1",
		// The .deb's library, for when the executable's own path is unknown
		// (no /proc, as in a bare chroot).
		"/usr/lib/yedge/libonnxruntime.so.1",
	} {
		c = append(c, LibraryCandidate{p, "system"})
	}
	return c
}

func platformDir() string {
	switch goruntime.GOARCH {
	case "amd64":
		return "linux-x64"
	default:
		return "linux-" + goruntime.GOARCH
	}
}

func multiarch() string {
	if goruntime.GOARCH == "arm64" {
		return "aarch64-linux-gnu"
	}
	return "x86_64-linux-gnu"
}

// FindLibrary returns the first existing candidate from Candidates. An
// explicit flag, environment or config path that does not exist is an error
// rather than a reason to fall through: the user asked for that file.
func FindLibrary(flagPath, configPath string) (LibraryCandidate, error) {
	var tried []string
	for _, c := range Candidates(flagPath, configPath) {
		st, err := os.Stat(c.Path)
		if err == nil && !st.IsDir() {
			return c, nil
		}
		if c.Origin != "setup" && c.Origin != "bundled" && c.Origin != "system" && c.Origin != "LD_LIBRARY_PATH" {
			return c, fmt.Errorf("onnxruntime library %q (from %s): %w", c.Path, c.Origin, errOrNotFile(err))
		}
		tried = append(tried, c.Path)
	}
	return LibraryCandidate{}, &LibraryNotFoundError{Tried: tried}
}

func errOrNotFile(err error) error {
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("no such file")
		}
		return err
	}
	return errors.New("is a directory")
}

var (
	initMu   sync.Mutex
	initPath string
)

// Init loads the onnxruntime shared library found by FindLibrary and creates
// the process-wide onnxruntime environment. It is safe to call more than
// once; later calls return the path loaded first.
func Init(flagPath, configPath string) (LibraryCandidate, error) {
	initMu.Lock()
	defer initMu.Unlock()
	if ort.IsInitialized() {
		return LibraryCandidate{Path: initPath, Origin: "loaded"}, nil
	}
	c, err := FindLibrary(flagPath, configPath)
	if err != nil {
		return c, err
	}
	ort.SetSharedLibraryPath(c.Path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return c, fmt.Errorf("loading onnxruntime library %q (from %s): %w", c.Path, c.Origin, err)
	}
	initPath = c.Path
	return c, nil
}

// Version returns the version string of the loaded onnxruntime library.
func Version() string {
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}
