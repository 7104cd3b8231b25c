package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes a man page (section 1) for yedge and each of its
// commands into a folder, from the same command tree and flag help that
// --help prints. make dist ships them in the .deb. Hidden: it is a build
// step, not a user command. The pages' date is $SOURCE_DATE_EPOCH when set,
// so that two builds of one commit write the same pages.
func newManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the man pages of yedge and its commands into DIR",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(c *cobra.Command, args []string) error {
			v, _ := buildVersion()
			h := &doc.GenManHeader{Title: "YEDGE", Section: "1", Source: "yedge " + v, Manual: "yedge manual"}
			if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
				var sec int64
				if _, err := fmt.Sscan(s, &sec); err != nil {
					return withCode(exitUsage, fmt.Errorf("SOURCE_DATE_EPOCH %q: not a number of seconds", s))
				}
				t := time.Unix(sec, 0).UTC()
				h.Date = &t
			}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := c.Root()
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, h, args[0]); err != nil {
				return fmt.Errorf("writing man pages into %s: %w", args[0], err)
			}
			return nil
		},
	}
}
