package onnx

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

func FuzzParse(f *testing.F) {
	for _, mp := range []any{smallModel(), qdqModel()} {
		data, err := proto.Marshal(mp.(proto.Message))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		f.Add(data[:len(data)/2])
	}
	f.Add([]byte{})
	f.Add([]byte("not an onnx model"))
	f.Add([]byte{0x08, 0x07})                   // ir_version only
	f.Add([]byte{0x08, 0x07, 0x3a, 0x00})       // ir_version + empty graph
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}) // bad tag
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data, "fuzz.onnx")
		if err != nil {
			if m != nil {
				t.Fatal("Parse returned a model and an error")
			}
			return
		}
		r := Inspect(m)
		_ = r.WriteText(discard{})
		g := m.Graph()
		_ = g.TopoSort()
		for _, n := range g.G.GetNode() {
			for _, in := range n.GetInput() {
				if ct := g.ConstTensor(in); ct != nil {
					_, _ = FloatData(ct)
					_, _ = Int8Data(ct)
					_, _ = Uint8Data(ct)
				}
			}
		}
		if _, err := m.Marshal(); err != nil {
			t.Fatalf("Marshal of a parsed model failed: %v", err)
		}
	})
}

// discard is an io.Writer that drops everything.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
