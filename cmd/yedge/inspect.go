package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/yedge/yedge/onnx"
)

func newInspectCmd(g *globalFlags) *cobra.Command {
	var jsonOut bool
	c := &cobra.Command{
		Use:   "inspect MODEL",
		Short: "Show a model's inputs, outputs, opset, metadata, ops and quantization",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := onnx.Load(args[0])
			if err != nil {
				return withCode(exitModel, err)
			}
			r := onnx.Inspect(m)
			if jsonOut {
				e := json.NewEncoder(c.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(r)
			}
			return r.WriteText(c.OutOrStdout())
		},
	}
	c.Flags().BoolVar(&jsonOut, "json", false, "print machine-readable JSON")
	return c
}
