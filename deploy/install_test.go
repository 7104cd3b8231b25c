package deploy

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/yedge/yedge/internal/testkit/fixtures"
)

// TestDebPackages checks what each .deb holds: the files of the issue, the
// conffile, no recommends, and a Depends computed from the binaries: every
// library that yedge and libonnxruntime link, and nothing else (besides
// adduser, for the maintainer scripts).
func TestDebPackages(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			deb := debFile(t, arch)
			if got := debField(t, deb, "Architecture"); got != arch {
				t.Errorf("Architecture %q", got)
			}
			for _, f := range []string{"Recommends", "Suggests"} {
				if v := debField(t, deb, f); v != "" {
					t.Errorf("%s: %q, want none", f, v)
				}
			}
			dir := t.TempDir()
			if out, err := exec.Command("dpkg-deb", "-R", deb, dir).CombinedOutput(); err != nil {
				t.Fatalf("dpkg-deb -R: %v\n%s", err, out)
			}
			for _, f := range []string{
				"usr/bin/yedge", "usr/lib/yedge/libonnxruntime.so.1", "lib/systemd/system/yedge.service",
				"etc/yedge/yedge.yaml", "usr/share/doc/yedge/copyright", "usr/share/man/man1/yedge-serve.1.gz",
				"var/lib/yedge/models", "var/cache/yedge", "var/log/yedge",
			} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("missing /%s", f)
				}
			}
			conf, _ := os.ReadFile(filepath.Join(dir, "DEBIAN", "conffiles"))
			if !slices.Contains(strings.Fields(string(conf)), "/etc/yedge/yedge.yaml") {
				t.Errorf("conffiles %q lacks /etc/yedge/yedge.yaml", conf)
			}
			// The official library, unchanged, with its license.
			ort := map[string]string{"amd64": "linux-x64", "arm64": "linux-arm64"}[arch]
			if want := filepath.Join("..", "third_party", "onnxruntime", ort, "libonnxruntime.so.1"); fileExists(want) {
				if sha256File(t, want) != sha256File(t, filepath.Join(dir, "usr/lib/yedge/libonnxruntime.so.1")) {
					t.Error("libonnxruntime.so.1 differs from the official build")
				}
			}
			cp, _ := os.ReadFile(filepath.Join(dir, "usr/share/doc/yedge/copyright"))
			if !strings.Contains(string(cp), "Files: usr/lib/yedge/libonnxruntime.so.1") || !strings.Contains(string(cp), "Permission is hereby granted") {
				t.Error("copyright lacks onnxruntime's MIT license")
			}

			// Depends = the packages of the linked libraries (+ adduser).
			var want []string
			for _, bin := range []string{"usr/bin/yedge", "usr/lib/yedge/libonnxruntime.so.1"} {
				for _, so := range needed(t, filepath.Join(dir, bin)) {
					if p := sonamePackage(so); p != "" && !slices.Contains(want, p) {
						want = append(want, p)
					}
				}
			}
			var got []string
			for d := range strings.SplitSeq(debField(t, deb, "Depends"), ",") {
				name, _, _ := strings.Cut(strings.TrimSpace(d), " ")
				got = append(got, name)
			}
			want = append(want, "adduser")
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("Depends %q\nwant (from the binaries' NEEDED) %q", got, want)
			}
			if !strings.Contains(debField(t, deb, "Depends"), "libopencv-core406 (>= 4.6.0") {
				t.Errorf("Depends lacks a versioned libopencv-core406: %s", debField(t, deb, "Depends"))
			}
		})
	}
}

// needed returns the DT_NEEDED sonames of an ELF file.
func needed(t *testing.T, p string) []string {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	return libs
}

// sonamePackage maps a soname to its Debian 12 package, the way Debian
// names library packages; "" for the loader, which libc6 brings.
func sonamePackage(so string) string {
	switch {
	case strings.HasPrefix(so, "ld-linux"):
		return ""
	case slices.Contains([]string{"libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0"}, so):
		return "libc6"
	case so == "libgcc_s.so.1":
		return "libgcc-s1"
	case so == "libstdc++.so.6":
		return "libstdc++6"
	}
	if m := regexp.MustCompile(`^libopencv_(\w+)\.so\.(\d+)$`).FindStringSubmatch(so); m != nil {
		return "libopencv-" + m[1] + m[2]
	}
	return "unknown:" + so
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestLintian reads make dist's lintian report: both packages were checked,
// with no error and no warning (each fixed, or overridden in
// deploy/debian/yedge.lintian-overrides with its reason).
func TestLintian(t *testing.T) {
	report := distFile(t, "yedge_*_lintian.txt")
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if !regexp.MustCompile(`(?m)^== lintian \S+ on ` + regexp.QuoteMeta(filepath.Base(debFile(t, arch))) + `$`).Match(b) {
			t.Errorf("the lintian report does not cover %s", filepath.Base(debFile(t, arch)))
		}
	}
}

// TestInstallAmd64 installs the amd64 .deb with apt into a clean Debian 12
// root (mmdebstrap, no systemd running: the maintainer scripts must not
// fail there), checks the installed unit and config, runs the daemon from
// the installed files as the service user, upgrades the package (config,
// state and models stay) and purges it (they go).
func TestInstallAmd64(t *testing.T) {
	t.Parallel()
	needRoot(t)
	deb := debFile(t, "amd64")
	version := debField(t, deb, "Version")
	dir := t.TempDir()
	mmdebstrap(t, dir, "amd64", "apt", "--include="+deb)
	r := newRoot(t, dir, "amd64")

	if out := r.run(t, time.Minute, "dpkg-query", "-W", "-f=${Status} ${Version}", "yedge"); out != "install ok installed "+version {
		t.Fatalf("dpkg-query: %q, want installed %s", out, version)
	}
	// The service user, and the folders it owns.
	if out := r.run(t, time.Minute, "stat", "-c", "%U:%G %a %n", "/var/lib/yedge", "/var/lib/yedge/models", "/var/cache/yedge", "/var/log/yedge"); strings.Count(out, "yedge:yedge 750 ") != 4 {
		t.Errorf("folders:\n%s", out)
	}
	out := r.run(t, time.Minute, "/usr/bin/yedge", "version")
	if !strings.Contains(out, "onnxruntime 1.24.3 (/usr/lib/yedge/libonnxruntime.so.1, from bundled)") {
		t.Errorf("yedge version: onnxruntime not found beside the binary:\n%s", out)
	}
	if !strings.Contains(out, "yedge "+version+" ") {
		t.Errorf("yedge version: want %s:\n%s", version, out)
	}

	// The installed unit, checked by this machine's systemd: its
	// ExecStart= pointed at the installed binary in the root (the root has
	// no systemd of its own to check it with).
	sa := needTool(t, "systemd-analyze")
	unit, err := os.ReadFile(r.path("/lib/systemd/system/yedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("\nExecStart=/usr/bin/yedge serve --config /etc/yedge/yedge.yaml\n")) || !bytes.Contains(unit, []byte("\nUser=yedge\n")) {
		t.Errorf("installed unit:\n%s", unit)
	}
	checked := filepath.Join(t.TempDir(), "yedge.service")
	if err := os.WriteFile(checked, bytes.ReplaceAll(unit, []byte("ExecStart=/usr/bin/yedge "), []byte("ExecStart="+r.path("/usr/bin/yedge")+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", checked).CombinedOutput(); err != nil || strings.Contains(string(out), "yedge.service") {
		t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}

	// The models where the shipped config expects them, as a user puts
	// them; then the shipped config checks, and serves the shared video.
	cfg := serveShippedConfig(t, r, "yedge")
	cfgPath := r.path("/etc/yedge/yedge.yaml")

	// Upgrade to a newer build of the same package: the edited config, the
	// models and the state stay; the binary is the new one.
	r.copyIn(t, upgradedDeb(t, deb, version+"+1", false), "/tmp/upgrade.deb")
	r.run(t, 5*time.Minute, "dpkg", "-i", "/tmp/upgrade.deb")
	if out := r.run(t, time.Minute, "dpkg-query", "-W", "-f=${Version}", "yedge"); out != version+"+1" {
		t.Errorf("after the upgrade: version %q", out)
	}
	if b, _ := os.ReadFile(cfgPath); string(b) != cfg {
		t.Error("the upgrade changed /etc/yedge/yedge.yaml")
	}
	for _, f := range []string{"/var/lib/yedge/models/yolov5n.onnx", "/var/lib/yedge/models/yolov5n-int8.onnx", "/var/log/yedge/detections.jsonl"} {
		if !fileExists(r.path(f)) {
			t.Errorf("the upgrade lost %s", f)
		}
	}
	// A newer package whose shipped config changed too: dpkg keeps the
	// admin's file (non-interactive, --force-confold) and puts the new one
	// beside it as .dpkg-dist.
	r.copyIn(t, upgradedDeb(t, deb, version+"+2", true), "/tmp/upgrade2.deb")
	r.run(t, 5*time.Minute, "dpkg", "--force-confdef", "--force-confold", "-i", "/tmp/upgrade2.deb")
	if b, _ := os.ReadFile(cfgPath); string(b) != cfg {
		t.Error("the second upgrade changed /etc/yedge/yedge.yaml")
	}
	if !fileExists(cfgPath + ".dpkg-dist") {
		t.Error("no /etc/yedge/yedge.yaml.dpkg-dist beside the kept config")
	}

	// remove keeps config and state; purge removes them.
	r.run(t, 5*time.Minute, "dpkg", "--remove", "yedge")
	for _, f := range []string{"/etc/yedge/yedge.yaml", "/var/lib/yedge/models/yolov5n.onnx"} {
		if !fileExists(r.path(f)) {
			t.Errorf("remove deleted %s", f)
		}
	}
	if fileExists(r.path("/usr/bin/yedge")) {
		t.Error("remove left /usr/bin/yedge")
	}
	r.run(t, 5*time.Minute, "dpkg", "--purge", "yedge")
	for _, f := range []string{"/etc/yedge", "/var/lib/yedge", "/var/cache/yedge", "/var/log/yedge", "/usr/lib/yedge"} {
		if fileExists(r.path(f)) {
			t.Errorf("purge left %s", f)
		}
	}
}

// serveShippedConfig puts the models where the root's shipped
// /etc/yedge/yedge.yaml expects them, checks that config with yedge config
// check as user, points its stream at the shared video (and its listen at
// a free port), runs `yedge serve` as user until /readyz answers, stops it
// with SIGTERM, and returns the edited config.
func serveShippedConfig(t *testing.T, r *sysRoot, user string) string {
	t.Helper()
	r.copyIn(t, fixtures.Path(t, "models", "yolov5n.onnx"), "/var/lib/yedge/models/yolov5n.onnx")
	r.copyIn(t, fixtures.Path(t, "models", "yolov5n-qdq-torch.onnx"), "/var/lib/yedge/models/yolov5n-int8.onnx")
	if out, err := r.tryEnv(2*time.Minute, user, r.daemonEnv(t), "/usr/bin/yedge", "config", "check", "/etc/yedge/yedge.yaml"); err != nil || !strings.Contains(out, "ok (1 stream") {
		t.Fatalf("yedge config check /etc/yedge/yedge.yaml: %v\n%s", err, out)
	}
	r.copyIn(t, fixtures.Path(t, "media", "vtest.avi"), "/var/lib/yedge/media/vtest.avi")
	port := freePort(t)
	cfgPath := r.path("/etc/yedge/yedge.yaml")
	shipped, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(shipped), "    uri: camera:0\n", "    uri: /var/lib/yedge/media/vtest.avi\n", 1)
	cfg = strings.Replace(cfg, "listen: 127.0.0.1:9464\n", fmt.Sprintf("listen: 127.0.0.1:%d\n", port), 1)
	cfg = strings.Replace(cfg, "    loop: false\n", "    loop: true\n", 1)
	cfg = strings.Replace(cfg, "  threads: 0\n", "  threads: 1\n", 1)
	if cfg == string(shipped) || strings.Count(cfg, "vtest.avi") != 1 {
		t.Fatal("the shipped config no longer has the lines this test edits")
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	status := serveInRoot(t, r, port, user, "/usr/bin/yedge", "serve", "--config=/etc/yedge/yedge.yaml")
	if b, err := os.ReadFile(r.path("/var/log/yedge/detections.jsonl")); err != nil || !bytes.Contains(b, []byte(`"name":"person"`)) {
		t.Errorf("the daemon wrote no detections to /var/log/yedge/detections.jsonl: %v", err)
	}
	// The model store is where the DaemonSet and systemd keep state, and
	// the user's models beside it are still there after it opened.
	var st struct {
		Lifecycle struct {
			Store *struct {
				Dir   string `json:"dir"`
				Error string `json:"error"`
			} `json:"store"`
		} `json:"lifecycle"`
	}
	if err := json.Unmarshal(status, &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, status)
	}
	if s := st.Lifecycle.Store; s == nil || s.Dir != "/var/lib/yedge" || s.Error != "" {
		t.Errorf("/status lifecycle.store = %+v, want the store in /var/lib/yedge, working", s)
	}
	for _, m := range []string{"yolov5n.onnx", "yolov5n-int8.onnx"} {
		if _, err := os.Stat(r.path("/var/lib/yedge/models/" + m)); err != nil {
			t.Errorf("after serving: %v", err)
		}
	}
	return cfg
}

// TestImageRootServes runs the amd64 image's root as the image does: its
// entrypoint and config, as UID 65532, with the models and video put in
// the folders the DaemonSet mounts.
func TestImageRootServes(t *testing.T) {
	t.Parallel()
	r := imageRoot(t, "amd64")
	serveShippedConfig(t, r, "65532")
}

// upgradedDeb returns a copy of deb with another version, and with a
// changed /etc/yedge/yedge.yaml when changeConf: a newer package of the
// same files.
func upgradedDeb(t *testing.T, deb, version string, changeConf bool) string {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if out, err := exec.Command("dpkg-deb", "-R", deb, tree).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -R: %v\n%s", err, out)
	}
	ctl := filepath.Join(tree, "DEBIAN", "control")
	b, err := os.ReadFile(ctl)
	if err != nil {
		t.Fatal(err)
	}
	b = regexp.MustCompile(`(?m)^Version: .*$`).ReplaceAll(b, []byte("Version: "+version))
	if err := os.WriteFile(ctl, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if changeConf {
		conf := filepath.Join(tree, "etc", "yedge", "yedge.yaml")
		f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, "# a line added by a newer package")
		f.Close()
	}
	out := filepath.Join(dir, "yedge.deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", tree, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v\n%s", err, b)
	}
	return out
}

// serveInRoot runs `yedge serve` in the root as user, with the
// environment its service manager gives it, until it serves /readyz on
// port; then it reads /status, stops the daemon with SIGTERM, checks that
// it exits cleanly (status 0) within its shutdown time, and returns what
// /status said.
func serveInRoot(t *testing.T, r *sysRoot, port int, user string, argv ...string) []byte {
	t.Helper()
	cmd := r.command(t.Context(), user, argv...)
	cmd.Env = r.daemonEnv(t)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	deadline := time.Now().Add(3 * time.Minute)
	ready := false
	for !ready && time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("yedge serve exited before it was ready: %v\n%s", err, tail(log.String(), 40))
		case <-time.After(500 * time.Millisecond):
		}
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
	}
	if !ready {
		_ = cmd.Process.Kill()
		t.Logf("yedge serve killed: %v", <-done)
		t.Fatalf("no 200 from %s in 3 minutes:\n%s", url, tail(log.String(), 40))
	}
	// Let a few frames through, then stop it as systemd does.
	time.Sleep(3 * time.Second)
	status := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/status", port))
	// unshare --kill-child forwards nothing: signal the daemon itself, the
	// child of unshare (or QEMU's process).
	pid := cmd.Process.Pid
	if r.qemu == "" {
		if child := childPid(t, pid); child > 0 {
			pid = child
		}
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("yedge serve after SIGTERM: %v\n%s", err, tail(log.String(), 40))
		}
		t.Logf("stopped in %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("yedge serve still running 30s after SIGTERM:\n%s", tail(log.String(), 40))
	}
	return status
}

// httpGet returns the body of a 200 answer to a GET of url.
func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", url, resp.Status, err, b)
	}
	return b
}

// childPid returns the pid of the yedge process under pid (unshare, then
// setpriv, exec yedge in its place), or 0.
func childPid(t *testing.T, pid int) int {
	t.Helper()
	for range 50 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				var c int
				if _, err := fmt.Sscan(f[0], &c); err == nil {
					return c
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0
}
