package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/postprocess"
)

// modelFlags are the flags of commands that run a model.
type modelFlags struct {
	model  string
	imgsz  string
	names  string
	conf   float64
	iou    float64
	maxDet int
	batch  int
}

func (m *modelFlags) register(c *cobra.Command, post postprocess.Options) {
	f := c.Flags()
	f.StringVarP(&m.model, "model", "m", "", "YOLOv5 ONNX model (FP32 or Q/DQ int8)")
	f.StringVar(&m.imgsz, "imgsz", "", "input size for dynamic models: N or HEIGHTxWIDTH, multiples of the stride (default: from the model, else 640)")
	f.StringVar(&m.names, "names", "", "class names file (YAML with names: or one per line); default: model metadata, else COCO-80")
	f.Float64Var(&m.conf, "conf", float64(post.Conf), "confidence threshold (obj x cls)")
	f.Float64Var(&m.iou, "iou", float64(post.IoU), "NMS IoU threshold")
	f.IntVar(&m.maxDet, "max-det", post.MaxDet, "maximum detections per image")
	_ = c.MarkFlagRequired("model")
}

// parseImgsz parses "640" or "320x640" (height x width).
func parseImgsz(s string) (h, w int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	parts := strings.Split(strings.ToLower(s), "x")
	if len(parts) > 2 {
		return 0, 0, fmt.Errorf("--imgsz %q: want N or HEIGHTxWIDTH", s)
	}
	var v [2]int
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 {
			return 0, 0, fmt.Errorf("--imgsz %q: want N or HEIGHTxWIDTH", s)
		}
		v[i] = n
	}
	if len(parts) == 1 {
		v[1] = v[0]
	}
	return v[0], v[1], nil
}

// detectorConfig builds the pipeline configuration from flags.
func (m *modelFlags) detectorConfig(g *globalFlags, post postprocess.Options) (pipeline.Config, error) {
	h, w, err := parseImgsz(m.imgsz)
	if err != nil {
		return pipeline.Config{}, withCode(exitUsage, err)
	}
	post.Conf, post.IoU, post.MaxDet = float32(m.conf), float32(m.iou), m.maxDet
	if err := post.Validate(); err != nil {
		return pipeline.Config{}, withCode(exitUsage, err)
	}
	return pipeline.Config{Model: m.model, Runtime: g.runtimeOptions(), Height: h, Width: w,
		Batch: m.batch, Post: post, NamesFile: m.names}, nil
}
