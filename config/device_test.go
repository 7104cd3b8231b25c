package config

import (
	"os"
	"strings"
	"testing"
)

func TestDeviceDefaultsToHostname(t *testing.T) {
	c, err := Parse([]byte(strings.ReplaceAll(baseYAML, "{{dir}}", "/tmp/x")), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := os.Hostname()
	if h == "" {
		h = "unknown"
	}
	if c.Device.ID != h || len(c.Device.Labels) != 0 {
		t.Errorf("device = %+v, want id %q and no labels", c.Device, h)
	}
	t.Setenv(DeviceIDEnv, "node-17")
	if c, err = Parse([]byte(strings.ReplaceAll(baseYAML, "{{dir}}", "/tmp/x")), "x.yaml"); err != nil || c.Device.ID != "node-17" {
		t.Errorf("device.id with $%s=node-17: %q, %v", DeviceIDEnv, c.Device.ID, err)
	}
	if c, err = Parse([]byte(strings.ReplaceAll(baseYAML, "{{dir}}", "/tmp/x")+"device: {id: set}\n"), "x.yaml"); err != nil || c.Device.ID != "set" {
		t.Errorf("device.id set in the file and $%s: %q, %v", DeviceIDEnv, c.Device.ID, err)
	}
}

func TestDeviceConfig(t *testing.T) {
	dir := testDir(t)
	ok := baseYAML + "device:\n  id: jetson-07\n  labels:\n    site: depot-3\n    zone: \"gate north\"\n"
	c, err := Load(writeConfig(t, dir, ok))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Device.ID != "jetson-07" || c.Device.Labels["site"] != "depot-3" || c.Device.Labels["zone"] != "gate north" {
		t.Errorf("device = %+v", c.Device)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"device:\n  labels:\n    site-name: x\n", "device.labels.site-name: \"site-name\" is not a Prometheus label name"},
		{"device:\n  labels:\n    __site: x\n", "reserved by Prometheus"},
		{"device:\n  labels:\n    instance: x\n", "\"instance\" is reserved"},
		{"device:\n  labels:\n    stream: x\n", "\"stream\" is reserved"},
		{"device:\n  labels:\n    site: \"\"\n", "device.labels.site: want a non-empty"},
		{"device:\n  id: \"a b\"\n", "device.id: want 1 to 128 characters"},
		{"device:\n  id: \"-x\"\n", "device.id: want"},
	} {
		c, err := Load(writeConfig(t, dir, baseYAML+tc.yaml))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
	for _, tc := range []struct{ yaml, want string }{
		{"device:\n  labels: [a, b]\n", "device.labels: want a mapping"},
		{"device:\n  labels:\n    site: {a: b}\n", "device.labels.site: want a string"},
		{"device:\n  lables:\n    site: x\n", "did you mean \"labels\""},
	} {
		_, err := Parse([]byte(strings.ReplaceAll(baseYAML+tc.yaml, "{{dir}}", "/tmp/x")), "x.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
