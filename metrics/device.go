package metrics

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// DeviceInfo is the collector of yedge_device_info{device_id, <labels>} = 1.
// Its label names come from the configuration (device.labels): Describe
// and Collect send the current descriptor and series, which SetDevice
// replaces (label names included; the registry checks descriptors only at
// registration and in pedantic mode). It is safe for concurrent use.
//
// The same identity is attached by Prometheus to every series of the
// target (deploy/prometheus/agent.yml, deploy/kubernetes): only this one
// series carries it in /metrics, so the exposition does not grow with the
// number of identity labels.
type DeviceInfo struct {
	mu     sync.Mutex
	desc   *prometheus.Desc
	metric prometheus.Metric
}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

const deviceInfoHelp = "Identity of this device in a fleet (device.id and device.labels of the configuration); always 1."

func newDeviceInfo() *DeviceInfo {
	d := &DeviceInfo{}
	if err := d.Set("", nil); err != nil {
		panic(err) // unreachable: no labels
	}
	return d
}

// Set replaces the series with yedge_device_info{device_id=id, labels...};
// an empty id is the hostname ("unknown" if unreadable). Label names must be
// valid Prometheus label names, not start with "__" and not be device_id.
func (d *DeviceInfo) Set(id string, labels map[string]string) error {
	if id == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			id = h
		} else {
			id = "unknown"
		}
	}
	names := make([]string, 0, len(labels))
	for k := range labels {
		if !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__") || k == "device_id" {
			return fmt.Errorf("%s: invalid label name %q", NameDeviceInfo, k)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	values := make([]string, 0, len(names)+1)
	values = append(values, id)
	for _, k := range names {
		values = append(values, labels[k])
	}
	desc := prometheus.NewDesc(NameDeviceInfo, deviceInfoHelp, append([]string{"device_id"}, names...), nil)
	m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, 1, values...)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.desc, d.metric = desc, m
	d.mu.Unlock()
	return nil
}

// Describe implements prometheus.Collector.
func (d *DeviceInfo) Describe(ch chan<- *prometheus.Desc) {
	d.mu.Lock()
	desc := d.desc
	d.mu.Unlock()
	ch <- desc
}

// Collect implements prometheus.Collector.
func (d *DeviceInfo) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	m := d.metric
	d.mu.Unlock()
	ch <- m
}

// SetDevice sets yedge_device_info from the device's id and labels.
func (m *Metrics) SetDevice(id string, labels map[string]string) error {
	return m.DeviceInfo.Set(id, labels)
}
