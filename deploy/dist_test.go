package deploy

// Helpers of the install tests (install_test.go, arm64_test.go): the
// release files of make dist, Debian 12 roots, and commands run inside a
// root, natively (amd64) or through QEMU (arm64).

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvDist names the folder of make dist's files; make install-test sets it.
const EnvDist = "YEDGE_DIST"

// distDir returns the folder of the release files, or skips the test when
// EnvDist is unset: the install tests run from make install-test (part of
// make test), after make dist, not in the plain go test run.
func distDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv(EnvDist)
	if d == "" {
		t.Skipf("%s unset: run make install-test (make dist first)", EnvDist)
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// distFile returns the one file of dist matching pattern (a glob).
func distFile(t *testing.T, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(distDir(t), pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("%s: want exactly one %s, have %v (%v)", distDir(t), pattern, m, err)
	}
	return m[0]
}

// debFile returns the .deb of arch.
func debFile(t *testing.T, arch string) string {
	t.Helper()
	return distFile(t, "yedge_*_"+arch+".deb")
}

// debField returns one control field of a .deb.
func debField(t *testing.T, deb, field string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-f", deb, field).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -f %s %s: %v", deb, field, err)
	}
	return strings.TrimSpace(string(out))
}

// needTool returns the path of a program, or fails (CI=true) or skips.
func needTool(t *testing.T, name string) string {
	t.Helper()
	return tool(t, name)
}

// needRoot skips (or fails under CI=true) unless the test runs as root:
// roots are made and entered with mmdebstrap and unshare.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the install tests need root (CI=true)")
		}
		t.Skip("the install tests need root")
	}
}

// mirrors are the Debian 12 sources of the roots the tests make.
var mirrors = []string{
	"deb http://deb.debian.org/debian bookworm main",
	"deb http://deb.debian.org/debian bookworm-updates main",
	"deb http://deb.debian.org/debian-security bookworm-security main",
}

// sysRoot is a Debian 12 root file system of one architecture in a folder.
type sysRoot struct {
	dir  string
	arch string
	// qemu is the qemu-aarch64-static to run arm64 programs with -L, when
	// binfmt_misc cannot run them in the root; empty otherwise.
	qemu string
	// env is the environment the daemon gets in this root: the image
	// config's Env for an image root; nil for a root with the package
	// installed, where daemonEnv reads it from the unit.
	env []string
}

// daemonEnv is the environment yedge runs with in the root, as its
// service manager gives it: the image config's Env in an image root;
// under systemd, what the installed unit's StateDirectory=,
// CacheDirectory=, LogsDirectory=, ConfigurationDirectory= and
// Environment= set, with the unit's user's HOME. Commands the tests run
// as that user see what the daemon sees.
func (r *sysRoot) daemonEnv(t *testing.T) []string {
	t.Helper()
	if r.env != nil {
		return r.env
	}
	unit, err := os.ReadFile(r.path("/lib/systemd/system/yedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8"}
	base := map[string]string{"StateDirectory": "/var/lib", "CacheDirectory": "/var/cache", "LogsDirectory": "/var/log", "ConfigurationDirectory": "/etc"}
	for line := range strings.Lines(string(unit)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch {
		case base[k] != "":
			// systemd.exec(5): $STATE_DIRECTORY etc., the absolute paths.
			name := strings.ToUpper(strings.TrimSuffix(k, "Directory")) + "_DIRECTORY"
			if k == "ConfigurationDirectory" {
				name = "CONFIGURATION_DIRECTORY"
			}
			env = append(env, name+"="+filepath.Join(base[k], strings.Fields(v)[0]))
		case k == "Environment":
			env = append(env, strings.Fields(v)...)
		case k == "User":
			if home := r.home(t, v); home != "" {
				env = append(env, "HOME="+home)
			}
		}
	}
	return env
}

// home is user's home folder in the root's /etc/passwd, or "".
func (r *sysRoot) home(t *testing.T, user string) string {
	t.Helper()
	b, err := os.ReadFile(r.path("/etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) == 7 && (f[0] == user || f[2] == user) {
			return f[5]
		}
	}
	return ""
}

// emulation reports how arm64 programs run here: "binfmt" when the kernel
// runs them through qemu-aarch64 registered with the F flag (so inside a
// chroot too), else "qemu -L" (qemu-aarch64-static, with the root as the
// prefix of absolute paths). YEDGE_ARM64_EMULATION=qemu forces the second.
func emulation(t *testing.T) string {
	t.Helper()
	if os.Getenv("YEDGE_ARM64_EMULATION") != "qemu" {
		b, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64")
		if err == nil && strings.Contains(string(b), "enabled") && strings.Contains(string(b), "flags: ") &&
			strings.Contains(strings.SplitN(string(b[strings.Index(string(b), "flags: "):]), "\n", 2)[0], "F") {
			return "binfmt"
		}
	}
	return "qemu -L"
}

// newRoot wraps dir, a root of arch, choosing how to run its programs.
func newRoot(t *testing.T, dir, arch string) *sysRoot {
	t.Helper()
	r := &sysRoot{dir: dir, arch: arch}
	if arch == "arm64" {
		mode := emulation(t)
		t.Logf("arm64 emulation: %s", mode)
		if mode != "binfmt" {
			r.qemu = needTool(t, "qemu-aarch64-static")
		}
	}
	return r
}

// path returns the host path of a path inside the root.
func (r *sysRoot) path(p string) string { return filepath.Join(r.dir, p) }

// command returns a command that runs argv inside the root: in its own
// mount and PID namespaces with /proc mounted, through unshare --root; with
// qemu -L, the program runs under QEMU with the root as its prefix.
// user, when not empty, is the user (of the root) to run as.
func (r *sysRoot) command(ctx context.Context, user string, argv ...string) *exec.Cmd {
	if r.qemu != "" {
		// qemu -L: absolute paths are looked up in the root first, so the
		// program and its libraries come from it; /proc is the host's.
		args := append([]string{"-L", r.dir, r.path(argv[0])}, argv[1:]...)
		return exec.CommandContext(ctx, r.qemu, args...)
	}
	args := []string{"--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--root=" + r.dir, "--wd=/"}
	if user != "" {
		args = append(args, "setpriv", "--reuid="+user, "--regid="+user, "--init-groups", "--")
	}
	return exec.CommandContext(ctx, "unshare", append(args, argv...)...)
}

// run runs argv in the root and returns its combined output; a failure
// fails the test.
func (r *sysRoot) run(t *testing.T, timeout time.Duration, argv ...string) string {
	t.Helper()
	out, err := r.try(timeout, argv...)
	if err != nil {
		t.Fatalf("%s (in the %s root): %v\n%s", strings.Join(argv, " "), r.arch, err, out)
	}
	return out
}

// try runs argv in the root as root and returns its output and error.
func (r *sysRoot) try(timeout time.Duration, argv ...string) (string, error) {
	return r.tryEnv(timeout, "", []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}, argv...)
}

// tryEnv runs argv in the root as user with the environment env and
// returns its output and error.
func (r *sysRoot) tryEnv(timeout time.Duration, user string, env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := r.command(ctx, user, argv...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timeout %v)", ctx.Err(), timeout)
	}
	return string(out), err
}

// copyIn copies a host file into the root at dest, mode 0644.
func (r *sysRoot) copyIn(t *testing.T, src, dest string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := r.path(dest)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// mmdebstrap makes a Debian 12 root of arch in dir (which must not exist
// or be empty), with extra mmdebstrap arguments (e.g. --include of a .deb).
func mmdebstrap(t *testing.T, dir, arch, variant string, extra ...string) {
	t.Helper()
	needRoot(t)
	bin := needTool(t, "mmdebstrap")
	args := []string{"--quiet", "--arch=" + arch, "--variant=" + variant,
		"--aptopt=APT::Install-Recommends \"false\"",
		"--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount"}
	args = append(args, extra...)
	args = append(args, "bookworm", dir)
	args = append(args, mirrors...)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = nil
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 60))
	}
	t.Logf("mmdebstrap %s root (%s): %v", arch, variant, time.Since(start).Round(time.Second))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// sha256File returns the hex SHA-256 of a file.
func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ociIndex is the part of an OCI index or manifest the tests read.
type ociIndex struct {
	MediaType string `json:"mediaType"`
	Manifests []struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
		Platform    *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"platform"`
	} `json:"manifests"`
	Config struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"layers"`
}

// ociLayout unpacks make dist's OCI archive into a folder (once per test
// binary) and returns the folder.
func ociLayout(t *testing.T) string {
	t.Helper()
	// Found (or skipped) outside the Once: a skip inside it would leave
	// the Once done with no layout for the next test.
	archive := distFile(t, "yedge_*_oci.tar")
	layoutOnce.Do(func() {
		dir, err := os.MkdirTemp("", "yedge-oci-")
		if err != nil {
			layoutErr = err
			return
		}
		if out, err := exec.Command("tar", "-xf", archive, "-C", dir).CombinedOutput(); err != nil {
			layoutErr = fmt.Errorf("tar -xf %s: %v\n%s", archive, err, out)
			return
		}
		layoutPath = dir
	})
	if layoutErr != nil {
		t.Fatal(layoutErr)
	}
	return layoutPath
}

// readBlob decodes the JSON blob of a digest in an OCI layout.
func readBlob(t *testing.T, layout, digest string, v any) {
	t.Helper()
	b, err := os.ReadFile(blobPath(layout, digest))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("blob %s: %v", digest, err)
	}
}

func blobPath(layout, digest string) string {
	alg, hexd, _ := strings.Cut(digest, ":")
	return filepath.Join(layout, "blobs", alg, hexd)
}

// imageManifest returns the manifest of arch in the layout's image index.
func imageManifest(t *testing.T, layout, arch string) ociIndex {
	t.Helper()
	var top, idx, m ociIndex
	readJSON(t, filepath.Join(layout, "index.json"), &top)
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json: %d descriptors, want 1 (the image index)", len(top.Manifests))
	}
	readBlob(t, layout, top.Manifests[0].Digest, &idx)
	for _, d := range idx.Manifests {
		if d.Platform != nil && d.Platform.Architecture == arch {
			readBlob(t, layout, d.Digest, &m)
			return m
		}
	}
	t.Fatalf("the image index has no %s manifest", arch)
	return m
}

func readJSON(t *testing.T, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// imageRoot unpacks the image's root file system of arch into a new
// folder and returns it as a root.
func imageRoot(t *testing.T, arch string) *sysRoot {
	t.Helper()
	needRoot(t)
	layout := ociLayout(t)
	m := imageManifest(t, layout, arch)
	if len(m.Layers) != 1 {
		t.Fatalf("%s image: %d layers, want 1", arch, len(m.Layers))
	}
	dir := t.TempDir()
	if err := untarGz(blobPath(layout, m.Layers[0].Digest), dir); err != nil {
		t.Fatalf("%s image layer: %v", arch, err)
	}
	r := newRoot(t, dir, arch)
	var cfg struct {
		Config struct {
			Env []string `json:"Env"`
		} `json:"config"`
	}
	readBlob(t, layout, m.Config.Digest, &cfg)
	r.env = cfg.Config.Env
	return r
}

// untarGz unpacks a gzipped tar (an image layer) with tar, keeping owners
// and modes.
func untarGz(p, dir string) error {
	// Check it is a gzipped tar first, for a clear error.
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	zr, err := gzip.NewReader(f)
	if err == nil {
		_, err = tar.NewReader(zr).Next()
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: not a gzipped tar: %w", p, err)
	}
	out, err := exec.Command("tar", "--numeric-owner", "-xzpf", p, "-C", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tar: %v\n%s", err, out)
	}
	return nil
}

var (
	layoutOnce sync.Once
	layoutPath string
	layoutErr  error
)

// freePort returns a loopback TCP port that is free now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
