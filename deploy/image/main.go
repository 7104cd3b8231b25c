// Command mkimage writes yedge's OCI image: one root file system per
// architecture (a tar that mmdebstrap made, with the yedge .deb installed:
// scripts/image.sh) becomes one layer of one image, and the images become
// one OCI image index, written as an OCI image layout.
//
// The layout's index.json names the index with the image reference, for
// podman (org.opencontainers.image.ref.name) and containerd
// (io.containerd.image.name, which ctr and k3s ctr images import read). The
// image config runs `yedge serve` as the non-root UID that the Kubernetes
// DaemonSet uses, exposes the metrics port, and carries the OCI labels for
// version, revision and source. Every time stamp is --created, so that the
// same roots give the same digests.
//
// It is a module of its own (like deploy/kubernetes/manifesttest), so
// go-containerregistry stays out of yedge's module and binary.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Port is the daemon's metrics and HTTP port (listen in yedge.yaml).
const Port = "9464/tcp"

// Options describe the image to write.
type Options struct {
	// Roots maps a GOARCH (amd64, arm64) to its root file system tar.
	Roots map[string]string
	// Name is the image reference, e.g. docker.io/library/yedge:0.3.0.
	Name string
	// Version is the yedge (package) version; Revision its commit.
	Version, Revision string
	// Source is the address of yedge's source.
	Source string
	// Created is the time stamp of the image, its config and history.
	Created time.Time
	// UID is the numeric user and group the image runs as.
	UID int
	// Layout is the folder of the OCI image layout to write; it must not
	// exist yet.
	Layout string
}

// Platforms lists the architectures mkimage knows, in index order.
var Platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
}

// Labels returns the OCI annotations and config labels of the image.
func (o Options) Labels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "yedge",
		"org.opencontainers.image.description": "int8 YOLOv5 inference daemon for edge devices (onnxruntime CPU, Debian 12)",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.licenses":    "Apache-2.0 AND MIT",
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.base.name":   "debian:bookworm",
	}
}

// Build returns the image index of the roots in Options, one manifest per
// architecture, in the order of Platforms.
func Build(o Options) (v1.ImageIndex, error) {
	if len(o.Roots) == 0 {
		return nil, errors.New("no root file system given (--rootfs ARCH=TAR)")
	}
	for arch := range o.Roots {
		if platform(arch) == nil {
			return nil, fmt.Errorf("--rootfs %s: unknown architecture (want amd64 or arm64)", arch)
		}
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		path, ok := o.Roots[p.Architecture]
		if !ok {
			continue
		}
		img, err := image(o, p, path)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	return mutate.Annotations(idx, o.Labels()).(v1.ImageIndex), nil
}

func platform(arch string) *v1.Platform {
	for _, p := range Platforms {
		if p.Architecture == arch {
			return &p
		}
	}
	return nil
}

// image is one architecture's image: the root tar as its only layer.
func image(o Options, p v1.Platform, path string) (v1.Image, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("root file system of %s: %w", p.Architecture, err)
	}
	layer, err := tarball.LayerFromFile(path, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("root file system of %s (%s): %w", p.Architecture, path, err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "mmdebstrap --variant=essential bookworm, with yedge_" + o.Version + "_" + p.Architecture + ".deb (scripts/image.sh)",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image of %s: %w", p.Architecture, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image of %s: %w", p.Architecture, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: o.Created}
	user := strconv.Itoa(o.UID)
	cf.Config = v1.Config{
		User:       user + ":" + user,
		Entrypoint: []string{"/usr/bin/yedge", "serve"},
		Cmd:        []string{"--config=/etc/yedge/yedge.yaml"},
		WorkingDir: "/var/lib/yedge",
		// What systemd's StateDirectory= and CacheDirectory= give the
		// packaged service: the model store in /var/lib/yedge (beside the
		// user's models) and the caches in /var/cache/yedge, the folders
		// the DaemonSet mounts, whatever HOME the runtime sets.
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/var/lib/yedge",
			"STATE_DIRECTORY=/var/lib/yedge",
			"CACHE_DIRECTORY=/var/cache/yedge",
		},
		ExposedPorts: map[string]struct{}{Port: {}},
		// The model store and state (/var/lib/yedge) and the TensorRT and
		// CUDA caches (/var/cache/yedge): the DaemonSet mounts both.
		Volumes:    map[string]struct{}{"/var/lib/yedge": {}, "/var/cache/yedge": {}},
		Labels:     o.Labels(),
		StopSignal: "SIGTERM",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image of %s: %w", p.Architecture, err)
	}
	return img, nil
}

// Write writes idx as the OCI image layout o.Layout, named o.Name.
func Write(o Options, idx v1.ImageIndex) error {
	if _, err := os.Stat(o.Layout); err == nil {
		return fmt.Errorf("layout %s: already exists", o.Layout)
	}
	p, err := layout.Write(o.Layout, empty.Index)
	if err != nil {
		return fmt.Errorf("layout %s: %w", o.Layout, err)
	}
	err = p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.Name,
		"io.containerd.image.name":          o.Name,
	}))
	if err != nil {
		return fmt.Errorf("layout %s: %w", o.Layout, err)
	}
	return nil
}

// rootsFlag collects --rootfs ARCH=TAR.
type rootsFlag map[string]string

func (r rootsFlag) String() string { return fmt.Sprint(map[string]string(r)) }

func (r rootsFlag) Set(s string) error {
	arch, path, ok := strings.Cut(s, "=")
	if !ok || arch == "" || path == "" {
		return fmt.Errorf("%q: want ARCH=TAR", s)
	}
	if _, dup := r[arch]; dup {
		return fmt.Errorf("%s given twice", arch)
	}
	r[arch] = path
	return nil
}

func main() {
	o := Options{Roots: rootsFlag{}}
	var created int64
	flag.Var(rootsFlag(o.Roots), "rootfs", "ARCH=TAR: the root file system of one architecture (repeat)")
	flag.StringVar(&o.Name, "name", "", "image reference, e.g. docker.io/library/yedge:0.3.0")
	flag.StringVar(&o.Version, "version", "", "yedge version (label org.opencontainers.image.version)")
	flag.StringVar(&o.Revision, "revision", "", "commit (label org.opencontainers.image.revision)")
	flag.StringVar(&o.Source, "source", "https://github.com/yedge/yedge", "source address (label org.opencontainers.image.source)")
	flag.Int64Var(&created, "created", 0, "time stamp, seconds since 1970 ($SOURCE_DATE_EPOCH)")
	flag.IntVar(&o.UID, "uid", 65532, "numeric user and group to run as")
	flag.StringVar(&o.Layout, "layout", "", "OCI image layout folder to write (must not exist)")
	flag.Parse()
	if err := run(o, created); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(o Options, created int64) error {
	switch {
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	case o.Name == "" || o.Version == "" || o.Revision == "" || o.Layout == "":
		return errors.New("--name, --version, --revision and --layout are required")
	case created <= 0:
		return errors.New("--created: want the seconds of $SOURCE_DATE_EPOCH")
	}
	o.Created = time.Unix(created, 0).UTC()
	idx, err := Build(o)
	if err != nil {
		return err
	}
	if err := Write(o, idx); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", o.Name, d)
	return nil
}
