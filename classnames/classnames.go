// Package classnames is the one parser of class names: the `names:` key of
// a YAML file (a YOLO data.yaml or a names file: a list, or a map of class
// id to name, with an optional `nc`), the `names` metadata that YOLOv5
// writes into its ONNX exports (a Python literal), and plain text files
// with one name per line. Errors name the line at fault.
package classnames

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/yedge/yedge/internal/fsx"
)

// MaxClasses bounds class ids, so that a malformed file cannot make a
// reader allocate without limit.
const MaxClasses = 1 << 20

var (
	dictEntry = regexp.MustCompile(`(\d+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")`)
	listEntry = regexp.MustCompile(`'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"`)
)

// ParseMetadata parses the `names` metadata that YOLOv5 exports: a Python dict
// literal such as {0: 'person', 1: 'bicycle'} or a list ['person', ...].
func ParseMetadata(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "{"):
		m := map[int]string{}
		maxID := -1
		for _, e := range dictEntry.FindAllStringSubmatch(s, -1) {
			id, err := strconv.Atoi(e[1])
			if err != nil || id > MaxClasses {
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

// MaxNames bounds the names of a names file: far more classes than any
// detector has, far fewer than a wrong file (a log, a word list) holds.
const MaxNames = 10000

// LoadFile reads class names from a YAML file with a `names` key (see
// ParseYAML) or from a text file with one name per line, at most
// fsx.MaxNamesBytes and MaxNames of them.
func LoadFile(path string) ([]string, error) {
	data, err := fsx.ReadFile(path, fsx.MaxNamesBytes)
	if err != nil {
		return nil, fmt.Errorf("names file: %w", err)
	}
	if hasNamesKey(data) {
		names, err := ParseYAML(data)
		if err != nil {
			return nil, fmt.Errorf("names file %q: %w", path, err)
		}
		if len(names) > MaxNames {
			return nil, fmt.Errorf("names file %q has %d names, more than %d: is it a names file?", path, len(names), MaxNames)
		}
		return names, nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			if len(out) == MaxNames {
				return nil, fmt.Errorf("names file %q has more than %d names: is it a names file?", path, MaxNames)
			}
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("names file %q has no names", path)
	}
	return out, nil
}

// hasNamesKey reports whether data is a YAML mapping with a names key.
func hasNamesKey(data []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return false
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "names" {
			return true
		}
	}
	return false
}

// ParseYAML extracts class names from a YAML document such as a YOLO
// data.yaml:
// `names` as a list or as a map from class id to name, and/or `nc`. With
// only `nc`, the names are "class0", "class1", ...
func ParseYAML(data []byte) ([]string, error) {
	var doc struct {
		Names yaml.Node `yaml:"names"`
		NC    yaml.Node `yaml:"nc"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	nc := -1
	if doc.NC.Kind != 0 {
		if doc.NC.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: nc must be an integer", doc.NC.Line)
		}
		n, err := strconv.Atoi(doc.NC.Value)
		if err != nil || n < 0 || n > MaxClasses {
			return nil, fmt.Errorf("line %d: nc must be an integer in [0, %d], got %q", doc.NC.Line, MaxClasses, doc.NC.Value)
		}
		nc = n
	}
	var names []string
	switch doc.Names.Kind {
	case 0:
		if nc < 0 {
			return nil, errors.New("neither names nor nc is set")
		}
		names = make([]string, nc)
		for i := range names {
			names[i] = fmt.Sprintf("class%d", i)
		}
		return names, nil
	case yaml.SequenceNode:
		names = make([]string, 0, len(doc.Names.Content))
		for _, n := range doc.Names.Content {
			if n.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: class name must be a scalar", n.Line)
			}
			names = append(names, n.Value)
		}
	case yaml.MappingNode:
		seen := map[int]bool{}
		for i := 0; i+1 < len(doc.Names.Content); i += 2 {
			k, v := doc.Names.Content[i], doc.Names.Content[i+1]
			id, err := strconv.Atoi(k.Value)
			if k.Kind != yaml.ScalarNode || err != nil || id < 0 || id >= MaxClasses {
				return nil, fmt.Errorf("line %d: names key must be a class id in [0, %d), got %q", k.Line, MaxClasses, k.Value)
			}
			if v.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: class name must be a scalar", v.Line)
			}
			if seen[id] {
				return nil, fmt.Errorf("line %d: class id %d listed twice", k.Line, id)
			}
			seen[id] = true
			for len(names) <= id {
				names = append(names, "class"+strconv.Itoa(len(names)))
			}
			names[id] = v.Value
		}
	default:
		return nil, fmt.Errorf("line %d: names must be a list or a map of class id to name", doc.Names.Line)
	}
	if nc >= 0 && nc != len(names) {
		return nil, fmt.Errorf("nc is %d but names lists %d classes", nc, len(names))
	}
	return names, nil
}
