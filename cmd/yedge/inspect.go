package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/quant"
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
			var placement *quant.PlacementReport
			if quant.IsQDQ(m) {
				p := quant.CheckPlacement(m)
				placement = &p
			}
			qinfo := m.Metadata()[quant.MetadataKey]
			if jsonOut {
				e := json.NewEncoder(c.OutOrStdout())
				e.SetIndent("", "  ")
				return e.Encode(struct {
					onnx.Report
					Placement *quant.PlacementReport `json:"placement,omitempty"`
				}{r, placement})
			}
			if err := r.WriteText(c.OutOrStdout()); err != nil {
				return err
			}
			if qinfo != "" {
				fmt.Fprintf(c.OutOrStdout(), "quantized by: yedge %s\n", qinfo)
			}
			if placement != nil {
				return placement.WriteText(c.OutOrStdout())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&jsonOut, "json", false, "print machine-readable JSON")
	return c
}
