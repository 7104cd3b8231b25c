package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/yedge/yedge/metrics"
)

// tool returns the path of an external tool. When it is missing the test
// is skipped, or fails under CI=true, where the tools are installed.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (CI=true): install it (systemd-analyze: systemd; promtool: prometheus)", name)
		}
		t.Skipf("%s not found; install it to run this check", name)
	}
	return p
}

// run runs a command and returns its combined output and exit error.
func run(t *testing.T, dir, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// testUnit copies yedge.service to a temp dir with ExecStart pointing at an
// existing binary (systemd-analyze verify checks that it is executable).
func testUnit(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("yedge.service")
	if err != nil {
		t.Fatal(err)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "ExecStart=/usr/bin/yedge ", "ExecStart="+truePath+" ")
	if s == string(b) {
		t.Fatal("yedge.service: ExecStart=/usr/bin/yedge not found")
	}
	p := filepath.Join(t.TempDir(), "yedge.service")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// unitSettings parses KEY=VALUE lines of a unit file; repeated keys keep
// every value.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}()
	m := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("yedge.service: not KEY=VALUE: %q", line)
			continue
		}
		m[k] = append(m[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUnitSettings(t *testing.T) {
	m := unitSettings(t, "yedge.service")
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"WatchdogSec":             "30",
		"ExecStart":               "/usr/bin/yedge serve --config /etc/yedge/yedge.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"RestartSec":              "5",
		"TimeoutStopSec":          "20",
		"User":                    "yedge",
		"Group":                   "yedge",
		"SupplementaryGroups":     "video render",
		"StateDirectory":          "yedge",
		"CacheDirectory":          "yedge",
		"ConfigurationDirectory":  "yedge",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "no",
		"NoNewPrivileges":         "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelLogs":       "yes",
		"ProtectControlGroups":    "yes",
		"ProtectClock":            "yes",
		"ProtectHostname":         "yes",
		"RestrictNamespaces":      "yes",
		"LockPersonality":         "yes",
		"RestrictRealtime":        "yes",
		"RestrictSUIDSGID":        "yes",
		"SystemCallArchitectures": "native",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"DevicePolicy":            "closed",
		"UMask":                   "0077",
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("%s= missing, want %q", k, v)
			continue
		}
		if got[len(got)-1] != v {
			t.Errorf("%s=%q, want %q", k, got[len(got)-1], v)
		}
	}
	if !slices.Contains(m["SystemCallFilter"], "@system-service") {
		t.Errorf("SystemCallFilter=%q lacks @system-service", m["SystemCallFilter"])
	}
	// The binary finds the packaged onnxruntime beside it; YEDGE_ORT_LIB in
	// the unit would override the config's onnxruntime.library.
	for _, e := range m["Environment"] {
		if strings.HasPrefix(e, "YEDGE_ORT_LIB=") {
			t.Errorf("Environment=%q: YEDGE_ORT_LIB belongs in a drop-in, not the unit", e)
		}
	}
	for _, dev := range []string{"char-video4linux rw", "char-nvidia* rw", "char-nvhost* rw", "/dev/nvmap rw"} {
		if !slices.Contains(m["DeviceAllow"], dev) {
			t.Errorf("DeviceAllow=%s missing (have %q)", dev, m["DeviceAllow"])
		}
	}
	// CUDA and TensorRT need writable+executable mappings; ProcSubset=pid
	// would hide /proc/driver/nvidia.
	for _, k := range []string{"MemoryDenyWriteExecute", "ProcSubset", "PrivateUsers"} {
		if v, ok := m[k]; ok {
			t.Errorf("%s=%q must not be set (breaks CUDA/TensorRT or device groups)", k, v)
		}
	}
}

func TestSystemdVerify(t *testing.T) {
	sa := tool(t, "systemd-analyze")
	unit := testUnit(t)
	out, err := run(t, "", sa, "verify", unit)
	var bad []string
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "yedge.service") {
			bad = append(bad, line)
		}
	}
	if len(bad) > 0 || err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var exposureRe = regexp.MustCompile(`Overall exposure level for yedge\.service: ([0-9.]+)\s+(\S+)`)

func TestSystemdSecurityScore(t *testing.T) {
	sa := tool(t, "systemd-analyze")
	help, _ := run(t, "", sa, "--help")
	if !strings.Contains(help, "--offline") {
		t.Skip("this systemd-analyze has no security --offline (systemd < 250)")
	}
	unit := testUnit(t)
	out, err := run(t, "", sa, "security", "--offline=true", "--no-pager", unit)
	m := exposureRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v, no exposure level in:\n%s", err, out)
	}
	score, perr := strconv.ParseFloat(m[1], 64)
	if perr != nil {
		t.Fatal(perr)
	}
	t.Logf("exposure level: %v %s", score, m[2])
	if score > 5.0 {
		t.Errorf("exposure level %v %s, want <= 5.0:\n%s", score, m[2], out)
	}
}

func TestPromtool(t *testing.T) {
	pt := tool(t, "promtool")
	// promtool >= 2.42 checks agent-mode configs with --agent (it rejects
	// rule_files, alerting and remote_read there); older ones only know
	// the server schema, which agent.yml satisfies too.
	agent := []string{"check", "config", "agent.yml"}
	if help, _ := run(t, "", pt, "check", "config", "--help"); strings.Contains(help, "--agent") {
		agent = []string{"check", "config", "--agent", "agent.yml"}
	} else if os.Getenv("CI") == "true" {
		t.Errorf("promtool check config has no --agent (Prometheus < 2.42): agent.yml checked as a server config")
	}
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		agent,
		{"check", "config", "central.yml"},
		{"check", "rules", "fleet-rules.yml"},
		{"test", "rules", "fleet-rules_test.yml"},
	} {
		if out, err := run(t, "prometheus", pt, args...); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func TestShellcheck(t *testing.T) {
	sc := tool(t, "shellcheck")
	scripts := []string{"install.sh", "sysroot-arm64.sh", "debian/yedge.postinst", "debian/yedge.postrm",
		"../scripts/dist.sh", "../scripts/image.sh", "../scripts/setup.sh"}
	if out, err := run(t, "", sc, scripts...); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// known returns the metric names PromQL may use: every family in
// metrics.Names, plus _bucket/_sum/_count of the histograms, plus up.
func known() map[string]bool {
	k := map[string]bool{"up": true}
	for _, n := range metrics.Names() {
		k[n] = true
	}
	for _, h := range metrics.Histograms() {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			k[h+s] = true
		}
	}
	return k
}

var (
	quotedRe = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	identRe  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// yedgeNames returns the yedge_ metric names an expression refers to
// (string literals such as label values are ignored).
func yedgeNames(expr string) []string {
	var names []string
	for _, id := range identRe.FindAllString(quotedRe.ReplaceAllString(expr, `""`), -1) {
		if strings.HasPrefix(id, metrics.Namespace+"_") {
			names = append(names, id)
		}
	}
	return names
}

func TestYedgeNames(t *testing.T) {
	got := yedgeNames(`histogram_quantile(0.95, sum by (le) (rate(yedge_stage_duration_seconds_bucket{stage="yedge_not_a_metric"}[5m]))) / yedge_ready`)
	want := []string{"yedge_stage_duration_seconds_bucket", "yedge_ready"}
	if !slices.Equal(got, want) {
		t.Errorf("yedgeNames = %v, want %v", got, want)
	}
}

type rule struct {
	Alert  string `yaml:"alert"`
	Record string `yaml:"record"`
	Expr   string `yaml:"expr"`
}

// readRules returns the rules of a Prometheus rule file, in order.
func readRules(t *testing.T, path string) []rule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var rules []rule
	for _, g := range doc.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

func TestAlertsUseKnownMetrics(t *testing.T) {
	k := known()
	var alerts []string
	for _, r := range readRules(t, "prometheus/alerts.yml") {
		alerts = append(alerts, r.Alert)
		for _, n := range yedgeNames(r.Expr) {
			if !k[n] {
				t.Errorf("alert %s uses unknown metric %s", r.Alert, n)
			}
		}
	}
	for _, a := range []string{"YedgeStreamDown", "YedgeInt8AgreementLow", "YedgeLatencyHigh", "YedgeNoFrames", "YedgeDown"} {
		if !slices.Contains(alerts, a) {
			t.Errorf("alert %s missing", a)
		}
	}
}

// recordedRe matches a recording-rule name (level:metric:operations).
var recordedRe = regexp.MustCompile(`\b[a-zA-Z_]+:[a-zA-Z0-9_]+:[a-zA-Z0-9_:]+`)

// TestFleetRulesUseKnownMetrics: the central rules reference only real
// yedge_ metrics, and only recorded names that a rule of the file records
// (a misspelled recording rule name would silently match nothing).
func TestFleetRulesUseKnownMetrics(t *testing.T) {
	k := known()
	rules := readRules(t, "prometheus/fleet-rules.yml")
	recorded := map[string]bool{}
	for _, r := range rules {
		if r.Record != "" {
			recorded[r.Record] = true
		}
	}
	var alerts []string
	for _, r := range rules {
		name := r.Alert + r.Record
		if r.Alert != "" {
			alerts = append(alerts, r.Alert)
		}
		for _, n := range yedgeNames(r.Expr) {
			if !k[n] {
				t.Errorf("rule %s uses unknown metric %s", name, n)
			}
		}
		for _, n := range recordedRe.FindAllString(quotedRe.ReplaceAllString(r.Expr, `""`), -1) {
			if !recorded[n] {
				t.Errorf("rule %s uses %s, which no rule records", name, n)
			}
		}
		if r.Record != "" && !strings.Contains(r.Expr, "yedge_") && !strings.Contains(r.Expr, "up{") {
			t.Errorf("rule %s refers to no yedge metric", name)
		}
	}
	for _, a := range []string{"YedgeDeviceDown", "YedgeSiteDevicesDown", "YedgeSiteAgreementLow", "YedgeDeviceAgreementOutlier", "YedgeDeviceLatencyHigh"} {
		if !slices.Contains(alerts, a) {
			t.Errorf("alert %s missing", a)
		}
	}
	for _, r := range []string{"device:yedge_up:fresh", "device:yedge_int8_infer_seconds:p95_5m", "site:yedge_devices_down:ratio", "site:yedge_agreement_recall:avg"} {
		if !recorded[r] {
			t.Errorf("recording rule %s missing", r)
		}
	}
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/yedge-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("dashboard needs a uid and a title")
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want >= 36", d.SchemaVersion)
	}
	k := known()
	used := map[string]bool{}
	check := func(where, expr string) {
		for _, n := range yedgeNames(expr) {
			used[n] = true
			if !k[n] {
				t.Errorf("%s: unknown metric %s in %q", where, n, expr)
			}
		}
	}

	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "DS_PROMETHEUS" && v.Type == "datasource" {
			hasDS = true
		}
		check("variable "+v.Name, v.Definition)
		check("variable "+v.Name, string(v.Query))
	}
	if !hasDS {
		t.Error("no datasource variable DS_PROMETHEUS")
	}

	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("duplicate panel id %d", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil {
				t.Errorf("panel %q has no gridPos", p.Title)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource must be ${DS_PROMETHEUS}", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			for _, tg := range p.Targets {
				if len(yedgeNames(tg.Expr)) == 0 {
					t.Errorf("panel %q query %s uses no yedge metric: %q", p.Title, tg.RefID, tg.Expr)
				}
				check("panel "+strconv.Quote(p.Title), tg.Expr)
			}
		}
	}
	walk(d.Panels)

	for _, n := range []string{
		metrics.NameFramesInferred, metrics.NameStageSeconds + "_bucket",
		metrics.NameStreamUp, metrics.NameReconnects,
		metrics.NameFramesSkipped, metrics.NameFramesFailed,
		metrics.NameAgreementPrecision, metrics.NameAgreementRecall, metrics.NameAgreementIoU,
		metrics.NameLatencyRatio, metrics.NameEvalMAP50, metrics.NameDetections,
		metrics.NamePipelineBusy, metrics.NamePipelineWait + "_bucket", metrics.NamePipelineDropped,
	} {
		if !used[n] {
			t.Errorf("no dashboard panel shows %s", n)
		}
	}
}

func TestInstallScriptStaged(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	src := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	binPath := write("yedge", "#!/bin/sh\n")
	lib := write("libonnxruntime.so.1", "lib")
	cfg := write("yedge.yaml", "streams: []\n")
	dest := t.TempDir()
	args := []string{"install.sh", "--destdir", dest, "--bin", binPath, "--ort-lib", lib, "--config", cfg, "--prefix", "/opt/yedge"}

	out, err := run(t, "", bash, args...)
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for _, f := range []string{
		"opt/yedge/bin/yedge", "opt/yedge/lib/yedge/libonnxruntime.so.1",
		"etc/systemd/system/yedge.service", "etc/yedge/yedge.yaml",
	} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dest, "opt/yedge/bin/yedge")); err == nil && fi.Mode().Perm() != 0o755 {
		t.Errorf("binary mode %v, want 0755", fi.Mode().Perm())
	}
	unit, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/yedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	// The binary finds PREFIX/lib/yedge beside PREFIX/bin (onnxrt.BundledDir).
	for _, want := range []string{
		"ExecStart=/opt/yedge/bin/yedge serve --config /etc/yedge/yedge.yaml",
		"Documentation=file:///opt/yedge/share/doc/yedge/JETSON.md",
		"User=yedge",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("installed unit lacks %q", want)
		}
	}
	if strings.Contains(string(unit), "/usr/bin/yedge") {
		t.Errorf("installed unit still names /usr/bin/yedge:\n%s", unit)
	}

	// Idempotent: nothing changes, and an edited config is kept.
	if err := os.WriteFile(filepath.Join(dest, "etc/yedge/yedge.yaml"), []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "", bash, args...)
	if err != nil {
		t.Fatalf("second install.sh: %v\n%s", err, out)
	}
	if strings.Contains(out, "installed ") || !strings.Contains(out, "kept") {
		t.Errorf("second run changed files:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "etc/yedge/yedge.yaml")); string(b) != "edited\n" {
		t.Errorf("config overwritten: %q", b)
	}

	// Bad usage fails.
	if out, err := run(t, "", bash, "install.sh", "--destdir", dest, "--bogus"); err == nil {
		t.Errorf("unknown flag accepted:\n%s", out)
	}
}

func TestJetsonGuide(t *testing.T) {
	b, err := os.ReadFile("JETSON.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"JetPack 5", "JetPack 6", "--use_tensorrt", "gocv", "nvarguscamerasrc", "nvpmodel", "jetson_clocks", "DLA", "make cross-arm64"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JETSON.md does not mention %q", want)
		}
	}
}
