// Package modelstore is the daemon's model store: the int8 models it makes
// (quantization at start-up) or receives (POST /models, a reload), named
// by content hash in <state_dir>/models/<sha256>.onnx, with a small JSON
// index (index.json) of where each came from, the promotion history and
// the rejections with their reasons (also written beside the model as
// <sha256>.rejected.json). The last Keep models are kept; the serving and
// the last promoted ones never go. It is safe for concurrent use.
package modelstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/yedge/yedge/internal/fsx"
)

// Entry is one model of the store.
type Entry struct {
	// SHA256 is the hash of the file's content, and its name.
	SHA256 string `json:"sha256"`
	// Source says where it came from: quantize, push, reload.
	Source string `json:"source"`
	// MadeFrom is, for a model quantized by the daemon, the key of the
	// FP32 model and options it was made from ("" otherwise).
	MadeFrom string `json:"made_from,omitempty"`
	// Added is when it entered the store.
	Added time.Time `json:"added"`
	// Promoted is when it last passed a canary and served (zero: never).
	Promoted time.Time `json:"promoted,omitzero"`
	// Rejected is why its canary failed ("" : it did not).
	Rejected string `json:"rejected,omitempty"`
}

// Index is index.json.
type Index struct {
	// Models are the models in the store, oldest first.
	Models []Entry `json:"models"`
	// History lists the promoted models' hashes, oldest first; the last
	// is the promoted one.
	History []string `json:"history"`
}

// Limits bound a store; the promoted model, the one before it and the
// model being added are kept beyond them.
type Limits struct {
	// Keep is the number of models kept (at least 1).
	Keep int
	// MaxBytes bounds the models' total size on disk (0: no bound).
	MaxBytes int64
}

// Store is a model store in a folder.
type Store struct {
	dir  string
	keep int
	max  int64
	idx  Index
	// opened says what Open repaired: leftovers of interrupted writes
	// removed, an index rebuilt.
	opened []string
}

// mu serializes every store operation in the process; each one reads the
// index again, so that two Store values on one folder (the command's and
// the daemon's) stay consistent.
var mu sync.Mutex

// Open opens (creating) the store in dir, within the limits l. It
// removes the leftovers of writes a crash interrupted (.incoming-* and
// .tmp-* files, model files the index does not list), rebuilds an index that cannot be read from the model
// files whose content matches their name (the damaged index is kept
// beside it as index.json.damaged), and applies the keep limit; Repairs
// says what it did.
func Open(dir string, l Limits) (*Store, error) {
	s := &Store{dir: dir, keep: max(l.Keep, 1), max: max(l.MaxBytes, 0)}
	if err := os.MkdirAll(filepath.Join(dir, "models"), 0o755); err != nil {
		return nil, fmt.Errorf("model store: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, pattern := range []string{filepath.Join(dir, "models", ".incoming-*"), filepath.Join(dir, ".tmp-*"), filepath.Join(dir, "models", ".tmp-*")} {
		left, _ := filepath.Glob(pattern)
		for _, f := range left {
			if err := os.Remove(f); err == nil {
				s.opened = append(s.opened, "removed "+f+", left by an interrupted write")
			}
		}
	}
	if err := s.load(); err != nil {
		if !errors.Is(err, errDamaged) {
			return nil, err
		}
		if err := s.rebuild(err); err != nil {
			return nil, err
		}
	}
	// A model file the index does not list is what a crash left between
	// the rename and the index write: not kept. Only files named by a
	// content hash are the store's: a user's own model in the same folder
	// (the packages' /var/lib/yedge/models/yolov5n.onnx) is never touched.
	listed := map[string]bool{}
	for _, e := range s.idx.Models {
		listed[e.SHA256] = true
	}
	for _, f := range storeFiles(dir) {
		if sha := strings.TrimSuffix(filepath.Base(f), ".onnx"); !listed[sha] {
			if err := os.Remove(f); err == nil {
				_ = os.Remove(filepath.Join(dir, "models", sha+".rejected.json"))
				s.opened = append(s.opened, "removed "+f+", a model the index does not list")
			}
		}
	}
	before := len(s.idx.Models)
	s.prune("")
	if len(s.idx.Models) < before {
		if err := s.save(); err != nil {
			return nil, fmt.Errorf("model store: %w", err)
		}
	}
	return s, nil
}

// Repairs lists what Open repaired, for the caller to log.
func (s *Store) Repairs() []string { return slices.Clone(s.opened) }

// errDamaged is wrapped by load's error for an index that is not JSON.
var errDamaged = errors.New("damaged index")

// load reads the index (none yet: empty).
func (s *Store) load() error {
	s.idx = Index{}
	b, err := fsx.ReadFile(s.indexPath(), fsx.MaxIndexBytes)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("model store: %w", err)
	default:
		if err := json.Unmarshal(b, &s.idx); err != nil {
			s.idx = Index{}
			return fmt.Errorf("model store %s: %w: %w", s.indexPath(), errDamaged, err)
		}
	}
	return nil
}

// rebuild replaces a damaged index (kept as index.json.damaged) with one
// of the model files whose SHA-256 matches their name, oldest first; the
// promotion history is lost (nothing is promoted until a canary passes).
func (s *Store) rebuild(cause error) error {
	if err := os.Rename(s.indexPath(), s.indexPath()+".damaged"); err != nil {
		return fmt.Errorf("model store: %w (and keeping it aside failed: %w)", cause, err)
	}
	files := storeFiles(s.dir)
	type found struct {
		e  Entry
		at time.Time
	}
	var ok []found
	for _, f := range files {
		sha := strings.TrimSuffix(filepath.Base(f), ".onnx")
		got, err := fileSHA256(f)
		fi, serr := os.Stat(f)
		if err != nil || serr != nil || got != sha {
			continue // not verifiable: left alone, not indexed
		}
		ok = append(ok, found{Entry{SHA256: sha, Source: "recovered", Added: fi.ModTime().UTC()}, fi.ModTime()})
	}
	slices.SortFunc(ok, func(a, b found) int { return a.at.Compare(b.at) })
	for _, f := range ok {
		s.idx.Models = append(s.idx.Models, f.e)
	}
	if err := s.save(); err != nil {
		return fmt.Errorf("model store: rebuilding the index: %w", err)
	}
	s.opened = append(s.opened, fmt.Sprintf("rebuilt the index from %d verified models (%v; the damaged one kept as %s)",
		len(ok), cause, filepath.Base(s.indexPath())+".damaged"))
	return nil
}

// storeFiles lists the model files of the store in dir: those named
// <sha256>.onnx (64 lower-case hex digits). Other files in the folder are
// not the store's.
func storeFiles(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "models", "*.onnx"))
	return slices.DeleteFunc(files, func(f string) bool {
		return !isSHA256(strings.TrimSuffix(filepath.Base(f), ".onnx"))
	})
}

// isSHA256 reports whether s is a hex SHA-256 as the store writes it.
func isSHA256(s string) bool {
	if len(s) != sha256.Size*2 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

// fileSHA256 is the hex SHA-256 of a file's content.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lock takes the store lock and reads the index again.
func (s *Store) lock() error {
	mu.Lock()
	if err := s.load(); err != nil {
		mu.Unlock()
		return err
	}
	return nil
}

// Dir is the store's folder.
func (s *Store) Dir() string { return s.dir }

func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }

// Path is the file of a model.
func (s *Store) Path(sha string) string { return filepath.Join(s.dir, "models", sha+".onnx") }

// Add copies r into the store atomically (a temporary file renamed into
// place) and records it; a model already there is only recorded again.
// It returns the content hash and the file.
func (s *Store) Add(r io.Reader, source, madeFrom string) (sha, path string, err error) {
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "models"), ".incoming-*")
	if err != nil {
		return "", "", fmt.Errorf("model store: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	if _, err = io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		tmp.Close()
		return "", "", err // the reader's error, or the store's (*fs.PathError)
	}
	if err = tmp.Sync(); err != nil {
		tmp.Close()
		return "", "", fmt.Errorf("model store: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return "", "", fmt.Errorf("model store: %w", err)
	}
	sha = hex.EncodeToString(h.Sum(nil))
	path = s.Path(sha)
	// The rename and the index entry happen under the store lock, so that
	// no Open (which removes model files the index does not list) runs
	// between them.
	if err = s.lock(); err != nil {
		return "", "", err
	}
	defer mu.Unlock()
	_, statErr := os.Stat(path)
	existed := statErr == nil
	// A new model that cannot be indexed is not kept: no file in the
	// store without its entry.
	unkeep := func() {
		if !existed {
			_ = os.Remove(path)
		}
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return "", "", fmt.Errorf("model store: %w", err)
	}
	if err = syncDir(filepath.Dir(path)); err != nil {
		unkeep()
		return "", "", fmt.Errorf("model store: %w", err)
	}
	if i := s.find(sha); i >= 0 {
		if madeFrom != "" {
			s.idx.Models[i].MadeFrom = madeFrom
		}
	} else {
		s.idx.Models = append(s.idx.Models, Entry{SHA256: sha, Source: source, MadeFrom: madeFrom, Added: time.Now().UTC()})
	}
	// The limit holds at all times, rejected and failed models included,
	// not only once a model is promoted.
	s.prune(sha)
	if err = s.save(); err != nil {
		unkeep()
		return "", "", fmt.Errorf("model store: writing the index: %w", err)
	}
	return sha, path, nil
}

// Remove deletes sha from the store (its file, its rejection record and
// its index entry): a model refused before it was ever offered.
func (s *Store) Remove(sha string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer mu.Unlock()
	if i := s.find(sha); i >= 0 {
		s.idx.Models = slices.Delete(s.idx.Models, i, i+1)
	}
	_ = os.Remove(s.Path(sha))
	_ = os.Remove(filepath.Join(s.dir, "models", sha+".rejected.json"))
	return s.save()
}

// AddFile adds a file (see Add).
func (s *Store) AddFile(file, source, madeFrom string) (sha, path string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	return s.Add(f, source, madeFrom)
}

func (s *Store) find(sha string) int {
	return slices.IndexFunc(s.idx.Models, func(e Entry) bool { return e.SHA256 == sha })
}

// Promote records that sha passed its canary and serves, then prunes.
func (s *Store) Promote(sha string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer mu.Unlock()
	i := s.find(sha)
	if i < 0 {
		return fmt.Errorf("model store: no model %s", sha)
	}
	s.idx.Models[i].Promoted, s.idx.Models[i].Rejected = time.Now().UTC(), ""
	s.idx.History = append(s.idx.History, sha)
	if n := len(s.idx.History); n > 100 {
		s.idx.History = s.idx.History[n-100:]
	}
	s.prune(sha)
	return s.save()
}

// Reject records why sha failed its canary; the model stays on disk with
// <sha>.rejected.json beside it.
func (s *Store) Reject(sha, reason string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer mu.Unlock()
	i := s.find(sha)
	if i < 0 {
		return fmt.Errorf("model store: no model %s", sha)
	}
	s.idx.Models[i].Rejected = reason
	b, _ := json.MarshalIndent(struct {
		SHA256 string    `json:"sha256"`
		At     time.Time `json:"at"`
		Reason string    `json:"reason"`
	}{sha, time.Now().UTC(), reason}, "", "  ")
	if err := writeAtomic(filepath.Join(s.dir, "models", sha+".rejected.json"), b); err != nil {
		return err
	}
	return s.save()
}

// Promoted returns the promoted model (the last of the history).
func (s *Store) Promoted() (Entry, bool) {
	if s.lock() != nil {
		return Entry{}, false
	}
	defer mu.Unlock()
	return s.promoted(0)
}

// Previous returns the model promoted before the current one (a
// different model), for a rollback.
func (s *Store) Previous() (Entry, bool) {
	if s.lock() != nil {
		return Entry{}, false
	}
	defer mu.Unlock()
	cur, ok := s.promoted(0)
	if !ok {
		return Entry{}, false
	}
	for k := 1; ; k++ {
		e, ok := s.promoted(k)
		if !ok {
			return Entry{}, false
		}
		if e.SHA256 != cur.SHA256 {
			if _, err := os.Stat(s.Path(e.SHA256)); err == nil {
				return e, true
			}
		}
	}
}

// promoted returns the k-th last promoted model.
func (s *Store) promoted(k int) (Entry, bool) {
	h := s.idx.History
	if k >= len(h) {
		return Entry{}, false
	}
	i := s.find(h[len(h)-1-k])
	if i < 0 {
		return Entry{}, false
	}
	return s.idx.Models[i], true
}

// Check reads the index as every operation does, and returns its error:
// an index damaged or made unreadable while the store is open (the next
// Open rebuilds a damaged one).
func (s *Store) Check() error {
	if err := s.lock(); err != nil {
		return err
	}
	mu.Unlock()
	return nil
}

// Snapshot returns a copy of the index.
func (s *Store) Snapshot() Index {
	if s.lock() != nil {
		return Index{}
	}
	defer mu.Unlock()
	return Index{Models: slices.Clone(s.idx.Models), History: slices.Clone(s.idx.History)}
}

// prune deletes the oldest models beyond the limits, never the promoted one,
// the one before it (the rollback target) or protect.
func (s *Store) prune(protect string) {
	keepSet := map[string]bool{protect: true}
	for k := 0; k < 2; k++ {
		if e, ok := s.promoted(k); ok {
			keepSet[e.SHA256] = true
		}
	}
	for len(s.idx.Models) > s.keep || (s.max > 0 && s.bytes() > s.max) {
		i := slices.IndexFunc(s.idx.Models, func(e Entry) bool { return !keepSet[e.SHA256] })
		if i < 0 {
			return
		}
		sha := s.idx.Models[i].SHA256
		_ = os.Remove(s.Path(sha))
		_ = os.Remove(filepath.Join(s.dir, "models", sha+".rejected.json"))
		s.idx.Models = slices.Delete(s.idx.Models, i, i+1)
	}
}

// bytes is the models' total size on disk.
func (s *Store) bytes() int64 {
	var n int64
	for _, e := range s.idx.Models {
		if fi, err := os.Stat(s.Path(e.SHA256)); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Prune applies the limits now, never deleting protect.
func (s *Store) Prune(protect string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer mu.Unlock()
	s.prune(protect)
	return s.save()
}

func (s *Store) save() error {
	b, err := json.MarshalIndent(s.idx, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(s.indexPath(), b)
}

// writeAtomic writes a file through a temporary file, synced, renamed
// into place, and the folder synced: after a crash the file is the old
// one or the new one, whole.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
