// Package manifesttest holds the tests of the Kubernetes manifests in
// deploy/kubernetes: each overlay is rendered with kustomize (krusty, the
// library behind kubectl kustomize) and every object is decoded strictly
// into its Kubernetes API type (k8s.io/api; the Prometheus Operator's types
// for the PodMonitor), so a misspelled field fails.
//
// It is a module of its own so that the Kubernetes and kustomize modules
// stay out of yedge's module and binary. Run: make k8s-test, or
// cd deploy/kubernetes/manifesttest && go test ./...
package manifesttest
