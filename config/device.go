package config

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// DeviceIDEnv names the environment variable that, when set, is the
// default device.id instead of the hostname. In Kubernetes the hostname is
// the pod's name, which changes on every rollout; deploy/kubernetes sets
// it to the node's name (downward API, spec.nodeName).
const DeviceIDEnv = "YEDGE_DEVICE_ID"

// DefaultDeviceID returns the default device.id: $YEDGE_DEVICE_ID, else the
// hostname, else "unknown".
func DefaultDeviceID() string {
	if id := os.Getenv(DeviceIDEnv); id != "" {
		return id
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

var (
	// labelNameRE is a Prometheus label name (names starting with "__"
	// are reserved and rejected separately).
	labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	deviceIDRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$`)
)

// ReservedDeviceLabels are the label names device.labels may not use:
// device_id itself, the labels Prometheus attaches to every target (job,
// instance), and the labels of yedge's own series, which a target label of
// the same name would shadow (renaming them exported_<name>).
var ReservedDeviceLabels = []string{
	"device_id", "job", "instance",
	"stream", "precision", "stage", "class", "sink",
	"model", "sha256", "provider", "version", "revision", "goversion",
	"le", "quantile",
}

// maxDeviceLabels bounds device.labels: identity, not data.
const maxDeviceLabels = 16

// CheckDeviceLabel reports why name cannot be a key of device.labels, or
// nil when it can.
func CheckDeviceLabel(name string) error {
	switch {
	case !labelNameRE.MatchString(name):
		return fmt.Errorf("%q is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)", name)
	case strings.HasPrefix(name, "__"):
		return fmt.Errorf("%q: label names starting with __ are reserved by Prometheus", name)
	case slices.Contains(ReservedDeviceLabels, name):
		return fmt.Errorf("%q is reserved (one of %s)", name, strings.Join(ReservedDeviceLabels, ", "))
	}
	return nil
}

// device validates device.id and device.labels.
func (v *validator) device() {
	d := v.c.Device
	if !deviceIDRE.MatchString(d.ID) {
		v.add("device.id", "want 1 to 128 characters of [A-Za-z0-9_.:-] starting with a letter or digit, got %q", d.ID)
	}
	if len(d.Labels) > maxDeviceLabels {
		v.add("device.labels", "at most %d labels, got %d", maxDeviceLabels, len(d.Labels))
	}
	keys := make([]string, 0, len(d.Labels))
	for k := range d.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := "device.labels." + k
		if err := CheckDeviceLabel(k); err != nil {
			v.add(p, "%v", err)
			continue
		}
		val := d.Labels[k]
		if val == "" || len(val) > 128 || !utf8.ValidString(val) {
			v.add(p, "want a non-empty UTF-8 value of at most 128 bytes, got %q", val)
		}
	}
}
