package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
	"gocv.io/x/gocv"

	"github.com/yedge/yedge/onnxrt"
)

// version and revision are set at build time with -ldflags "-X
// main.version=... -X main.revision=...".
var (
	version  = "dev"
	revision = ""
)

// buildVersion returns the version and VCS revision of the binary.
func buildVersion() (string, string) {
	rev := "unknown"
	if revision != "" {
		return version, revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	return version, rev
}

func newVersionCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, onnxruntime and OpenCV versions",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			v, rev := buildVersion()
			w := c.OutOrStdout()
			fmt.Fprintf(w, "yedge %s (commit %s)\n", v, rev)
			if bi, ok := debug.ReadBuildInfo(); ok {
				fmt.Fprintf(w, "go %s\n", bi.GoVersion)
			}
			fmt.Fprintf(w, "opencv %s (gocv %s)\n", gocv.OpenCVVersion(), gocv.Version())
			lib, err := initLibrary(g.ortLib, "")
			if err != nil {
				fmt.Fprintf(w, "onnxruntime: not loaded: %v\n", err)
				return nil
			}
			fmt.Fprintf(w, "onnxruntime %s (%s, from %s)\n", onnxrt.Version(), lib.Path, lib.Origin)
			return nil
		},
	}
}
