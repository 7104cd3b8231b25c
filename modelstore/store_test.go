package modelstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStore: models by content hash, promotion history and rollback
// target, rejection beside the model, pruning that spares the promoted
// and rollback models, and an index that survives reopening.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Limits{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	add := func(body string) string {
		sha, path, err := s.Add(strings.NewReader(body), "push", "")
		if err != nil {
			t.Fatal(err)
		}
		if path != filepath.Join(dir, "models", sha+".onnx") {
			t.Fatalf("path %s", path)
		}
		return sha
	}
	a, b := add("model a"), add("model b")
	if _, ok := s.Previous(); ok {
		t.Error("a rollback target before any promotion")
	}
	if err := s.Promote(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Promote(b); err != nil {
		t.Fatal(err)
	}
	if p, ok := s.Previous(); !ok || p.SHA256 != a {
		t.Errorf("rollback target %v %v, want %s", p.SHA256, ok, a)
	}
	c := add("model c")
	if err := s.Reject(c, "recall 0.1 < 0.8"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "models", c+".rejected.json")); err != nil || !strings.Contains(string(b), "recall 0.1") {
		t.Errorf("rejection file: %v %s", err, b)
	}
	d := add("model d")
	if err := s.Promote(d); err != nil { // prunes to keep 2: d and b stay (promoted, rollback)
		t.Fatal(err)
	}
	for sha, want := range map[string]bool{a: false, b: true, c: false, d: true} {
		if _, err := os.Stat(s.Path(sha)); (err == nil) != want {
			t.Errorf("%s kept %v, want %v", sha[:8], err == nil, want)
		}
	}
	s2, err := Open(dir, Limits{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := s2.Promoted(); !ok || p.SHA256 != d {
		t.Errorf("promoted after reopening %v, want %s", p.SHA256, d)
	}
}
