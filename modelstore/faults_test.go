package modelstore

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// files lists the store's model files (not hidden, not records).
func files(t *testing.T, dir string) []string {
	t.Helper()
	fs, err := filepath.Glob(filepath.Join(dir, "models", "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// TestKeepHoldsAtAllTimes: 20 pushed models that are never promoted
// (rejected, failed) leave at most keep models in the store, files and
// index alike.
func TestKeepHoldsAtAllTimes(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Limits{Keep: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		sha, _, err := s.Add(bytes.NewReader([]byte(strings.Repeat("m", i+1))), "push", "")
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := s.Reject(sha, "canary failed"); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(s.Snapshot().Models); n > 3 {
			t.Fatalf("after push %d: %d models indexed, keep 3", i+1, n)
		}
	}
	if n := len(files(t, dir)); n != 3 {
		t.Errorf("%d model files, want 3", n)
	}
	recs, _ := filepath.Glob(filepath.Join(dir, "models", "*.rejected.json"))
	if len(recs) > 3 {
		t.Errorf("%d rejection records left for 3 models", len(recs))
	}
}

// TestOpenRemovesLeftovers: a write a crash interrupted (kill -9 during a
// push) leaves .incoming-* and .tmp-* files; the next Open removes them
// and says so.
func TestOpenRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Limits{Keep: 5}); err != nil {
		t.Fatal(err)
	}
	left := []string{filepath.Join(dir, "models", ".incoming-123"), filepath.Join(dir, ".tmp-456")}
	for _, f := range left {
		if err := os.WriteFile(f, []byte("half a model"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir, Limits{Keep: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range left {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left in place", f)
		}
	}
	if r := s.Repairs(); len(r) != 2 || !strings.Contains(r[0], "interrupted write") {
		t.Errorf("Repairs = %q", r)
	}
}

// TestOpenRebuildsDamagedIndex: a damaged index.json is kept aside and
// rebuilt from the model files whose content matches their name; a file
// that does not match is not indexed (and removed).
func TestOpenRebuildsDamagedIndex(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Limits{Keep: 5})
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := s.Add(bytes.NewReader([]byte("model a")), "push", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Add(bytes.NewReader([]byte("model b")), "push", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Promote(b); err != nil {
		t.Fatal(err)
	}
	bogus := filepath.Join(dir, "models", strings.Repeat("0", 64)+".onnx")
	if err := os.WriteFile(bogus, []byte("not what its name says"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{"models": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Limits{Keep: 5})
	if err != nil {
		t.Fatalf("Open with a damaged index: %v", err)
	}
	var got []string
	for _, e := range s.Snapshot().Models {
		got = append(got, e.SHA256)
	}
	if len(got) != 2 || !strings.Contains(strings.Join(got, " "), a) || !strings.Contains(strings.Join(got, " "), b) {
		t.Errorf("rebuilt index %v, want %s and %s", got, a, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json.damaged")); err != nil {
		t.Errorf("the damaged index was not kept: %v", err)
	}
	if r := s.Repairs(); len(r) != 2 || !strings.Contains(r[0], "rebuilt the index from 2 verified models") ||
		!strings.Contains(r[1], "a model the index does not list") {
		t.Errorf("Repairs = %q", r)
	}
	if _, err := os.Stat(bogus); err == nil {
		t.Error("the model file whose content does not match its name is still there")
	}
}

// TestOpenRemovesUnlistedModels: a model file that reached the store but
// not its index (a crash between the two) is removed at the next Open;
// the user's own models in the same folder (the packages keep
// /var/lib/yedge/models/yolov5n.onnx there) are not the store's, with an
// intact index or a damaged one.
func TestOpenRemovesUnlistedModels(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Limits{Keep: 5})
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := s.Add(bytes.NewReader([]byte("model a")), "push", "")
	if err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(dir, "models", strings.Repeat("1", 64)+".onnx")
	if err := os.WriteFile(orphan, []byte("model b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Limits{Keep: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Error("the unlisted model file is still there")
	}
	if _, err := os.Stat(s.Path(kept)); err != nil {
		t.Errorf("the listed model is gone: %v", err)
	}

	var users []string
	for _, name := range []string{"yolov5n.onnx", "yolov5n-int8.onnx", strings.Repeat("A", 64) + ".onnx", strings.Repeat("1", 63) + ".onnx"} {
		p := filepath.Join(dir, "models", name)
		if err := os.WriteFile(p, []byte("the user's model"), 0o644); err != nil {
			t.Fatal(err)
		}
		users = append(users, p)
	}
	for _, index := range []string{"intact", "damaged"} {
		if index == "damaged" {
			if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte("{"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(dir, Limits{Keep: 5})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range users {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("Open with an %s index removed the user's %s: %v", index, filepath.Base(p), err)
			}
		}
		if got := s.Snapshot().Models; len(got) != 1 || got[0].SHA256 != kept {
			t.Errorf("Open with an %s index: models %+v, want only %s", index, got, kept)
		}
	}
}

// TestAddNoOrphanWhenIndexFails: a model whose index entry cannot be
// written (here: index.json is a folder) is not left in the store.
func TestAddNoOrphanWhenIndexFails(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Limits{Keep: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "index.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(bytes.NewReader([]byte("model")), "push", ""); err == nil {
		t.Fatal("Add succeeded with an index that cannot be written")
	}
	if f := files(t, dir); len(f) != 0 {
		t.Errorf("model files left without an index entry: %v", f)
	}
	inc, _ := filepath.Glob(filepath.Join(dir, "models", ".incoming-*"))
	if len(inc) != 0 {
		t.Errorf("temporary files left: %v", inc)
	}
}

// TestMaxBytesHolds: the models' total size stays within MaxBytes after
// each addition (the model just added is kept, whatever its size).
func TestMaxBytesHolds(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Limits{Keep: 100, MaxBytes: 10 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		body := bytes.Repeat([]byte{byte(i)}, 3<<10)
		if _, _, err := s.Add(bytes.NewReader(body), "push", ""); err != nil {
			t.Fatal(err)
		}
		var total int64
		for _, f := range files(t, dir) {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			total += fi.Size()
		}
		if total > 10<<10 {
			t.Fatalf("after push %d: %d bytes of models, max 10 KiB", i+1, total)
		}
	}
	if n := len(s.Snapshot().Models); n != 3 {
		t.Errorf("%d models of 3 KiB under 10 KiB, want 3", n)
	}
}
