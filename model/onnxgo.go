package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/owulveryck/onnx-go"
	"github.com/owulveryck/onnx-go/backend/x/gorgonnx"
	"gorgonia.org/tensor"
)

// OnnxGoOps are the operators onnx-go v0.5.0's gorgonnx backend runs.
var OnnxGoOps = []string{"Abs", "Add", "BatchNormalization", "Ceil", "Concat", "Constant", "Conv", "Cos",
	"Cube", "Div", "Dropout", "Exp", "Flatten", "Floor", "Gemm", "GlobalAveragePool", "Identity",
	"ImageScaler", "Inverse", "LeakyRelu", "Log", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Relu",
	"Reshape", "Sigmoid", "Sign", "Sin", "Softmax", "Softplus", "Sqrt", "Square", "Squeeze", "Sub", "Tanh",
	"Transpose", "Unsqueeze"}

// MissingOnnxGoOps lists the graph's operators onnx-go cannot run.
func MissingOnnxGoOps(g *Graph) []string {
	var out []string
	for _, op := range g.OpTypes() {
		if !slices.Contains(OnnxGoOps, op) {
			out = append(out, op)
		}
	}
	return out
}

// onnxGoBackend runs graphs with onnx-go. gorgonnx fixes a graph's input
// shape on first use, so one compiled graph is kept per input shape.
//
// onnx-go v0.5.0 has a bug: running the same compiled graph a second time
// with a batch of one returns wrong scores (its Gemm writes into the bias
// when the bias has m·n elements). A batch of one is therefore never run
// on a reused graph: when the batch axis is dynamic the row is doubled
// into a batch of two, otherwise the graph is compiled afresh for the call.
type onnxGoBackend struct {
	onnx     []byte
	nInputs  int
	output   string
	outIdx   int
	dynBatch bool
	compiled map[string]*onnxGoGraph
}

type onnxGoGraph struct {
	backend *gorgonnx.Graph
	model   *onnx.Model
}

func newOnnxGo(data []byte, g *Graph, inputs []string, output string) (*onnxGoBackend, error) {
	if missing := MissingOnnxGoOps(g); len(missing) > 0 {
		return nil, fmt.Errorf("model: onnx-go lacks operators %s", strings.Join(missing, ", "))
	}
	if len(inputs) != len(g.Inputs) {
		return nil, fmt.Errorf("model: onnx-go feeds every graph input: the graph has %d, %d given", len(g.Inputs), len(inputs))
	}
	for i, name := range inputs {
		if g.Inputs[i].Name != name {
			return nil, fmt.Errorf("model: onnx-go feeds inputs in graph order: input %d is %q, not %q", i, g.Inputs[i].Name, name)
		}
	}
	b := &onnxGoBackend{onnx: data, nInputs: len(inputs), output: output, outIdx: -1, compiled: map[string]*onnxGoGraph{}}
	for i, o := range g.Outputs {
		if o.Name == output {
			b.outIdx = i
		}
	}
	if b.outIdx < 0 {
		return nil, fmt.Errorf("model: onnx-go: no graph output %q", output)
	}
	if len(g.Inputs) > 0 && len(g.Inputs[0].Shape) > 0 {
		b.dynBatch = !g.Inputs[0].Shape[0].Fixed()
	}
	if _, err := b.compile(); err != nil { // fail now, not at the first batch
		return nil, err
	}
	return b, nil
}

func (b *onnxGoBackend) Name() string { return ONNXGo }

func (b *onnxGoBackend) compile() (*onnxGoGraph, error) {
	gb := gorgonnx.NewGraph()
	m := onnx.NewModel(gb)
	if err := m.UnmarshalBinary(b.onnx); err != nil {
		return nil, fmt.Errorf("model: onnx-go cannot load the graph: %w", err)
	}
	return &onnxGoGraph{backend: gb, model: m}, nil
}

func (b *onnxGoBackend) Run(inputs []Tensor) (Tensor, error) {
	if len(inputs) != b.nInputs {
		return Tensor{}, fmt.Errorf("model: onnx-go: %d inputs given, the graph takes %d", len(inputs), b.nInputs)
	}
	single := len(inputs[0].Shape) > 0 && inputs[0].Shape[0] == 1
	if single && b.dynBatch {
		out, err := b.run(doubleRow(inputs), true)
		if err != nil {
			return Tensor{}, err
		}
		return firstRow(out), nil
	}
	return b.run(inputs, !single)
}

// run feeds the inputs to a graph compiled for their shapes; reuse false
// compiles a graph for this call only.
func (b *onnxGoBackend) run(inputs []Tensor, reuse bool) (Tensor, error) {
	key := fmt.Sprint(shapes(inputs))
	g := b.compiled[key]
	if g == nil || !reuse {
		var err error
		if g, err = b.compile(); err != nil {
			return Tensor{}, err
		}
		if reuse {
			b.compiled[key] = g
		}
	}
	for i, in := range inputs {
		dims := make([]int, len(in.Shape))
		for k, d := range in.Shape {
			dims[k] = int(d)
		}
		t := tensor.New(tensor.WithShape(dims...), tensor.WithBacking(slices.Clone(in.Data)))
		if err := g.model.SetInput(i, t); err != nil {
			return Tensor{}, fmt.Errorf("model: onnx-go input %d: %w", i, err)
		}
	}
	if err := g.backend.Run(); err != nil {
		return Tensor{}, fmt.Errorf("model: onnx-go: %w", err)
	}
	outs, err := g.model.GetOutputTensors()
	if err != nil {
		return Tensor{}, fmt.Errorf("model: onnx-go output: %w", err)
	}
	if b.outIdx >= len(outs) {
		return Tensor{}, fmt.Errorf("model: onnx-go returned %d outputs, want output %d", len(outs), b.outIdx)
	}
	o := outs[b.outIdx]
	data, ok := o.Data().([]float32)
	if !ok {
		return Tensor{}, fmt.Errorf("model: onnx-go output is %T, want float32", o.Data())
	}
	shape := make([]int64, len(o.Shape()))
	for i, d := range o.Shape() {
		shape[i] = int64(d)
	}
	return Tensor{Shape: shape, Data: slices.Clone(data)}, nil
}

func shapes(ts []Tensor) [][]int64 {
	out := make([][]int64, len(ts))
	for i, t := range ts {
		out[i] = t.Shape
	}
	return out
}

// doubleRow turns batches of one into batches of two identical rows.
func doubleRow(ts []Tensor) []Tensor {
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		shape := slices.Clone(t.Shape)
		shape[0] = 2
		out[i] = Tensor{Shape: shape, Data: append(slices.Clone(t.Data), t.Data...)}
	}
	return out
}

// firstRow keeps the first row of a batch.
func firstRow(t Tensor) Tensor {
	shape := slices.Clone(t.Shape)
	shape[0] = 1
	return Tensor{Shape: shape, Data: t.Data[:len(t.Data)/int(t.Shape[0])]}
}

func (b *onnxGoBackend) Close() error {
	b.compiled = nil
	return nil
}
