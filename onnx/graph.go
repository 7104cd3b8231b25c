package onnx

import (
	"container/heap"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/yedge/yedge/onnx/onnxpb"
)

// Graph wraps a GraphProto with lookup indexes: which node produces a tensor,
// which nodes consume it, the initializers by name, the graph outputs, and
// every name already in use.
//
// The indexes are built by [NewGraph] and kept current by the Graph's own
// editing methods ([Graph.AddNode], [Graph.AddInitializer],
// [Graph.ReplaceInput], [Graph.TopoSort]). After editing G directly, call
// [Graph.Reindex].
//
// Nodes with subgraph attributes (If, Loop, Scan) are treated as consuming
// every outer-scope tensor their subgraphs reference, so they appear in
// [Graph.Consumers] and are ordered after those tensors' producers by
// [Graph.TopoSort]. The empty name, which ONNX uses for an omitted optional
// input or output, is never indexed.
type Graph struct {
	// G is the wrapped graph, edited in place.
	G *onnxpb.GraphProto

	producer  map[string]*onnxpb.NodeProto
	consumers map[string][]*onnxpb.NodeProto
	pos       map[*onnxpb.NodeProto]int
	inits     map[string]*onnxpb.TensorProto
	outputs   map[string]bool
	used      map[string]bool
}

// NewGraph indexes g. A nil g is replaced by a new empty GraphProto.
func NewGraph(g *onnxpb.GraphProto) *Graph {
	if g == nil {
		g = &onnxpb.GraphProto{}
	}
	gr := &Graph{G: g}
	gr.Reindex()
	return gr
}

// Reindex rebuilds all indexes from G. Call it after editing G directly.
// Names reserved by [Graph.UniqueName] but not yet used in G are forgotten.
func (g *Graph) Reindex() {
	g.producer = make(map[string]*onnxpb.NodeProto)
	g.consumers = make(map[string][]*onnxpb.NodeProto)
	g.pos = make(map[*onnxpb.NodeProto]int, len(g.G.GetNode()))
	g.inits = make(map[string]*onnxpb.TensorProto, len(g.G.GetInitializer()))
	g.outputs = make(map[string]bool, len(g.G.GetOutput()))
	g.used = make(map[string]bool)

	for _, t := range g.G.GetInitializer() {
		if _, dup := g.inits[t.GetName()]; !dup {
			g.inits[t.GetName()] = t
		}
	}
	for _, o := range g.G.GetOutput() {
		g.outputs[o.GetName()] = true
	}
	for i, n := range g.G.GetNode() {
		g.indexNode(n, i)
	}
	collectNames(g.G, g.used)
	delete(g.used, "")
}

// indexNode records n, at position i of G.Node, as producer and consumer.
func (g *Graph) indexNode(n *onnxpb.NodeProto, i int) {
	g.pos[n] = i
	for _, out := range n.GetOutput() {
		if out == "" {
			continue
		}
		if _, dup := g.producer[out]; !dup {
			g.producer[out] = n
		}
	}
	for _, in := range nodeInputs(n) {
		g.consumers[in] = append(g.consumers[in], n)
	}
}

// collectNames adds every tensor, value and node name used in g and its
// subgraphs to used.
func collectNames(g *onnxpb.GraphProto, used map[string]bool) {
	for _, v := range g.GetInput() {
		used[v.GetName()] = true
	}
	for _, v := range g.GetOutput() {
		used[v.GetName()] = true
	}
	for _, v := range g.GetValueInfo() {
		used[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		used[t.GetName()] = true
	}
	for _, s := range g.GetSparseInitializer() {
		used[s.GetValues().GetName()] = true
	}
	for _, n := range g.GetNode() {
		used[n.GetName()] = true
		for _, s := range n.GetInput() {
			used[s] = true
		}
		for _, s := range n.GetOutput() {
			used[s] = true
		}
		forEachSubgraph(n, func(sub *onnxpb.GraphProto) { collectNames(sub, used) })
	}
}

// forEachSubgraph calls f for every graph held in n's attributes.
func forEachSubgraph(n *onnxpb.NodeProto, f func(*onnxpb.GraphProto)) {
	for _, a := range n.GetAttribute() {
		if a.GetG() != nil {
			f(a.GetG())
		}
		for _, sub := range a.GetGraphs() {
			if sub != nil {
				f(sub)
			}
		}
	}
}

// nodeInputs returns the distinct non-empty tensors n reads: its explicit
// inputs followed by outer-scope names referenced by its subgraphs.
func nodeInputs(n *onnxpb.NodeProto) []string {
	var ins []string
	add := func(s string) {
		if s != "" && !slices.Contains(ins, s) {
			ins = append(ins, s)
		}
	}
	for _, s := range n.GetInput() {
		add(s)
	}
	forEachSubgraph(n, func(sub *onnxpb.GraphProto) {
		for _, s := range freeNames(sub) {
			add(s)
		}
	})
	return ins
}

// definedNames returns the names a graph defines locally: its inputs,
// initializers and node outputs.
func definedNames(g *onnxpb.GraphProto) map[string]bool {
	def := make(map[string]bool)
	for _, v := range g.GetInput() {
		def[v.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		def[t.GetName()] = true
	}
	for _, s := range g.GetSparseInitializer() {
		def[s.GetValues().GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, s := range n.GetOutput() {
			def[s] = true
		}
	}
	return def
}

// freeNames returns, in first-use order, the names g (or a graph nested in
// it) reads from an enclosing scope.
func freeNames(g *onnxpb.GraphProto) []string {
	def := definedNames(g)
	var free []string
	seen := make(map[string]bool)
	add := func(s string) {
		if s != "" && !def[s] && !seen[s] {
			seen[s] = true
			free = append(free, s)
		}
	}
	for _, n := range g.GetNode() {
		for _, s := range nodeInputs(n) {
			add(s)
		}
	}
	for _, o := range g.GetOutput() {
		add(o.GetName())
	}
	return free
}

// Producer returns the node that outputs tensor, or nil if no node does (graph
// inputs, initializers and unknown names). If several nodes claim the same
// output (an invalid model), the first in node order is returned.
func (g *Graph) Producer(tensor string) *onnxpb.NodeProto {
	return g.producer[tensor]
}

// Consumers returns the nodes that read tensor, in node order, each node once
// even if it reads tensor several times. The slice is a copy.
func (g *Graph) Consumers(tensor string) []*onnxpb.NodeProto {
	return slices.Clone(g.consumers[tensor])
}

// Initializer returns the initializer called name, or nil.
func (g *Graph) Initializer(name string) *onnxpb.TensorProto {
	return g.inits[name]
}

// IsGraphOutput reports whether name is one of the graph's outputs.
func (g *Graph) IsGraphOutput(name string) bool {
	return g.outputs[name]
}

// ConstTensor returns the constant value of tensor name: the initializer of
// that name, or the value of the Constant node that produces it, looking
// through chains of Identity nodes (PyTorch exports shared constants as
// Identity(initializer)). For a
// Constant with a "value" attribute the attribute's own TensorProto is
// returned (its Name may differ from name); for "value_float(s)" and
// "value_int(s)" a new FLOAT or INT64 tensor called name is built. It returns
// nil when name is not a constant (graph input, computed tensor, sparse or
// string Constant).
func (g *Graph) ConstTensor(name string) *onnxpb.TensorProto {
	if t := g.inits[name]; t != nil {
		return t
	}
	n := g.producer[name]
	// Follow Identity chains; PyTorch shares deduplicated constants this way.
	for hops := 0; n != nil && n.GetOpType() == "Identity" && isDefaultDomain(n.GetDomain()) &&
		len(n.GetInput()) == 1 && hops < len(g.G.GetNode()); hops++ {
		name = n.GetInput()[0]
		if t := g.inits[name]; t != nil {
			return t
		}
		n = g.producer[name]
	}
	if n == nil || n.GetOpType() != "Constant" || !isDefaultDomain(n.GetDomain()) ||
		len(n.GetOutput()) == 0 || n.GetOutput()[0] != name {
		return nil
	}
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "value":
			return a.GetT()
		case "value_float":
			return NewFloatTensor(name, nil, []float32{a.GetF()})
		case "value_floats":
			fs := a.GetFloats()
			return NewFloatTensor(name, []int64{int64(len(fs))}, fs)
		case "value_int":
			return &onnxpb.TensorProto{Name: name, DataType: int32(onnxpb.TensorProto_INT64), Int64Data: []int64{a.GetI()}}
		case "value_ints":
			is := a.GetInts()
			return &onnxpb.TensorProto{Name: name, DataType: int32(onnxpb.TensorProto_INT64),
				Dims: []int64{int64(len(is))}, Int64Data: slices.Clone(is)}
		}
	}
	return nil
}

// UniqueName returns a tensor/node name not used anywhere in the graph or its
// subgraphs (node inputs and outputs, node names, graph inputs and outputs,
// initializers, value_info): base itself if free, otherwise base_1, base_2,
// ... The returned name is reserved, so later calls never return it again
// (until [Graph.Reindex] if it is still unused by then).
func (g *Graph) UniqueName(base string) string {
	if base == "" {
		base = "t"
	}
	name := base
	for i := 1; g.used[name]; i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	g.used[name] = true
	return name
}

// AddInitializer appends t to the graph's initializers and indexes it.
func (g *Graph) AddInitializer(t *onnxpb.TensorProto) {
	g.G.Initializer = append(g.G.Initializer, t)
	if _, dup := g.inits[t.GetName()]; !dup {
		g.inits[t.GetName()] = t
	}
	g.used[t.GetName()] = true
}

// AddNode appends n to the end of the node list and indexes it. When n's
// inputs are produced by nodes that come later in the list, call
// [Graph.TopoSort] once all edits are done.
func (g *Graph) AddNode(n *onnxpb.NodeProto) {
	g.G.Node = append(g.G.Node, n)
	g.indexNode(n, len(g.G.Node)-1)
	names := map[string]bool{n.GetName(): true}
	for _, s := range n.GetInput() {
		names[s] = true
	}
	for _, s := range n.GetOutput() {
		names[s] = true
	}
	forEachSubgraph(n, func(sub *onnxpb.GraphProto) { collectNames(sub, names) })
	for s := range names {
		if s != "" {
			g.used[s] = true
		}
	}
}

// ReplaceInput makes node read newName wherever it read oldName: every
// matching entry of node.Input is rewritten, as are references to oldName from
// node's subgraphs that are not shadowed by a local definition. The consumer
// index is updated. Graph outputs and other nodes are not touched.
func (g *Graph) ReplaceInput(node *onnxpb.NodeProto, oldName, newName string) {
	if node == nil || oldName == newName {
		return
	}
	changed := false
	for i, s := range node.Input {
		if s == oldName {
			node.Input[i] = newName
			changed = true
		}
	}
	forEachSubgraph(node, func(sub *onnxpb.GraphProto) {
		if renameFree(sub, oldName, newName) {
			changed = true
		}
	})
	if !changed {
		return
	}
	if newName != "" {
		g.used[newName] = true
	}
	i, indexed := g.pos[node]
	if !indexed {
		return
	}
	ins := nodeInputs(node)
	if !slices.Contains(ins, oldName) {
		g.consumers[oldName] = slices.DeleteFunc(g.consumers[oldName], func(c *onnxpb.NodeProto) bool { return c == node })
		if len(g.consumers[oldName]) == 0 {
			delete(g.consumers, oldName)
		}
	}
	if newName == "" || slices.Contains(g.consumers[newName], node) {
		return
	}
	cs := g.consumers[newName]
	at, _ := slices.BinarySearchFunc(cs, i, func(c *onnxpb.NodeProto, i int) int { return g.pos[c] - i })
	g.consumers[newName] = slices.Insert(cs, at, node)
}

// renameFree rewrites references to the outer-scope name oldName inside sub
// (and graphs nested in it) unless sub defines oldName itself. It reports
// whether anything changed.
func renameFree(sub *onnxpb.GraphProto, oldName, newName string) bool {
	if definedNames(sub)[oldName] {
		return false
	}
	changed := false
	for _, n := range sub.GetNode() {
		for i, s := range n.Input {
			if s == oldName {
				n.Input[i] = newName
				changed = true
			}
		}
		forEachSubgraph(n, func(inner *onnxpb.GraphProto) {
			if renameFree(inner, oldName, newName) {
				changed = true
			}
		})
	}
	for _, o := range sub.GetOutput() {
		if o.GetName() == oldName {
			o.Name = newName
			changed = true
		}
	}
	return changed
}

// intHeap is a min-heap of node positions, used for a stable topological sort.
type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// TopoSort reorders G.Node so every node comes after the producers of all its
// inputs (including outer-scope names read by its subgraphs). The sort is
// stable: among nodes whose dependencies are satisfied, the one earliest in
// the current order goes first, so an already sorted graph is unchanged.
// Inputs that no node produces (graph inputs, initializers, unknown names) add
// no constraints. On a cycle G.Node is left as it was and an error naming
// some of the nodes that cannot be ordered is returned. The indexes are rebuilt on success.
func (g *Graph) TopoSort() error {
	nodes := g.G.GetNode()
	producers := make(map[string][]int)
	for i, n := range nodes {
		for _, out := range n.GetOutput() {
			if out != "" {
				producers[out] = append(producers[out], i)
			}
		}
	}
	indeg := make([]int, len(nodes))
	succ := make([][]int, len(nodes))
	for i, n := range nodes {
		var deps []int
		for _, in := range nodeInputs(n) {
			for _, p := range producers[in] {
				if !slices.Contains(deps, p) {
					deps = append(deps, p)
				}
			}
		}
		for _, p := range deps {
			succ[p] = append(succ[p], i)
			indeg[i]++
		}
	}
	ready := &intHeap{}
	for i := range nodes {
		if indeg[i] == 0 {
			*ready = append(*ready, i)
		}
	}
	heap.Init(ready)
	order := make([]*onnxpb.NodeProto, 0, len(nodes))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		order = append(order, nodes[i])
		for _, s := range succ[i] {
			if indeg[s]--; indeg[s] == 0 {
				heap.Push(ready, s)
			}
		}
	}
	if len(order) != len(nodes) {
		var stuck []string
		for i, n := range nodes {
			if indeg[i] > 0 {
				stuck = append(stuck, nodeLabel(n, i))
			}
		}
		more := ""
		if len(stuck) > 5 {
			more = fmt.Sprintf(", ... (%d more)", len(stuck)-5)
			stuck = stuck[:5]
		}
		return fmt.Errorf("topological sort of graph %q: cycle: %d nodes are on or after a cycle: %s%s",
			g.G.GetName(), len(nodes)-len(order), strings.Join(stuck, ", "), more)
	}
	g.G.Node = order
	g.Reindex()
	return nil
}

// nodeLabel names a node for error messages.
func nodeLabel(n *onnxpb.NodeProto, i int) string {
	if n.GetName() != "" {
		return fmt.Sprintf("%q (%s)", n.GetName(), n.GetOpType())
	}
	return fmt.Sprintf("#%d (%s)", i, n.GetOpType())
}
