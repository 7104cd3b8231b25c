package serve_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestServeDependsOnNoConfigOrQuantizer: the daemon runs a resolved plan;
// the YAML schema (config), the builder (plan) and the quantizer (quant)
// stay out of its dependencies, also transitively.
func TestServeDependsOnNoConfigOrQuantizer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/yedge/yedge/serve").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch dep {
		case "github.com/yedge/yedge/config", "github.com/yedge/yedge/quant", "github.com/yedge/yedge/plan":
			t.Errorf("serve depends on %s", dep)
		}
	}
}

// TestBinaryHasNoTestHarness: the test harness (internal/testkit: the
// fixtures, broken models, the test daemon) is imported by tests only,
// never by the yedge binary.
func TestBinaryHasNoTestHarness(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/yedge/yedge/cmd/yedge").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "/internal/testkit/") {
			t.Errorf("the yedge binary depends on %s", dep)
		}
	}
}
