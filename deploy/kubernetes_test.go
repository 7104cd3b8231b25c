package deploy

import (
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/yedge/yedge/config"
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
	t.Setenv(config.DeviceIDEnv, "node-1")
	c, err := config.Parse(b, "kubernetes/base/yedge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9464" {
		t.Errorf("listen %q, want 0.0.0.0:9464 (the DaemonSet's metrics port)", c.Listen)
	}
	if c.Device.ID != "node-1" {
		t.Errorf("device.id %q, want $%s", c.Device.ID, config.DeviceIDEnv)
	}
	if *c.HTTP.EnablePost {
		t.Error("POST endpoints on without a token on a pod-IP listener")
	}
	for _, p := range config.Problems(c.Validate()) {
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

// TestAgentConfig: the settings agent.yml's comments promise, and a device
// file whose labels the daemon would accept as device.labels.
func TestAgentConfig(t *testing.T) {
	b, err := os.ReadFile("prometheus/agent.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			HonorLabels   bool   `yaml:"honor_labels"`
			FileSDConfigs []struct {
				Files []string `yaml:"files"`
			} `yaml:"file_sd_configs"`
		} `yaml:"scrape_configs"`
		RemoteWrite []struct {
			URL         string         `yaml:"url"`
			QueueConfig map[string]any `yaml:"queue_config"`
		} `yaml:"remote_write"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.ScrapeConfigs) != 1 || cfg.ScrapeConfigs[0].JobName != "yedge" || !cfg.ScrapeConfigs[0].HonorLabels ||
		len(cfg.ScrapeConfigs[0].FileSDConfigs) != 1 || cfg.ScrapeConfigs[0].FileSDConfigs[0].Files[0] != "yedge-device.yml" {
		t.Errorf("scrape_configs: want one yedge job with honor_labels and file_sd yedge-device.yml: %+v", cfg.ScrapeConfigs)
	}
	if len(cfg.RemoteWrite) != 1 {
		t.Fatalf("remote_write: %d entries, want 1", len(cfg.RemoteWrite))
	}
	for _, k := range []string{"capacity", "min_shards", "max_shards", "max_samples_per_send", "batch_send_deadline", "min_backoff", "max_backoff", "retry_on_http_429"} {
		if _, ok := cfg.RemoteWrite[0].QueueConfig[k]; !ok {
			t.Errorf("remote_write.queue_config.%s not set", k)
		}
	}
	if !strings.Contains(string(b), "--storage.agent.retention.max-time") {
		t.Error("agent.yml does not document the WAL retention flag")
	}

	b, err = os.ReadFile("prometheus/yedge-device.yml")
	if err != nil {
		t.Fatal(err)
	}
	var groups []struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	}
	if err := yaml.Unmarshal(b, &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || len(groups[0].Targets) != 1 || groups[0].Labels["device_id"] == "" {
		t.Fatalf("yedge-device.yml: want one target with a device_id label: %+v", groups)
	}
	for k := range groups[0].Labels {
		if err := config.CheckDeviceLabel(k); k != "device_id" && err != nil {
			t.Errorf("yedge-device.yml: %v", err)
		}
	}
}
