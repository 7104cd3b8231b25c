package manifesttest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	sjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// root is deploy/kubernetes.
const root = ".."

var overlays = []string{"jetson", "cpu"}

// rendered is one overlay's objects, decoded strictly.
type rendered struct {
	ds         *appsv1.DaemonSet
	cms        map[string]*corev1.ConfigMap
	svc        *corev1.Service
	sa         *corev1.ServiceAccount
	ns         *corev1.Namespace
	pm         *monitoringv1.PodMonitor
	namespaces map[string]string // kind/name -> namespace
}

// strict decodes JSON into v as the API server does in strict mode:
// case-sensitive field names, no unknown fields, no duplicate fields.
func strict(data []byte, v any) error {
	strictErrs, err := sjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// render builds an overlay with kustomize (as kubectl apply -k does) and
// decodes every object strictly into its API type.
func render(dir string) (*rendered, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	r := &rendered{cms: map[string]*corev1.ConfigMap{}, namespaces: map[string]string{}}
	for _, res := range rm.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSONStrict(y)
		if err != nil {
			return nil, err
		}
		kind, name := res.GetKind(), res.GetName()
		id := kind + "/" + name
		r.namespaces[id] = res.GetNamespace()
		var obj any
		switch res.GetApiVersion() + " " + kind {
		case "apps/v1 DaemonSet":
			if r.ds != nil {
				return nil, fmt.Errorf("two DaemonSets")
			}
			r.ds = &appsv1.DaemonSet{}
			obj = r.ds
		case "v1 ConfigMap":
			cm := &corev1.ConfigMap{}
			r.cms[name] = cm
			obj = cm
		case "v1 Service":
			r.svc = &corev1.Service{}
			obj = r.svc
		case "v1 ServiceAccount":
			r.sa = &corev1.ServiceAccount{}
			obj = r.sa
		case "v1 Namespace":
			r.ns = &corev1.Namespace{}
			obj = r.ns
		case "monitoring.coreos.com/v1 PodMonitor":
			r.pm = &monitoringv1.PodMonitor{}
			obj = r.pm
		default:
			return nil, fmt.Errorf("%s: unexpected %s %s (add it to this test)", dir, res.GetApiVersion(), kind)
		}
		if err := strict(j, obj); err != nil {
			return nil, fmt.Errorf("%s %s: %w", id, dir, err)
		}
	}
	if r.ds == nil || r.svc == nil || r.sa == nil || r.ns == nil || r.pm == nil || len(r.cms) == 0 {
		return nil, fmt.Errorf("%s: missing objects: daemonset %v service %v serviceaccount %v namespace %v podmonitor %v configmaps %d",
			dir, r.ds != nil, r.svc != nil, r.sa != nil, r.ns != nil, r.pm != nil, len(r.cms))
	}
	return r, nil
}

func mustRender(t *testing.T, overlay string) *rendered {
	t.Helper()
	r, err := render(filepath.Join(root, "overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func container(t *testing.T, ds *appsv1.DaemonSet) *corev1.Container {
	t.Helper()
	for i, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "yedge" {
			return &ds.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatal("no yedge container")
	return nil
}

// TestOverlays renders each overlay and checks what the DaemonSet must have
// in both: probes, resources, the systemd unit's hardening, the state
// folders, the config and its live reload, and the scrape wiring.
func TestOverlays(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			r := mustRender(t, o)
			ds := r.ds
			ps := ds.Spec.Template.Spec
			c := container(t, ds)

			for id, ns := range r.namespaces {
				if want := "yedge"; id != "Namespace/yedge" && ns != want {
					t.Errorf("%s in namespace %q, want %q", id, ns, want)
				}
			}
			// The image's entrypoint is `yedge serve` (deploy/image).
			if len(c.Command) != 0 || slices.Contains(c.Args, "serve") || !slices.Contains(c.Args, "--watch-config") || !slices.Contains(c.Args, "--config=/etc/yedge/yedge.yaml") {
				t.Errorf("command %q args %q: want the image's entrypoint with --config=/etc/yedge/yedge.yaml --watch-config", c.Command, c.Args)
			}
			if want := "docker.io/library/yedge:" + packageVersion(t); c.Image != want {
				t.Errorf("image %q, want %q: the image make dist builds", c.Image, want)
			}

			// Probes: liveness /healthz, readiness /readyz, on the metrics port.
			probe := func(name string, p *corev1.Probe, path string) {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "metrics" {
					t.Errorf("%s probe: %+v, want GET %s on port metrics", name, p, path)
				}
			}
			probe("liveness", c.LivenessProbe, "/healthz")
			probe("readiness", c.ReadinessProbe, "/readyz")
			probe("startup", c.StartupProbe, "/healthz")
			if sp := c.StartupProbe; sp != nil && int(sp.PeriodSeconds)*int(sp.FailureThreshold) < 20*60 {
				t.Errorf("startup probe allows %ds, want >= 20 min (TimeoutStartSec=20min: TensorRT engine builds)", int(sp.PeriodSeconds)*int(sp.FailureThreshold))
			}
			if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 9464 {
				t.Errorf("ports %+v, want metrics 9464", c.Ports)
			}

			// Requests and limits for CPU and memory; requests <= limits.
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okR := c.Resources.Requests[res]
				lim, okL := c.Resources.Limits[res]
				if !okR || !okL || req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
					t.Errorf("%s: request %v limit %v: want both, request <= limit", res, req.String(), lim.String())
				}
			}

			// The hardening of deploy/yedge.service.
			psc := ps.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
				psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod securityContext %+v: want runAsNonRoot, a non-zero runAsUser, seccomp RuntimeDefault", psc)
			}
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Fatal("no container securityContext")
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Error("allowPrivilegeEscalation must be false (NoNewPrivileges=yes)")
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Error("readOnlyRootFilesystem must be true (ProtectSystem=strict)")
			case sc.Privileged != nil && *sc.Privileged:
				t.Error("privileged must not be set")
			case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
				t.Errorf("capabilities %+v: want drop [ALL], add none (CapabilityBoundingSet=)", sc.Capabilities)
			case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
				t.Error("container seccompProfile must be RuntimeDefault")
			}
			if ps.HostNetwork || ps.HostPID || ps.HostIPC {
				t.Error("host namespaces must not be shared")
			}
			if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken must be false")
			}

			// Volumes: config from the ConfigMap, state and cache on the
			// node, /tmp writable.
			vols := map[string]corev1.Volume{}
			for _, v := range ps.Volumes {
				vols[v.Name] = v
			}
			mounts := map[string]string{}
			for _, m := range c.VolumeMounts {
				if _, ok := vols[m.Name]; !ok {
					t.Errorf("mount %s: no such volume", m.Name)
				}
				mounts[m.MountPath] = m.Name
			}
			for path, want := range map[string]string{"/etc/yedge": "config", "/var/lib/yedge": "state", "/var/cache/yedge": "cache", "/tmp": "tmp"} {
				if mounts[path] != want {
					t.Errorf("%s mounted from %q, want volume %q", path, mounts[path], want)
				}
			}
			if cm := vols["config"].ConfigMap; cm == nil || r.cms[cm.Name] == nil {
				t.Errorf("config volume %+v: no such ConfigMap in the overlay", vols["config"])
			} else if cfg := r.cms[cm.Name].Data["yedge.yaml"]; !strings.Contains(cfg, "listen: 0.0.0.0:9464") || !strings.Contains(cfg, "streams:") {
				t.Errorf("ConfigMap %s: yedge.yaml lacks listen: 0.0.0.0:9464 or streams", cm.Name)
			}
			for _, v := range []string{"state", "cache"} {
				if hp := vols[v].HostPath; hp == nil || hp.Type == nil || *hp.Type != corev1.HostPathDirectory {
					t.Errorf("volume %s: %+v, want a hostPath of type Directory", v, vols[v])
				}
			}
			if vols["tmp"].EmptyDir == nil {
				t.Error("/tmp must be an emptyDir (read-only root file system)")
			}
			var devID bool
			for _, e := range c.Env {
				if e.Name == "YEDGE_DEVICE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
					devID = true
				}
			}
			if !devID {
				t.Error("YEDGE_DEVICE_ID must come from spec.nodeName")
			}

			// Service and PodMonitor select the pods and use the port.
			podLabels := ds.Spec.Template.Labels
			for k, v := range ds.Spec.Selector.MatchLabels {
				if podLabels[k] != v {
					t.Errorf("DaemonSet selector %s=%s does not match the pod template", k, v)
				}
			}
			for k, v := range r.svc.Spec.Selector {
				if podLabels[k] != v {
					t.Errorf("Service selector %s=%s does not match the pods", k, v)
				}
			}
			if len(r.svc.Spec.Ports) != 1 || r.svc.Spec.Ports[0].TargetPort.String() != "metrics" {
				t.Errorf("Service ports %+v: want targetPort metrics", r.svc.Spec.Ports)
			}
			for k, v := range r.pm.Spec.Selector.MatchLabels {
				if podLabels[k] != v {
					t.Errorf("PodMonitor selector %s=%s does not match the pods", k, v)
				}
			}
			eps := r.pm.Spec.PodMetricsEndpoints
			if len(eps) != 1 || eps[0].Port == nil || *eps[0].Port != "metrics" || eps[0].Path != "/metrics" || !eps[0].HonorLabels {
				t.Fatalf("PodMonitor endpoints %+v: want port metrics, /metrics, honorLabels", eps)
			}
			targets := map[string]string{}
			for _, rc := range eps[0].RelabelConfigs {
				if rc.TargetLabel != "" && len(rc.SourceLabels) == 1 {
					targets[rc.TargetLabel] = string(rc.SourceLabels[0])
				}
			}
			for label, src := range map[string]string{
				"device_id": "__meta_kubernetes_pod_node_name",
				"site":      "__meta_kubernetes_node_label_yedge_io_site",
				"zone":      "__meta_kubernetes_node_label_topology_kubernetes_io_zone",
			} {
				if targets[label] != src {
					t.Errorf("PodMonitor: target label %s from %q, want %s", label, targets[label], src)
				}
			}
			if am := r.pm.Spec.AttachMetadata; am == nil || am.Node == nil || !*am.Node {
				t.Error("PodMonitor: attachMetadata.node must be true (node labels give site and zone)")
			}
		})
	}
}

// TestJetsonAndCPUVariants: the jetson overlay runs on NVIDIA's runtime
// with a GPU on arm64 GPU nodes and gets the cameras; the cpu one has
// neither and keeps off GPU nodes.
func TestJetsonAndCPUVariants(t *testing.T) {
	gpu := corev1.ResourceName("nvidia.com/gpu")
	video := corev1.ResourceName("squat.ai/video")

	j := mustRender(t, "jetson")
	ps := j.ds.Spec.Template.Spec
	c := container(t, j.ds)
	if ps.RuntimeClassName == nil || *ps.RuntimeClassName != "nvidia" {
		t.Errorf("jetson: runtimeClassName %v, want nvidia", ps.RuntimeClassName)
	}
	if ps.NodeSelector["kubernetes.io/arch"] != "arm64" || ps.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("jetson: nodeSelector %v", ps.NodeSelector)
	}
	one := resource.MustParse("1")
	for _, res := range []corev1.ResourceName{gpu, video} {
		if q, ok := c.Resources.Limits[res]; !ok || q.Cmp(one) != 0 {
			t.Errorf("jetson: limit %s = %v, want 1", res, q.String())
		}
	}
	// The patch replaced the base's resources wholesale? CPU and memory
	// must still be there (checked in TestOverlays); the GPU request too.
	if q := c.Resources.Requests[gpu]; q.Cmp(one) != 0 {
		t.Errorf("jetson: request %s = %v, want 1", gpu, q.String())
	}
	// The base's mounts survive the strategic merge of the patch's one.
	if len(c.VolumeMounts) != 6 {
		t.Errorf("jetson: %d volume mounts, want 6 (config, state, cache, tmp, argus socket, onnxruntime)", len(c.VolumeMounts))
	}
	// The TensorRT-enabled onnxruntime of the node, read-only, and loaded.
	var ortMount bool
	for _, m := range c.VolumeMounts {
		ortMount = ortMount || (m.MountPath == "/opt/yedge/onnxruntime" && m.ReadOnly)
	}
	var ortEnv bool
	for _, e := range c.Env {
		ortEnv = ortEnv || (e.Name == "YEDGE_ORT_LIB" && e.Value == "/opt/yedge/onnxruntime/libonnxruntime.so.1")
	}
	if !ortMount || !ortEnv {
		t.Errorf("jetson: onnxruntime mount %v, YEDGE_ORT_LIB %v: want the node's TensorRT build", ortMount, ortEnv)
	}

	cpu := mustRender(t, "cpu")
	ps = cpu.ds.Spec.Template.Spec
	c = container(t, cpu.ds)
	if ps.RuntimeClassName != nil {
		t.Errorf("cpu: runtimeClassName %q, want none", *ps.RuntimeClassName)
	}
	for _, res := range []corev1.ResourceName{gpu, video} {
		if _, ok := c.Resources.Limits[res]; ok {
			t.Errorf("cpu: limit %s set", res)
		}
	}
	a := ps.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Fatal("cpu: no required node affinity keeping off GPU nodes")
	}
	term := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(term) != 1 || len(term[0].MatchExpressions) != 1 || term[0].MatchExpressions[0].Key != "nvidia.com/gpu.present" ||
		term[0].MatchExpressions[0].Operator != corev1.NodeSelectorOpDoesNotExist {
		t.Errorf("cpu: node affinity %+v", term)
	}
}

// copyTree copies deploy/kubernetes (without this module) to a temp dir.
func copyTree(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "manifesttest" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestMisspelledFieldsRejected: a copy of the manifests with one field
// misspelled (or mis-cased) fails to render-and-decode, naming the field.
// Plain YAML parsing, and kustomize itself, would accept every one of them.
func TestMisspelledFieldsRejected(t *testing.T) {
	for _, tc := range []struct {
		file, from, to, overlay string
	}{
		{"base/daemonset.yaml", "\n            readOnlyRootFilesystem: true", "\n            readOnlyRootFilesytem: true", "cpu"},
		{"base/daemonset.yaml", "\n            allowPrivilegeEscalation: false", "\n            allowprivilegeescalation: false", "cpu"},
		{"base/daemonset.yaml", "failureThreshold: 120", "failureTreshold: 120", "jetson"},
		{"base/podmonitor.yaml", "honorLabels: true", "honourLabels: true", "cpu"},
		{"base/podmonitor.yaml", "targetLabel: device_id", "target_label: device_id", "cpu"},
		{"base/service.yaml", "clusterIP: None", "clusterIp: None", "cpu"},
		{"components/jetson/daemonset-patch.yaml", "runtimeClassName: nvidia", "runtimeClass: nvidia", "jetson"},
		{"components/cpu/daemonset-patch.yaml", "requiredDuringSchedulingIgnoredDuringExecution:", "requiredDuringScheduling:", "cpu"},
	} {
		t.Run(strings.TrimSpace(tc.to), func(t *testing.T) {
			dir := copyTree(t)
			p := filepath.Join(dir, tc.file)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tc.from) {
				t.Fatalf("%s no longer contains %q: update this test", tc.file, tc.from)
			}
			if err := os.WriteFile(p, []byte(strings.Replace(string(b), tc.from, tc.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			// The unmodified copy renders: the failure is the field's.
			_, err = render(filepath.Join(dir, "overlays", tc.overlay))
			field, _, _ := strings.Cut(strings.TrimSpace(tc.to), ":")
			if err == nil {
				t.Fatalf("%s with %q rendered and decoded without error", tc.file, tc.to)
			}
			t.Logf("rejected: %v", err)
			if !strings.Contains(err.Error(), field) {
				t.Errorf("error does not name %q: %v", field, err)
			}
		})
	}
	// And the pristine copy is accepted (the copy itself is sound).
	if _, err := render(filepath.Join(copyTree(t), "overlays", "cpu")); err != nil {
		t.Fatal(err)
	}
}

// packageVersion is the version of deploy/debian/changelog's first entry:
// make dist tags the image with it.
func packageVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "..", "debian", "changelog"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	_, rest, ok1 := strings.Cut(first, "(")
	v, _, ok2 := strings.Cut(rest, ")")
	if !ok1 || !ok2 || v == "" {
		t.Fatalf("deploy/debian/changelog: no version in %q", first)
	}
	return v
}
