package postprocess

import (
	"fmt"
	"strconv"

	"github.com/yedge/yedge/classnames"
)

// COCO80 are the 80 COCO class names in YOLOv5 order.
var COCO80 = []string{
	"person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
	"fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
	"elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
	"skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
	"tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
	"sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
	"potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
	"cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
	"scissors", "teddy bear", "hair drier", "toothbrush",
}

// ResolveNames picks class names: the model's `names` metadata, else the
// names file, else COCO-80 (when the model has 80 classes) or class<N>.
// It returns the names and where they came from.
func ResolveNames(metadata map[string]string, namesFile string, classes int) ([]string, string, error) {
	if namesFile != "" {
		n, err := classnames.LoadFile(namesFile)
		if err != nil {
			return nil, "", err
		}
		if len(n) != classes {
			return nil, "", fmt.Errorf("names file %q has %d names, the model has %d classes: give one name per class", namesFile, len(n), classes)
		}
		return n, namesFile, nil
	}
	if s, ok := metadata["names"]; ok {
		if n, err := classnames.ParseMetadata(s); err == nil && len(n) >= classes {
			return n, "model metadata", nil
		}
	}
	if classes == len(COCO80) {
		return COCO80, "COCO-80", nil
	}
	out := make([]string, classes)
	for i := range out {
		out[i] = "class" + strconv.Itoa(i)
	}
	return out, "generic", nil
}

// Name returns names[c] or class<c>.
func Name(names []string, c int) string {
	if c >= 0 && c < len(names) {
		return names[c]
	}
	return "class" + strconv.Itoa(c)
}
