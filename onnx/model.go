package onnx

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/yedge/yedge/internal/fsx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// Model is a decoded ONNX model together with the file it came from.
type Model struct {
	// Proto is the decoded model. Callers may edit it freely; Marshal and
	// Save serialise whatever it holds at the time of the call.
	Proto *onnxpb.ModelProto
	// Path is the file the model was loaded from or last saved to (for
	// Parse, the name passed by the caller). It is used in error messages
	// and reports.
	Path string

	// digest is the SHA-256 of the bytes the model was decoded from or last
	// written as; nil when unknown (e.g. a Model built as a literal).
	digest []byte
}

// Default-domain names: ONNX treats "" and "ai.onnx" as the same operator set.
const (
	domainDefault = ""
	domainONNX    = "ai.onnx"
)

// isDefaultDomain reports whether d names the standard ONNX operator set.
func isDefaultDomain(d string) bool { return d == domainDefault || d == domainONNX }

// msgError is an error whose message is fixed but which still unwraps to the
// underlying cause, so errors.Is(err, fs.ErrNotExist) keeps working.
type msgError struct {
	msg string
	err error
}

func (e *msgError) Error() string { return e.msg }
func (e *msgError) Unwrap() error { return e.err }

// Load reads and decodes the ONNX model stored at path.
//
// It fails with an error naming path when the file does not exist
// ("model file %q: no such file", which also satisfies
// errors.Is(err, fs.ErrNotExist)), cannot be read, is empty, or is not an ONNX
// model (see [Parse]). Tensors whose data lives in external files are left as
// references; [Inspect] reports them. The SHA-256 of the file bytes is
// recorded and returned by [Model.SHA256].
func Load(path string) (*Model, error) {
	data, err := fsx.ReadFile(path, fsx.MaxModelBytes)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &msgError{msg: fmt.Sprintf("model file %q: no such file", path), err: err}
		}
		return nil, fmt.Errorf("model file %q: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes an ONNX model from data. name identifies the source in error
// messages (usually a file path) and becomes the Model's Path.
//
// Unknown protobuf fields are preserved so that re-marshalling does not lose
// data written by newer ONNX versions. Besides protobuf decoding errors, Parse
// rejects input that decodes but is not plausibly an ONNX model: empty input,
// ir_version <= 0, no graph, no opset_import, or a graph without outputs.
// All such errors read "model %q is not an ONNX model: ...".
func Parse(data []byte, name string) (*Model, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("model %q is not an ONNX model: file is empty", name)
	}
	mp := &onnxpb.ModelProto{}
	if err := (proto.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(data, mp); err != nil {
		return nil, fmt.Errorf("model %q is not an ONNX model: %w", name, err)
	}
	if err := validate(mp); err != nil {
		return nil, fmt.Errorf("model %q is not an ONNX model: %w", name, err)
	}
	sum := sha256.Sum256(data)
	return &Model{Proto: mp, Path: name, digest: sum[:]}, nil
}

// validate performs the cheap structural checks that separate an ONNX model
// from arbitrary bytes that happen to decode as a ModelProto.
func validate(mp *onnxpb.ModelProto) error {
	switch {
	case mp.GetIrVersion() <= 0:
		return fmt.Errorf("ir_version is %d, want > 0", mp.GetIrVersion())
	case mp.GetGraph() == nil:
		return errors.New("no graph")
	case len(mp.GetOpsetImport()) == 0:
		return errors.New("no opset_import")
	case len(mp.GetGraph().GetOutput()) == 0:
		return errors.New("graph has no outputs")
	}
	return nil
}

// Marshal serialises the model deterministically: marshalling the same
// ModelProto twice yields identical bytes.
func (m *Model) Marshal() ([]byte, error) {
	if m == nil || m.Proto == nil {
		return nil, errors.New("marshal model: model is nil")
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Proto)
	if err != nil {
		return nil, fmt.Errorf("marshal model %q: %w", m.Path, err)
	}
	return data, nil
}

// Save marshals the model (see [Model.Marshal]) and writes it to path
// atomically with [WriteFileAtomic] and mode 0644. Readers of path see either
// the old file or the complete new one, never a partial write.
//
// On success m.Path is set to path and [Model.SHA256] reports the digest of
// the written bytes.
func (m *Model) Save(path string) error {
	data, err := m.Marshal()
	if err != nil {
		return fmt.Errorf("save model %q: %w", path, err)
	}
	if err := WriteFileAtomic(path, data, 0o644); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	sum := sha256.Sum256(data)
	m.Path = path
	m.digest = sum[:]
	return nil
}

// WriteFileAtomic writes data to path so that path is replaced all at once.
//
// The data goes to a temporary file ".<base>.*.tmp" in the same directory,
// which is fsynced, closed, given mode perm (exactly; the umask is not
// applied) and renamed over path; the directory is then fsynced where the
// platform allows. On any error the temporary file is removed and path is
// left untouched. If the target directory does not exist the error names
// that directory. A symlink at path is replaced, not followed.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &msgError{msg: fmt.Sprintf("write %q: directory %q does not exist", path, dir), err: err}
	case err != nil:
		return fmt.Errorf("write %q: directory %q: %w", path, dir, err)
	case !st.IsDir():
		return fmt.Errorf("write %q: %q is not a directory", path, dir)
	}

	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %q: create temporary file: %w", path, err)
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				_ = f.Close()
			}
			_ = os.Remove(tmp)
		}
	}()

	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %q: %w", tmp, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %q: chmod: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %q: fsync: %w", tmp, err)
	}
	closed = true
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %q: close: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a completed rename durable on filesystems that need the
// directory fsynced. Failures are ignored: some platforms and filesystems do
// not support syncing directories, and the data itself is already synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// Opset returns the version of the default ONNX operator set ("" or
// "ai.onnx") the model imports, or 0 if it imports none. If the default domain
// is listed more than once the highest version is returned.
func (m *Model) Opset() int64 {
	var v int64
	for _, o := range m.proto().GetOpsetImport() {
		if isDefaultDomain(o.GetDomain()) && o.GetVersion() > v {
			v = o.GetVersion()
		}
	}
	return v
}

// Metadata returns a copy of the model's metadata_props as a map. When a key
// occurs more than once the last value wins.
func (m *Model) Metadata() map[string]string {
	md := make(map[string]string, len(m.proto().GetMetadataProps()))
	for _, p := range m.proto().GetMetadataProps() {
		md[p.GetKey()] = p.GetValue()
	}
	return md
}

// SetMetadata sets metadata_props[key] = value, replacing an existing entry
// (and dropping duplicates of it) or appending a new one.
func (m *Model) SetMetadata(key, value string) {
	if m.Proto == nil {
		m.Proto = &onnxpb.ModelProto{}
	}
	props := m.Proto.MetadataProps[:0]
	found := false
	for _, p := range m.Proto.MetadataProps {
		if p.GetKey() != key {
			props = append(props, p)
			continue
		}
		if !found {
			p.Value = value
			props = append(props, p)
			found = true
		}
	}
	if !found {
		props = append(props, &onnxpb.StringStringEntryProto{Key: key, Value: value})
	}
	m.Proto.MetadataProps = props
}

// SHA256 returns the lowercase hex SHA-256 of the bytes the model was loaded
// from (Load/Parse) or last saved as (Save). Edits made to Proto afterwards
// are not reflected until the next Save. For a Model with no such bytes it
// hashes [Model.Marshal]'s output, and returns "" if marshalling fails.
func (m *Model) SHA256() string {
	if m == nil {
		return ""
	}
	if m.digest != nil {
		return hex.EncodeToString(m.digest)
	}
	data, err := m.Marshal()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Graph returns a [Graph] index over the model's main graph, first giving the
// model an empty ModelProto and/or GraphProto if it lacks one.
func (m *Model) Graph() *Graph {
	if m.Proto == nil {
		m.Proto = &onnxpb.ModelProto{}
	}
	if m.Proto.Graph == nil {
		m.Proto.Graph = &onnxpb.GraphProto{}
	}
	return NewGraph(m.Proto.Graph)
}

// proto returns m.Proto, tolerating a nil receiver.
func (m *Model) proto() *onnxpb.ModelProto {
	if m == nil {
		return nil
	}
	return m.Proto
}
