package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestDeviceInfo(t *testing.T) {
	m := New("v", "r")
	if n := testutil.CollectAndCount(m.DeviceInfo); n != 1 {
		t.Fatalf("%d device series, want 1", n)
	}
	if err := m.SetDevice("jetson-07", map[string]string{"zone": "gate", "site": "depot-3"}); err != nil {
		t.Fatal(err)
	}
	want := `# HELP yedge_device_info ` + deviceInfoHelp + `
# TYPE yedge_device_info gauge
yedge_device_info{device_id="jetson-07",site="depot-3",zone="gate"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), NameDeviceInfo); err != nil {
		t.Error(err)
	}
	// A second Set replaces the series (new label names included).
	if err := m.SetDevice("jetson-08", map[string]string{"site": "depot-4"}); err != nil {
		t.Fatal(err)
	}
	want = strings.Replace(want, `device_id="jetson-07",site="depot-3",zone="gate"`, `device_id="jetson-08",site="depot-4"`, 1)
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), NameDeviceInfo); err != nil {
		t.Error(err)
	}
	for _, bad := range []map[string]string{{"a-b": "x"}, {"__x": "x"}, {"device_id": "x"}, {"1a": "x"}} {
		if err := m.SetDevice("d", bad); err == nil {
			t.Errorf("SetDevice(%v) accepted an invalid label name", bad)
		}
	}
	if err := m.SetDevice("", nil); err != nil {
		t.Errorf("SetDevice with an empty id (the hostname): %v", err)
	}
}
