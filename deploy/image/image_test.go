package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The tests read the image of make dist: $YEDGE_DIST/yedge_*_oci.tar
// (make install-test sets YEDGE_DIST). Without it they skip, or fail under
// CI=true, where make test builds it.

func distArchive(t *testing.T) string {
	t.Helper()
	d := os.Getenv("YEDGE_DIST")
	if d == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("YEDGE_DIST unset (CI=true): run make install-test")
		}
		t.Skip("YEDGE_DIST unset: run make install-test (make dist first)")
	}
	m, _ := filepath.Glob(filepath.Join(d, "yedge_*_oci.tar"))
	if len(m) != 1 {
		t.Fatalf("%s: want one yedge_*_oci.tar, have %v", d, m)
	}
	return m[0]
}

// unpack unpacks the archive into a new folder and returns the layout.
func unpack(t *testing.T) (string, layout.Path) {
	t.Helper()
	archive := distArchive(t)
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xf", archive, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xf %s: %v\n%s", archive, err, out)
	}
	return archive, layout.Path(dir)
}

// packageVersion is the first version of deploy/debian/changelog: the tag.
func packageVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../debian/changelog")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	_, rest, _ := strings.Cut(first, "(")
	v, _, _ := strings.Cut(rest, ")")
	return v
}

// TestImage checks the layout: one index named with the reference that the
// Kubernetes overlays use, a manifest per architecture, and in each image
// the config (non-root user, entrypoint yedge serve, the metrics port, the
// OCI labels) and its one layer (the installed package, the folders the
// DaemonSet mounts owned by the user, no docs, every library it links).
func TestImage(t *testing.T) {
	_, lp := unpack(t)
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	ref := "docker.io/library/yedge:" + packageVersion(t)
	if len(im.Manifests) != 1 || im.Manifests[0].MediaType != types.OCIImageIndex ||
		im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != ref ||
		im.Manifests[0].Annotations["io.containerd.image.name"] != ref {
		t.Fatalf("index.json %+v: want one image index named %s", im.Manifests, ref)
	}
	idx, err := top.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, d := range inner.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s without a platform", d.Digest)
		}
		plats = append(plats, d.Platform.String())
	}
	if !slices.Equal(plats, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Fatalf("platforms %v, want linux/amd64 and linux/arm64/v8", plats)
	}
	var version string
	for _, d := range inner.Manifests {
		t.Run(d.Platform.Architecture, func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" {
				t.Errorf("config platform %s/%s", cf.OS, cf.Architecture)
			}
			if c.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532 (the DaemonSet's runAsUser)", c.User)
			}
			if !slices.Equal(c.Entrypoint, []string{"/usr/bin/yedge", "serve"}) || !slices.Equal(c.Cmd, []string{"--config=/etc/yedge/yedge.yaml"}) {
				t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
			}
			if _, ok := c.ExposedPorts["9464/tcp"]; !ok || len(c.ExposedPorts) != 1 {
				t.Errorf("ports %v, want 9464/tcp", c.ExposedPorts)
			}
			for _, k := range []string{"version", "revision", "source", "created", "licenses"} {
				if c.Labels["org.opencontainers.image."+k] == "" {
					t.Errorf("label org.opencontainers.image.%s missing", k)
				}
			}
			if version == "" {
				version = c.Labels["org.opencontainers.image.version"]
			} else if v := c.Labels["org.opencontainers.image.version"]; v != version {
				t.Errorf("version %q, the other architecture's %q", v, version)
			}
			if !strings.HasPrefix(version, packageVersion(t)) {
				t.Errorf("version label %q, want %s or a snapshot of it", version, packageVersion(t))
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("%d layers (%v), want 1", len(layers), err)
			}
			mt, _ := layers[0].MediaType()
			if mt != types.OCILayer {
				t.Errorf("layer media type %s", mt)
			}
			checkLayer(t, layers[0], d.Platform)
		})
	}
}

// checkLayer reads the root file system of one image.
func checkLayer(t *testing.T, l v1.Layer, p *v1.Platform) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]*tar.Header{}
	libNames := map[string]bool{}
	var elfs []string
	elfNeeds := map[string][]string{}
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		files[name] = h
		total += h.Size
		dir := path.Dir(name)
		// A library may live outside the multiarch folder, found by its
		// user's RUNPATH (GDAL's /usr/lib/ogdi, glibc's gconv modules).
		if strings.HasPrefix(dir, "usr/lib") && strings.Contains(path.Base(name), ".so") {
			libNames[path.Base(name)] = true
		}
		if h.Typeflag == tar.TypeReg && h.Size > 64 && (strings.HasPrefix(name, "usr/bin/") || strings.Contains(name, ".so")) {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if f, err := elf.NewFile(bytes.NewReader(b)); err == nil {
				libs, _ := f.ImportedLibraries()
				elfNeeds[name] = libs
				elfs = append(elfs, name)
				if name == "usr/bin/yedge" {
					want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
					if f.Machine != want {
						t.Errorf("usr/bin/yedge is %v, want %v", f.Machine, want)
					}
				}
				f.Close()
			}
		}
	}
	t.Logf("%s root: %d entries, %d MB of files, %d ELF files", p.Architecture, len(files), total>>20, len(elfs))
	for _, f := range []string{"usr/bin/yedge", "usr/lib/yedge/libonnxruntime.so.1", "etc/yedge/yedge.yaml", "usr/share/doc/yedge/copyright", "var/lib/dpkg/info/yedge.list"} {
		if files[f] == nil {
			t.Errorf("missing /%s", f)
		}
	}
	for _, d := range []string{"var/lib/yedge", "var/lib/yedge/models", "var/cache/yedge", "var/log/yedge"} {
		if h := files[d]; h == nil || h.Uid != 65532 || h.Gid != 65532 || h.Typeflag != tar.TypeDir {
			t.Errorf("/%s: %+v, want a folder of 65532:65532", d, h)
		}
	}
	for name := range files {
		if (strings.HasPrefix(name, "usr/share/doc/") && !strings.HasSuffix(name, "/copyright") && strings.Count(name, "/") > 3) ||
			strings.HasPrefix(name, "usr/share/man/man") || strings.Contains(name, "/dri/") {
			t.Errorf("/%s: docs, man pages and DRI drivers are left out", name)
		}
	}
	// Every library an ELF file links is in the image (the DRI drivers,
	// LLVM and Z3 left out by scripts/image.sh must not be among them).
	for _, f := range elfs {
		for _, so := range elfNeeds[f] {
			if !libNames[so] {
				t.Errorf("/%s links %s, which the image lacks", f, so)
			}
		}
	}
}

// TestPodmanLoad loads the archive with podman (its own storage in a
// temporary folder): the image is named as the overlays say, for this
// machine's architecture.
func TestPodmanLoad(t *testing.T) {
	archive := distArchive(t)
	podman := lookTool(t, "podman")
	dir := t.TempDir()
	base := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "none"}
	out, err := exec.Command(podman, append(base, "load", "-i", archive)...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman load: %v\n%s", err, out)
	}
	t.Logf("podman load: %s", strings.TrimSpace(string(out)))
	ref := "docker.io/library/yedge:" + packageVersion(t)
	out, err = exec.Command(podman, append(base, "image", "inspect", "--format", "{{.Architecture}} {{.Config.User}} {{index .Config.Entrypoint 0}}", ref)...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman image inspect %s: %v\n%s", ref, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "amd64 65532:65532 /usr/bin/yedge" {
		t.Errorf("podman image inspect: %q", got)
	}
}

// TestContainerdImport imports the archive with containerd's ctr into a
// containerd started by the test, in the k8s.io namespace, as
// `k3s ctr images import` does: both platforms, under the overlays' name.
func TestContainerdImport(t *testing.T) {
	archive := distArchive(t)
	containerd := lookTool(t, "containerd")
	ctr := lookTool(t, "ctr")
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd.sock")
	cfg := filepath.Join(dir, "config.toml")
	conf := "version = 2\nroot = \"" + filepath.Join(dir, "root") + "\"\nstate = \"" + filepath.Join(dir, "state") + "\"\n" +
		"[grpc]\n  address = \"" + sock + "\"\n" +
		"[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_apparmor = true\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d := exec.CommandContext(ctx, containerd, "--config", cfg)
	var log bytes.Buffer
	d.Stdout, d.Stderr = &log, &log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = d.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not listen on %s:\n%s", sock, log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ctr, append([]string{"--address", sock, "--namespace", "k8s.io"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// --no-unpack: the content and the name are what import checks; this
	// machine's snapshotters may not work in the test's sandbox.
	t.Logf("ctr images import: %s", strings.TrimSpace(run("images", "import", "--all-platforms", "--no-unpack", archive)))
	ref := "docker.io/library/yedge:" + packageVersion(t)
	if ls := run("images", "ls", "-q"); !slices.Contains(strings.Fields(ls), ref) {
		t.Fatalf("ctr images ls: %q lacks %s", ls, ref)
	}
	// Both platforms' layers are in containerd's content store.
	_, lp := unpack(t)
	content := run("content", "ls", "-q")
	for _, arch := range []string{"amd64", "arm64"} {
		ls, err := platformImage(t, lp, arch).Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			d, _ := l.Digest()
			if !strings.Contains(content, d.String()) {
				t.Errorf("%s layer %s not in containerd's content store", arch, d)
			}
		}
	}
}

// platformImage returns the image of arch in the layout's image index.
func platformImage(t *testing.T, lp layout.Path, arch string) v1.Image {
	t.Helper()
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	idx, err := top.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range inner.Manifests {
		if d.Platform != nil && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no %s manifest", arch)
	return nil
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (CI=true): make setup installs it", name)
		}
		t.Skipf("%s not found", name)
	}
	return p
}
