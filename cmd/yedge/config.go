package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/yedge/yedge/config"
	"github.com/yedge/yedge/plan"
	"github.com/yedge/yedge/serve"
)

// newConfigCmd is `yedge config`, the configuration file's tools.
func newConfigCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Check yedge serve configuration files",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return withCode(exitUsage, errors.New("config: give a subcommand (check FILE)"))
		},
	}
	c.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a configuration file and report every problem",
		Long: `check parses FILE strictly (unknown keys, wrong types) and validates it:
model files, datasets, token file and sink folders must exist, stream URIs
must be valid sources, values must be in range. Every problem is printed with
its line and key path. It then opens the models in onnxruntime sessions and
checks that they are YOLOv5 detectors, as yedge serve and a reload do. Without FILE, the file yedge serve would use is checked
(/etc/yedge/yedge.yaml, then ./configs/yedge.yaml).

Exit codes: 0 valid, 2 invalid or not found, 3 a model is not a usable
YOLOv5 detector, 4 onnxruntime or the provider unavailable.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			explicit := ""
			if len(args) == 1 {
				explicit = args[0]
			}
			path, err := config.Search(explicit)
			if err != nil {
				return withCode(exitUsage, err)
			}
			return checkConfig(c, g, path)
		},
	})
	return c
}

// checkConfig loads and validates path, then opens its models as the
// daemon (and a reload) would: a config that serve would refuse is refused
// here too.
func checkConfig(c *cobra.Command, g *globalFlags, path string) error {
	d, err := plan.Load(path, g.overrides(c.Flags().Changed))
	if err != nil {
		problems := config.Problems(err)
		if len(problems) == 0 {
			return withCode(exitUsage, fmt.Errorf("%s: %w", path, err))
		}
		w := c.ErrOrStderr()
		for _, p := range problems {
			fmt.Fprintln(w, p.Error())
		}
		noun := "problems"
		if len(problems) == 1 {
			noun = "problem"
		}
		return withCode(exitUsage, fmt.Errorf("%s: %d %s", path, len(problems), noun))
	}
	if err := d.CheckFolders(); err != nil {
		return withCode(exitUsage, fmt.Errorf("%s: %w", path, err))
	}
	if _, err := initLibrary(d.Library, d.LibraryConfig); err != nil {
		return err
	}
	if err := serve.CheckModels(c.Context(), d.Serve, nil); err != nil {
		return modelCode(fmt.Errorf("%s: %w", path, err))
	}
	fmt.Fprintf(c.OutOrStdout(), "%s: ok (%s)\n", path, d.Summary())
	return nil
}
