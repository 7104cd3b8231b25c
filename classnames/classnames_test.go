package classnames

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseMetadata(t *testing.T) {
	got, err := ParseMetadata("{0: 'person', 1: \"bicycle\", 3: 'it''s'}")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] != "person" || got[1] != "bicycle" || got[2] != "class2" {
		t.Errorf("got %q", got)
	}
	if got, _ := ParseMetadata("['a', 'b']"); len(got) != 2 || got[1] != "b" {
		t.Errorf("list: %q", got)
	}
	for _, bad := range []string{"", "person", "{}", "[]", "{99999999999: 'x'}"} {
		if _, err := ParseMetadata(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestLoadFile(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
		err        string
	}{
		{"yaml list", "names: [a, b]\n", []string{"a", "b"}, ""},
		{"yaml map", "names:\n  0: a\n  2: c\n", []string{"a", "class1", "c"}, ""},
		{"data.yaml with nc", "nc: 2\nnames: [a, b]\n", []string{"a", "b"}, ""},
		{"nc mismatch", "nc: 3\nnames: [a, b]\n", nil, "nc is 3 but names lists 2"},
		{"duplicate id", "names:\n  0: a\n  0: b\n", nil, "line 3"},
		{"bad id", "names:\n  -1: a\n", nil, "line 2: names key must be a class id"},
		{"text", "person\n\nbicycle\n", []string{"person", "bicycle"}, ""},
		{"empty", "\n\n", nil, "has no names"},
	} {
		p := filepath.Join(t.TempDir(), "names.yaml")
		if err := os.WriteFile(p, []byte(tc.data), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadFile(p)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}
