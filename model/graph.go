package model

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Graph is what methanemap needs to know of an ONNX model, read straight
// from its protobuf without any runtime: the inputs and outputs with their
// element types and shapes, the opsets and the operators used.
type Graph struct {
	IRVersion int64
	Producer  string
	Opsets    map[string]int64 // domain ("" is ai.onnx) → version
	Inputs    []TensorInfo     // graph inputs that are not initializers
	Outputs   []TensorInfo
	Ops       map[string]int // operator type → count
	Metadata  map[string]string
}

// TensorInfo is one graph input or output.
type TensorInfo struct {
	Name     string
	ElemType string // FLOAT, DOUBLE, INT64, …
	Shape    []Dim
}

// Dim is one dimension: a fixed size (Value > 0) or a symbolic one.
type Dim struct {
	Value int64
	Param string // symbolic name such as "batch"; empty and Value 0 when unknown
}

func (d Dim) String() string {
	switch {
	case d.Value > 0:
		return fmt.Sprint(d.Value)
	case d.Param != "":
		return d.Param
	}
	return "?"
}

// Fixed reports whether the dimension has a known size.
func (d Dim) Fixed() bool { return d.Value > 0 }

func (t TensorInfo) String() string {
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = d.String()
	}
	return fmt.Sprintf("%s %s[%s]", t.Name, t.ElemType, strings.Join(dims, ","))
}

// Opset is the ai.onnx opset version.
func (g *Graph) Opset() int64 { return g.Opsets[""] }

// OpTypes returns the operator types used, sorted.
func (g *Graph) OpTypes() []string {
	out := make([]string, 0, len(g.Ops))
	for op := range g.Ops {
		out = append(out, op)
	}
	sort.Strings(out)
	return out
}

// Input returns the graph input called name.
func (g *Graph) Input(name string) (TensorInfo, bool) { return find(g.Inputs, name) }

// Output returns the graph output called name.
func (g *Graph) Output(name string) (TensorInfo, bool) { return find(g.Outputs, name) }

func find(ts []TensorInfo, name string) (TensorInfo, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

var elemTypes = map[uint64]string{1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32",
	7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 16: "BFLOAT16"}

// ErrNotONNX is returned for data that is not an ONNX ModelProto.
var ErrNotONNX = errors.New("model: not an ONNX model")

// ParseGraph reads an ONNX ModelProto.
func ParseGraph(data []byte) (*Graph, error) {
	g := &Graph{Opsets: map[string]int64{}, Ops: map[string]int{}, Metadata: map[string]string{}}
	var graph []byte
	err := fields(data, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			g.IRVersion = int64(n)
		case num == 2 && typ == protowire.BytesType:
			g.Producer = string(v)
		case num == 7 && typ == protowire.BytesType:
			graph = v
		case num == 8 && typ == protowire.BytesType:
			var domain string
			var version int64
			if err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
				if num == 1 && typ == protowire.BytesType {
					domain = string(v)
				} else if num == 2 && typ == protowire.VarintType {
					version = int64(n)
				}
				return nil
			}); err != nil {
				return err
			}
			g.Opsets[domain] = version
		case num == 14 && typ == protowire.BytesType:
			k, val, err := stringPair(v)
			if err != nil {
				return err
			}
			g.Metadata[k] = val
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotONNX, err)
	}
	if graph == nil || g.IRVersion == 0 {
		return nil, fmt.Errorf("%w: no graph or IR version", ErrNotONNX)
	}
	if err := g.parseGraph(graph); err != nil {
		return nil, fmt.Errorf("%w: graph: %v", ErrNotONNX, err)
	}
	return g, nil
}

func (g *Graph) parseGraph(data []byte) error {
	initializers := map[string]bool{}
	var inputs []TensorInfo
	err := fields(data, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1: // node
			return fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num == 4 && typ == protowire.BytesType {
					g.Ops[string(v)]++
				}
				return nil
			})
		case 5: // initializer: its name is field 8
			return fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num == 8 && typ == protowire.BytesType {
					initializers[string(v)] = true
				}
				return nil
			})
		case 11, 12:
			t, err := valueInfo(v)
			if err != nil {
				return err
			}
			if num == 11 {
				inputs = append(inputs, t)
			} else {
				g.Outputs = append(g.Outputs, t)
			}
		}
		return nil
	})
	for _, in := range inputs {
		if !initializers[in.Name] {
			g.Inputs = append(g.Inputs, in)
		}
	}
	return err
}

// valueInfo reads a ValueInfoProto: name (1) and type (2) →
// tensor_type (1) → elem_type (1), shape (2) → dim (1) → value (1) | param (2).
func valueInfo(data []byte) (TensorInfo, error) {
	var t TensorInfo
	err := fields(data, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			t.Name = string(v)
		case num == 2 && typ == protowire.BytesType:
			return fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num != 1 || typ != protowire.BytesType {
					return nil
				}
				return fields(v, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
					switch {
					case num == 1 && typ == protowire.VarintType:
						t.ElemType = elemTypes[n]
						if t.ElemType == "" {
							t.ElemType = fmt.Sprintf("type%d", n)
						}
					case num == 2 && typ == protowire.BytesType:
						return fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
							if num != 1 || typ != protowire.BytesType {
								return nil
							}
							var d Dim
							err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
								if num == 1 && typ == protowire.VarintType {
									d.Value = int64(n)
								} else if num == 2 && typ == protowire.BytesType {
									d.Param = string(v)
								}
								return nil
							})
							t.Shape = append(t.Shape, d)
							return err
						})
					}
					return nil
				})
			})
		}
		return nil
	})
	return t, err
}

func stringPair(data []byte) (string, string, error) {
	var k, v string
	err := fields(data, func(num protowire.Number, typ protowire.Type, b []byte, _ uint64) error {
		if typ == protowire.BytesType && num == 1 {
			k = string(b)
		} else if typ == protowire.BytesType && num == 2 {
			v = string(b)
		}
		return nil
	})
	return k, v, err
}

// fields walks the fields of one protobuf message, calling fn with each
// field's number, wire type, and its bytes (length-delimited) or value
// (varint).
func fields(data []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(data) > 0 {
		num, typ, l := protowire.ConsumeTag(data)
		if l < 0 {
			return protowire.ParseError(l)
		}
		data = data[l:]
		var v []byte
		var n uint64
		switch typ {
		case protowire.VarintType:
			n, l = protowire.ConsumeVarint(data)
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(data)
		default:
			l = protowire.ConsumeFieldValue(num, typ, data)
		}
		if l < 0 {
			return protowire.ParseError(l)
		}
		data = data[l:]
		if err := fn(num, typ, v, n); err != nil {
			return err
		}
	}
	return nil
}
