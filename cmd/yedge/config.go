package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/yedge/yedge/configs"
)

// newConfigCmd is `yedge config`, the configuration file's tools.
func newConfigCmd(_ *globalFlags) *cobra.Command {
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
its line and key path. Without FILE, the file yedge serve would use is checked
(/etc/yedge/yedge.yaml, then ./configs/yedge.yaml).

Exit codes: 0 valid, 2 invalid or not found.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			explicit := ""
			if len(args) == 1 {
				explicit = args[0]
			}
			path, err := configs.Search(explicit)
			if err != nil {
				return withCode(exitUsage, err)
			}
			return checkConfig(c, path)
		},
	})
	return c
}

// checkConfig loads and validates path, printing a summary or every problem.
func checkConfig(c *cobra.Command, path string) error {
	cfg, err := configs.Load(path)
	if err != nil {
		problems := configs.Problems(err)
		if len(problems) == 0 {
			return withCode(exitUsage, err)
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
	fmt.Fprintf(c.OutOrStdout(), "%s: ok (%s)\n", path, summary(cfg))
	return nil
}

// summary describes a valid configuration in one line.
func summary(cfg *configs.Config) string {
	var b strings.Builder
	n := len(cfg.Streams)
	fmt.Fprintf(&b, "%d stream", n)
	if n != 1 {
		b.WriteString("s")
	}
	fmt.Fprintf(&b, ", model %s", cfg.Model.FP32)
	if q := cfg.Model.Quantize; q != nil {
		fmt.Fprintf(&b, ", int8 quantized at start-up into %s (target %s, method %s)", q.CacheDir, q.Target, q.Method)
	} else {
		fmt.Fprintf(&b, ", int8 %s", cfg.Model.INT8)
	}
	fmt.Fprintf(&b, ", provider %s, listen %s", cfg.Provider.Name, cfg.Listen)
	return b.String()
}
