package postprocess

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
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

var (
	dictEntry = regexp.MustCompile(`(\d+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")`)
	listEntry = regexp.MustCompile(`'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"`)
)

// ParseNames parses the `names` metadata that YOLOv5 exports: a Python dict
// literal such as {0: 'person', 1: 'bicycle'} or a list ['person', ...].
func ParseNames(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "{"):
		m := map[int]string{}
		maxID := -1
		for _, e := range dictEntry.FindAllStringSubmatch(s, -1) {
			id, err := strconv.Atoi(e[1])
			if err != nil || id > 100000 {
				return nil, fmt.Errorf("names: bad class id %q", e[1])
			}
			m[id] = e[2] + e[3]
			maxID = max(maxID, id)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("names: no entries in %.40q", s)
		}
		out := make([]string, maxID+1)
		for i := range out {
			if n, ok := m[i]; ok {
				out[i] = n
			} else {
				out[i] = "class" + strconv.Itoa(i)
			}
		}
		return out, nil
	case strings.HasPrefix(s, "["):
		var out []string
		for _, e := range listEntry.FindAllStringSubmatch(s, -1) {
			out = append(out, e[1]+e[2])
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("names: no entries in %.40q", s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("names: want a dict or list literal, got %.40q", s)
}

// LoadNamesFile reads class names from a YAML file with a `names` key (a
// list or an id->name map, as in a YOLO data.yaml) or from a text file with
// one name per line.
func LoadNamesFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("names file: %w", err)
	}
	var doc struct {
		Names yaml.Node `yaml:"names"`
	}
	if yaml.Unmarshal(data, &doc) == nil && doc.Names.Kind != 0 {
		var list []string
		if err := doc.Names.Decode(&list); err == nil {
			return list, nil
		}
		var m map[int]string
		if err := doc.Names.Decode(&m); err == nil && len(m) > 0 {
			ids := make([]int, 0, len(m))
			for k := range m {
				if k < 0 || k > 100000 {
					return nil, fmt.Errorf("names file %q: bad class id %d", path, k)
				}
				ids = append(ids, k)
			}
			sort.Ints(ids)
			out := make([]string, ids[len(ids)-1]+1)
			for i := range out {
				out[i] = "class" + strconv.Itoa(i)
			}
			for k, v := range m {
				out[k] = v
			}
			return out, nil
		}
		return nil, fmt.Errorf("names file %q: `names` must be a list or a map of id to name", path)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("names file %q has no names", path)
	}
	return out, nil
}

// ResolveNames picks class names: the model's `names` metadata, else the
// names file, else COCO-80 (when the model has 80 classes) or class<N>.
// It returns the names and where they came from.
func ResolveNames(metadata map[string]string, namesFile string, classes int) ([]string, string, error) {
	if namesFile != "" {
		n, err := LoadNamesFile(namesFile)
		if err != nil {
			return nil, "", err
		}
		if len(n) < classes {
			return nil, "", fmt.Errorf("names file %q has %d names, the model has %d classes", namesFile, len(n), classes)
		}
		return n, namesFile, nil
	}
	if s, ok := metadata["names"]; ok {
		if n, err := ParseNames(s); err == nil && len(n) >= classes {
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
