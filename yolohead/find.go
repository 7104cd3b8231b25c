package yolohead

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/yedge/yedge/onnx"
	"github.com/yedge/yedge/onnx/onnxpb"
)

// Level is one Detect level as found in the graph.
type Level struct {
	// Tensor is the tensor to expose: the value the level's first Reshape
	// received ([b, NA*NO, ny, nx], the head Conv's output or the
	// DequantizeLinear after it in a Q/DQ model).
	Tensor string
	// NA is the number of anchors and NO the values per anchor (5 + classes).
	NA, NO int
	// Anchors are the anchor sizes (width, height) in input pixels.
	Anchors [][2]float32
	// Stride is the level's stride in input pixels.
	Stride float32
	// GridOffset is the offset baked into the graph's grid: a cell's centre
	// is (s*2 + x + GridOffset) * Stride (-0.5 in YOLOv5 v6.1 and later).
	GridOffset float32
	// NY and NX are the grid size when the graph fixes it (a constant
	// grid); 0 when the grid is computed at run time.
	NY, NX int
}

// Head is a recognised YOLOv5 Detect head.
type Head struct {
	// Output is the graph output the head decodes into ([b, N, NO]).
	Output string
	// Levels are the levels in output row order.
	Levels []Level
}

// ErrNotDetect is wrapped by every error Find returns for a model whose
// output is not produced by a YOLOv5 Detect head.
var ErrNotDetect = errors.New("not a YOLOv5 Detect head")

// notDetect returns an error wrapping ErrNotDetect with a reason.
func notDetect(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotDetect, fmt.Sprintf(format, args...))
}

// Find recognises the Detect head that produces m's float output [b, N,
// 5+classes]. Models that do not match get an error wrapping ErrNotDetect
// with the reason.
func Find(m *onnx.Model) (*Head, error) {
	g := m.Graph()
	out, err := decodedOutput(g)
	if err != nil {
		return nil, err
	}
	cat := g.Producer(out)
	if !isOp(cat, "Concat") || !axisIs(cat, 1, 3) {
		return nil, notDetect("output %s is not a Concat of levels on axis 1", out)
	}
	h := &Head{Output: out}
	for i, in := range cat.GetInput() {
		lv, err := findLevel(g, in)
		if err != nil {
			return nil, fmt.Errorf("%w (level %d)", err, i)
		}
		if len(h.Levels) > 0 && (lv.NO != h.Levels[0].NO) {
			return nil, notDetect("level %d has %d values per anchor, level 0 has %d", i, lv.NO, h.Levels[0].NO)
		}
		h.Levels = append(h.Levels, lv)
	}
	if err := checkStrides(g, h); err != nil {
		return nil, err
	}
	return h, nil
}

// decodedOutput returns the one float graph output of rank 3 (or unknown
// rank).
func decodedOutput(g *onnx.Graph) (string, error) {
	var outs []string
	for _, o := range g.G.GetOutput() {
		tt := o.GetType().GetTensorType()
		if tt == nil || tt.GetElemType() != int32(onnxpb.TensorProto_FLOAT) {
			continue
		}
		if s := tt.GetShape(); s != nil && len(s.GetDim()) != 3 {
			continue
		}
		outs = append(outs, o.GetName())
	}
	if len(outs) != 1 {
		return "", notDetect("want one float output of rank 3, found %d", len(outs))
	}
	return outs[0], nil
}

// findLevel matches one level, from the Reshape feeding the output Concat
// back to the tensor the first Reshape received.
func findLevel(g *onnx.Graph, t string) (Level, error) {
	var lv Level
	r2 := g.Producer(t)
	if !isOp(r2, "Reshape") {
		return lv, notDetect("%s is not produced by a Reshape", t)
	}
	cat := g.Producer(r2.GetInput()[0])
	if !isOp(cat, "Concat") || len(cat.GetInput()) != 3 || !axisIs(cat, 4, 5) {
		return lv, notDetect("%s is not a Concat of xy, wh and confidences on the last axis", r2.GetInput()[0])
	}
	xyT, whT, confT := cat.GetInput()[0], cat.GetInput()[1], cat.GetInput()[2]
	split := g.Producer(confT)
	if !isOp(split, "Split") || len(split.GetOutput()) != 3 || split.GetOutput()[2] != confT || !axisIs(split, 4, 5) {
		return lv, notDetect("confidences %s are not the third output of a Split on the last axis", confT)
	}
	sizes, err := splitSizes(g, split)
	if err != nil {
		return lv, err
	}
	if sizes[0] != 2 || sizes[1] != 2 || sizes[2] < 2 {
		return lv, notDetect("Split sizes %v are not [2, 2, 1+classes]", sizes)
	}
	lv.NO = int(4 + sizes[2])
	sig := g.Producer(split.GetInput()[0])
	if !isOp(sig, "Sigmoid") {
		return lv, notDetect("Split input %s is not a Sigmoid", split.GetInput()[0])
	}
	tr := g.Producer(sig.GetInput()[0])
	if !isOp(tr, "Transpose") || !slices.Equal(attrInts(tr, "perm"), []int64{0, 1, 3, 4, 2}) {
		return lv, notDetect("Sigmoid input is not a Transpose with perm [0 1 3 4 2]")
	}
	r1 := g.Producer(tr.GetInput()[0])
	if !isOp(r1, "Reshape") {
		return lv, notDetect("Transpose input is not a Reshape")
	}
	lv.Tensor = r1.GetInput()[0]
	if err := checkConv(g, lv.Tensor); err != nil {
		return lv, err
	}
	// xy = (s*2 + grid) * stride
	add, err := matchStride(g, xyT, &lv)
	if err != nil {
		return lv, err
	}
	if err := matchXY(g, add, split.GetOutput()[0], &lv); err != nil {
		return lv, err
	}
	// wh = (s*2)^2 * anchor_grid
	if err := matchWH(g, whT, split.GetOutput()[1], &lv); err != nil {
		return lv, err
	}
	if err := checkReshape(g, r1, lv); err != nil {
		return lv, err
	}
	return lv, nil
}

// checkConv checks that t is a Conv output, possibly through
// QuantizeLinear/DequantizeLinear pairs.
func checkConv(g *onnx.Graph, t string) error {
	for hops := 0; hops < 8; hops++ {
		n := g.Producer(t)
		switch {
		case isOp(n, "Conv"):
			return nil
		case isOp(n, "DequantizeLinear"), isOp(n, "QuantizeLinear"):
			t = n.GetInput()[0]
		default:
			return notDetect("head tensor %s is not produced by a Conv", t)
		}
	}
	return notDetect("head tensor %s: too many Q/DQ nodes before the Conv", t)
}

// matchStride matches xyT = Mul(Add, stride) and reads the stride when it
// is a scalar constant (else Stride stays 0 for checkStrides to derive).
func matchStride(g *onnx.Graph, xyT string, lv *Level) (*onnxpb.NodeProto, error) {
	mul := g.Producer(xyT)
	if !isOp(mul, "Mul") || len(mul.GetInput()) != 2 {
		return nil, notDetect("xy %s is not a Mul by the stride", xyT)
	}
	for k := 0; k < 2; k++ {
		add := g.Producer(mul.GetInput()[k])
		if !isOp(add, "Add") {
			continue
		}
		if v := floats(g, mul.GetInput()[1-k]); v != nil {
			if len(v) != 1 || !(v[0] > 0) {
				return nil, notDetect("xy stride multiplier %v is not one positive value", v)
			}
			lv.Stride = v[0]
		}
		return add, nil
	}
	return nil, notDetect("xy %s does not multiply a grid sum", xyT)
}

// matchXY matches add = Add(Mul(s, 2), grid) with s the Split's first output.
func matchXY(g *onnx.Graph, add *onnxpb.NodeProto, s string, lv *Level) error {
	if !isOp(add, "Add") {
		return notDetect("xy: stride multiplies no Add")
	}
	for k := 0; k < 2; k++ {
		mul := g.Producer(add.GetInput()[k])
		if !isOp(mul, "Mul") || !mulsInput(g, mul, s, 2) {
			continue
		}
		return gridOffset(g, add.GetInput()[1-k], lv)
	}
	return notDetect("xy: Add does not add a grid to sigmoid*2")
}

// gridOffset reads the grid: a constant [1, na, ny, nx, 2] holding
// (x+off, y+off), or a computed grid minus a constant (the dynamic export).
func gridOffset(g *onnx.Graph, t string, lv *Level) error {
	if c := g.ConstTensor(t); c != nil {
		v, err := onnx.FloatData(c)
		d := c.GetDims()
		if err != nil || len(d) != 5 || d[4] != 2 || len(v) == 0 {
			return notDetect("grid %s is not a float [1, na, ny, nx, 2] constant", t)
		}
		na, ny, nx := int(d[1]), int(d[2]), int(d[3])
		off := v[0]
		for a := 0; a < na; a++ {
			for y := 0; y < ny; y++ {
				for x := 0; x < nx; x++ {
					i := ((a*ny+y)*nx + x) * 2
					if v[i] != float32(x)+off || v[i+1] != float32(y)+off {
						return notDetect("grid %s is not a regular grid (cell %d,%d)", t, x, y)
					}
				}
			}
		}
		lv.GridOffset, lv.NY, lv.NX = off, ny, nx
		return nil
	}
	sub := g.Producer(t)
	if isOp(sub, "Sub") {
		if c, err := scalar(g, sub.GetInput()[1]); err == nil {
			lv.GridOffset = -c
			return nil
		}
	}
	return notDetect("grid %s is neither a constant nor a computed grid minus a constant", t)
}

// matchWH matches whT = Mul(Pow(Mul(s, 2), 2), anchor_grid).
func matchWH(g *onnx.Graph, whT, s string, lv *Level) error {
	ag, pow, err := mulByConst(g, whT)
	if err != nil || !isOp(pow, "Pow") {
		return notDetect("wh %s is not Pow(...) * anchor_grid", whT)
	}
	if e, err := scalar(g, pow.GetInput()[1]); err != nil || e != 2 {
		return notDetect("wh: Pow exponent is not the constant 2")
	}
	mul := g.Producer(pow.GetInput()[0])
	if !isOp(mul, "Mul") || !mulsInput(g, mul, s, 2) {
		return notDetect("wh: Pow input is not sigmoid*2")
	}
	c := anchorConst(g, whT)
	d := c.GetDims()
	if len(d) != 5 || d[4] != 2 || d[1] < 1 {
		return notDetect("anchor grid has shape %v, want [1, na, ny, nx, 2]", d)
	}
	na, cells := int(d[1]), int(d[2]*d[3])
	for a := 0; a < na; a++ {
		i := a * cells * 2
		w, h := ag[i], ag[i+1]
		for k := 0; k < cells; k++ {
			if ag[i+2*k] != w || ag[i+2*k+1] != h {
				return notDetect("anchor grid is not constant over the cells of anchor %d", a)
			}
		}
		if !(w > 0 && h > 0) || math.IsInf(float64(w), 0) || math.IsInf(float64(h), 0) {
			return notDetect("anchor %d size %vx%v is not positive", a, w, h)
		}
		lv.Anchors = append(lv.Anchors, [2]float32{w, h})
	}
	lv.NA = na
	return nil
}

// anchorConst returns the constant anchor grid multiplied in at whT (only
// called once mulByConst succeeded).
func anchorConst(g *onnx.Graph, whT string) *onnxpb.TensorProto {
	n := g.Producer(whT)
	for _, in := range n.GetInput() {
		if c := constThroughExpand(g, in); c != nil {
			return c
		}
	}
	return nil
}

// checkReshape cross-checks the first Reshape's target shape when it is a
// constant: [b, na, no, ny, nx].
func checkReshape(g *onnx.Graph, r1 *onnxpb.NodeProto, lv Level) error {
	c := g.ConstTensor(r1.GetInput()[1])
	if c == nil {
		return nil
	}
	s := int64s(c)
	if len(s) != 5 {
		return notDetect("Reshape to %v, want [b, na, no, ny, nx]", s)
	}
	if s[1] != int64(lv.NA) || s[2] != int64(lv.NO) || (lv.NY > 0 && (s[3] != int64(lv.NY) || s[4] != int64(lv.NX))) {
		return notDetect("Reshape to %v disagrees with %d anchors x %d values on a %dx%d grid", s, lv.NA, lv.NO, lv.NY, lv.NX)
	}
	return nil
}

// checkStrides cross-checks each level's stride with input size / grid size
// when both are known.
func checkStrides(g *onnx.Graph, h *Head) error {
	var ih, iw int64
	if ins := g.G.GetInput(); len(ins) > 0 {
		if d := ins[0].GetType().GetTensorType().GetShape().GetDim(); len(d) == 4 {
			ih, iw = d[2].GetDimValue(), d[3].GetDimValue()
		}
	}
	for i := range h.Levels {
		lv := &h.Levels[i]
		known := lv.NY > 0 && ih > 0 && iw > 0
		if lv.Stride == 0 {
			// Not a constant: derive it from the input and grid sizes.
			if !known || ih%int64(lv.NY) != 0 {
				return notDetect("level %d stride is neither a constant nor derivable from a fixed input and grid", i)
			}
			lv.Stride = float32(ih / int64(lv.NY))
		}
		if !known {
			continue
		}
		if float32(ih)/float32(lv.NY) != lv.Stride || float32(iw)/float32(lv.NX) != lv.Stride {
			return notDetect("level %d stride %v disagrees with input %dx%d over grid %dx%d", i, lv.Stride, ih, iw, lv.NY, lv.NX)
		}
	}
	return nil
}
