package deploy

import (
	"os"
	"strings"
	"testing"

	"github.com/yedge/yedge/configs"
)

// TestKubernetesConfig: the yedge.yaml that the DaemonSet mounts from its
// ConfigMap is a valid configuration (strict parsing, and validation apart
// from the model files, which live on the nodes), listens where the probes
// and the PodMonitor look, and takes its device id from the environment.
// The manifests themselves are tested in deploy/kubernetes/manifesttest
// (make k8s-test), a module of its own.
func TestKubernetesConfig(t *testing.T) {
	b, err := os.ReadFile("kubernetes/base/yedge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(configs.DeviceIDEnv, "node-1")
	c, err := configs.Parse(b, "kubernetes/base/yedge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9464" {
		t.Errorf("listen %q, want 0.0.0.0:9464 (the DaemonSet's metrics port)", c.Listen)
	}
	if c.Device.ID != "node-1" {
		t.Errorf("device.id %q, want $%s", c.Device.ID, configs.DeviceIDEnv)
	}
	if *c.HTTP.EnablePost {
		t.Error("POST endpoints on without a token on a pod-IP listener")
	}
	for _, p := range configs.Problems(c.Validate()) {
		if !strings.HasPrefix(p.Path, "model.") {
			t.Errorf("%v", p)
		}
	}
	for _, s := range c.Streams {
		if s.Loop || strings.HasPrefix(s.URI, "/") {
			t.Errorf("stream %s: a file in the example DaemonSet config", s.Name)
		}
	}
}
