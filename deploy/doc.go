// Package deploy holds yedge's deployment assets and their checks:
//
//   - yedge.service: the hardened systemd unit (Type=notify, watchdog,
//     DynamicUser, device allow-list for cameras and NVIDIA/Jetson GPUs);
//   - install.sh: installs a built binary, libonnxruntime and the unit on a
//     device; sysroot-arm64.sh: the arm64 sysroot for `make cross-arm64`;
//   - prometheus/: scrape configuration, alerting rules and their unit tests;
//     for a fleet, agent.yml (agent mode on each device, remote write with a
//     WAL) with yedge-device.yml (the device's target labels), and
//     central.yml with fleet-rules.yml (per-device and per-site rules and
//     alerts) and fleet-rules_test.yml;
//   - kubernetes/: kustomize base, components and overlays (jetson, cpu) of
//     a DaemonSet with Service and PodMonitor; their strict-decoding tests
//     are the nested module kubernetes/manifesttest (make k8s-test);
//   - fleettest/: three daemons, their agents and a central Prometheus on
//     loopback (make fleet-test);
//   - grafana/yedge-dashboard.json: the Grafana dashboard;
//   - JETSON.md: the Jetson (JetPack 5/6) guide.
//
// The package has no Go API. Its tests verify the unit with
// systemd-analyze (verify, and security --offline for the exposure score),
// the Prometheus files with promtool, the scripts with shellcheck, and that
// the alerts and the dashboard use only metric names that package metrics
// defines. Tests whose tool is missing are skipped, unless CI=true.
package deploy
