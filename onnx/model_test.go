package onnx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/yedge/yedge/onnx/onnxpb"
)

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notONNX := func(mp *onnxpb.ModelProto) []byte {
		b, err := proto.Marshal(mp)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	noOutputs := smallModel()
	noOutputs.Graph.Output = nil
	noOpset := smallModel()
	noOpset.OpsetImport = nil
	noIR := smallModel()
	noIR.IrVersion = 0
	noGraph := smallModel()
	noGraph.Graph = nil

	tests := []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{"missing", func(*testing.T) string { return filepath.Join(dir, "missing.onnx") }, "no such file"},
		{"directory", func(*testing.T) string { return dir }, ""},
		{"empty", func(*testing.T) string { return write("empty.onnx", nil) }, "file is empty"},
		{"truncated", func(t *testing.T) string {
			data, err := os.ReadFile(realModel(t, "yolov5n.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			return write("truncated.onnx", data[:1000])
		}, "is not an ONNX model"},
		{"truncated small", func(t *testing.T) string {
			data := notONNX(smallModel())
			return write("truncated-small.onnx", data[:len(data)-3])
		}, "is not an ONNX model"},
		{"text", func(*testing.T) string {
			return write("readme.txt", []byte("This is not a model.\nJust some random text, 12345 !@#$%\n"))
		}, "is not an ONNX model"},
		{"no outputs", func(*testing.T) string { return write("noout.onnx", notONNX(noOutputs)) }, "graph has no outputs"},
		{"no opset", func(*testing.T) string { return write("noopset.onnx", notONNX(noOpset)) }, "no opset_import"},
		{"no ir_version", func(*testing.T) string { return write("noir.onnx", notONNX(noIR)) }, "ir_version"},
		{"no graph", func(*testing.T) string { return write("nograph.onnx", notONNX(noGraph)) }, "no graph"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.path(t)
			m, err := Load(p)
			if err == nil {
				t.Fatalf("Load(%q) = %v, want error", p, m)
			}
			if m != nil {
				t.Errorf("Load(%q) returned a model along with error %v", p, err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file %q", err, p)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}

	_, err := Load(filepath.Join(dir, "missing.onnx"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file error %v does not satisfy errors.Is(fs.ErrNotExist)", err)
	}
	if want := `model file "` + filepath.Join(dir, "missing.onnx") + `": no such file`; err.Error() != want {
		t.Errorf("missing file error = %q, want %q", err, want)
	}
}

func TestParseAndMetadata(t *testing.T) {
	data, err := proto.Marshal(smallModel())
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(data, "mem.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != "mem.onnx" {
		t.Errorf("Path = %q", m.Path)
	}
	sum := sha256.Sum256(data)
	if got, want := m.SHA256(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("SHA256 = %s, want digest of the parsed bytes %s", got, want)
	}
	if got := m.Opset(); got != 13 {
		t.Errorf("Opset = %d, want 13", got)
	}
	m.Proto.OpsetImport = []*onnxpb.OperatorSetIdProto{{Domain: "com.microsoft", Version: 1}, {Domain: "ai.onnx", Version: 17}}
	if got := m.Opset(); got != 17 {
		t.Errorf("Opset with ai.onnx domain = %d, want 17", got)
	}

	m.SetMetadata("names", "{0: 'a'}")
	m.SetMetadata("stride", "16")
	m.Proto.MetadataProps = append(m.Proto.MetadataProps, &onnxpb.StringStringEntryProto{Key: "stride", Value: "dup"})
	m.SetMetadata("stride", "8")
	md := m.Metadata()
	if len(md) != 2 || md["stride"] != "8" || md["names"] != "{0: 'a'}" {
		t.Errorf("Metadata = %v", md)
	}
	if n := len(m.Proto.MetadataProps); n != 2 {
		t.Errorf("SetMetadata left %d entries, want 2 (duplicates dropped)", n)
	}
	md["stride"] = "changed"
	if m.Metadata()["stride"] != "8" {
		t.Error("Metadata does not return a copy")
	}

	// A literal Model has no stored digest: SHA256 hashes Marshal.
	lit := &Model{Proto: smallModel()}
	b, err := lit.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sum = sha256.Sum256(b)
	if got := lit.SHA256(); got != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA256 of literal model = %s, want digest of Marshal", got)
	}
	if _, err := (&Model{}).Marshal(); err == nil {
		t.Error("Marshal of empty Model succeeded")
	}
}

func TestMarshalDeterministic(t *testing.T) {
	models := map[string]*Model{
		"small": {Proto: smallModel()},
		"qdq":   {Proto: qdqModel()},
	}
	if _, err := os.Stat(filepath.Join("..", "..", "shared", "models", "yolov5n.onnx")); err == nil {
		m, err := Load(realModel(t, "yolov5n.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		models["yolov5n"] = m
	}
	for name, m := range models {
		a, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two Marshal calls differ", name)
		}
		// Decoding and re-encoding must also be stable.
		m2, err := Parse(a, name)
		if err != nil {
			t.Fatal(err)
		}
		c, err := m2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, c) {
			t.Errorf("%s: Marshal(Parse(Marshal(m))) differs from Marshal(m)", name)
		}
	}
}

// tmpLeftovers lists temporary files WriteFileAtomic may have left in dir.
func tmpLeftovers(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(d.Name(), ".tmp") {
			left = append(left, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

func TestSave(t *testing.T) {
	dir := t.TempDir()
	m := &Model{Proto: smallModel()}
	want, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("round trip", func(t *testing.T) {
		p := filepath.Join(dir, "small.onnx")
		if err := m.Save(p); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("saved bytes differ from Marshal")
		}
		if m.Path != p {
			t.Errorf("Path after Save = %q, want %q", m.Path, p)
		}
		sum := sha256.Sum256(want)
		if m.SHA256() != hex.EncodeToString(sum[:]) {
			t.Error("SHA256 after Save is not the digest of the written bytes")
		}
		back, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		again, err := back.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, want) {
			t.Error("Load(Save(m)).Marshal() differs from m.Marshal()")
		}
		if back.SHA256() != m.SHA256() {
			t.Error("SHA256 of reloaded model differs")
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("saved file mode = %v, want 0644", st.Mode().Perm())
		}
	})

	t.Run("replace existing", func(t *testing.T) {
		p := filepath.Join(dir, "existing.onnx")
		if err := os.WriteFile(p, []byte("old contents that are longer than nothing"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := (&Model{Proto: smallModel()}).Save(p); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Error("existing file was not replaced by the model bytes")
		}
	})

	t.Run("missing directory", func(t *testing.T) {
		sub := filepath.Join(dir, "nope")
		p := filepath.Join(sub, "m.onnx")
		err := (&Model{Proto: smallModel()}).Save(p)
		if err == nil {
			t.Fatal("Save into a missing directory succeeded")
		}
		if !strings.Contains(err.Error(), sub) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("error %q does not name the missing directory %q", err, sub)
		}
		if _, err := os.Stat(sub); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing directory was created or file left behind: %v", err)
		}
	})

	t.Run("parent is a file", func(t *testing.T) {
		file := filepath.Join(dir, "small.onnx")
		err := (&Model{Proto: smallModel()}).Save(filepath.Join(file, "m.onnx"))
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("Save under a regular file: err = %v, want one naming %q", err, file)
		}
	})

	t.Run("rename fails", func(t *testing.T) {
		// The target is a non-empty directory, so the final rename fails
		// after the temporary file has been written.
		p := filepath.Join(dir, "occupied")
		if err := os.MkdirAll(filepath.Join(p, "child"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := (&Model{Proto: smallModel()}).Save(p); err == nil {
			t.Fatal("Save over a non-empty directory succeeded")
		}
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			t.Errorf("target directory was disturbed: %v", err)
		}
	})

	t.Run("unmarshalable model", func(t *testing.T) {
		p := filepath.Join(dir, "bad.onnx")
		bad := &Model{Proto: smallModel()}
		bad.Proto.ProducerName = "\xff\xfe invalid utf-8"
		if err := bad.Save(p); err == nil {
			t.Error("Save of a model with invalid UTF-8 succeeded")
		}
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("failed Save left %s behind", p)
		}
	})

	if left := tmpLeftovers(t, dir); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "report.json")
	for i, data := range [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2, "longer": true}`), {}} {
		if err := WriteFileAtomic(p, data, 0o600); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("write %d: file holds %q, want %q", i, got, data)
		}
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	if left := tmpLeftovers(t, dir); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only report.json", len(entries))
	}
}
