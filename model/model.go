package model

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	mm "github.com/methanemap/methanemap"
)

// Model is a model card with its ONNX graph, checked against each other.
type Model struct {
	Card  *Card
	Graph *Graph
	ONNX  []byte
}

// Load reads dir/model.yaml and the ONNX file it names, checks the file's
// sha256 and checks the card against the graph. Every error is permanent
// and names the card field at fault and the graph's value.
func Load(dir string) (*Model, error) { return LoadFS(os.DirFS(dir), ".", dir) }

// LoadFS is Load on a file system (for example the demo model built into
// the binary); name is how errors call the directory.
func LoadFS(fsys fs.FS, dir, name string) (*Model, error) {
	card, err := LoadCardFS(fsys, dir, name)
	if err != nil {
		return nil, err
	}
	where := filepath.Join(name, CardFile)
	if card.ONNX == "" || card.SHA256 == "" || card.Output.Name == "" || len(card.Classes) == 0 {
		return nil, mm.Permanentf("model: %s: onnx, sha256, output.name and classes are required to run a model", where)
	}
	if strings.Contains(card.ONNX, "/") || strings.Contains(card.ONNX, "\\") {
		return nil, mm.Permanentf("model: %s: onnx: %q must be a file name beside the card", where, card.ONNX)
	}
	data, err := fs.ReadFile(fsys, path.Join(dir, card.ONNX))
	if err != nil {
		return nil, mm.Permanentf("model: %s: onnx: %w", where, err)
	}
	if got := sha256hex(data); !strings.EqualFold(got, card.SHA256) {
		return nil, mm.Permanentf("model: %s: sha256: the card says %s, %s is %s", where, card.SHA256, card.ONNX, got)
	}
	g, err := ParseGraph(data)
	if err != nil {
		return nil, mm.Permanentf("model: %s: %w", filepath.Join(name, card.ONNX), err)
	}
	if err := card.CheckGraph(g); err != nil {
		return nil, mm.Permanentf("model: %s does not match %s: %w", where, card.ONNX, err)
	}
	return &Model{Card: card, Graph: g, ONNX: data}, nil
}

// CheckGraph checks the card's inputs and output against the graph: names,
// ranks, element types, channel counts and sizes.
func (c *Card) CheckGraph(g *Graph) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, mm.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	names := make([]string, len(g.Inputs))
	for i, in := range g.Inputs {
		names[i] = in.Name
	}
	used := map[string]bool{}
	for i, in := range c.Chip.Inputs {
		f := fmt.Sprintf("chip.inputs[%d]", i)
		gi, ok := g.Input(in.Name)
		if !ok {
			bad(f+".name", "%q is not an input of the graph (its inputs: %s)", in.Name, strings.Join(names, ", "))
			continue
		}
		used[in.Name] = true
		if gi.ElemType != "FLOAT" {
			bad(f, "graph input %s is %s, want FLOAT", gi, gi.ElemType)
		}
		if len(gi.Shape) != 4 {
			bad(f, "graph input %s has rank %d, want 4 (batch, channels, height, width)", gi, len(gi.Shape))
			continue
		}
		if d := gi.Shape[1]; d.Fixed() && d.Value != int64(len(in.Bands)) {
			bad(f+".bands", "the card lists %d bands, graph input %s has %d channels", len(in.Bands), gi, d.Value)
		}
		for k, axis := range []string{"height", "width"} {
			if d := gi.Shape[2+k]; d.Fixed() && d.Value != int64(in.Size) {
				bad(f+".size", "the card says %d, graph input %s has %s %d", in.Size, gi, axis, d.Value)
			}
		}
	}
	for _, gi := range g.Inputs {
		if !used[gi.Name] {
			bad("chip.inputs", "graph input %s is not fed by any card input", gi)
		}
	}
	out, ok := g.Output(c.Output.Name)
	switch {
	case !ok:
		var outs []string
		for _, o := range g.Outputs {
			outs = append(outs, o.Name)
		}
		bad("output.name", "%q is not an output of the graph (its outputs: %s)", c.Output.Name, strings.Join(outs, ", "))
	case out.ElemType != "FLOAT":
		bad("output.name", "graph output %s is %s, want FLOAT", out, out.ElemType)
	case len(out.Shape) != 2:
		bad("output.name", "graph output %s has rank %d, want 2 (batch, classes)", out, len(out.Shape))
	case out.Shape[1].Fixed() && out.Shape[1].Value != int64(len(c.Classes)):
		bad("classes", "the card lists %d classes, graph output %s has %d", len(c.Classes), out, out.Shape[1].Value)
	}
	return errors.Join(errs...)
}

// FixedBatch returns the batch size the graph's first input fixes, or 0
// when the batch dimension is dynamic.
func (m *Model) FixedBatch() int {
	if len(m.Graph.Inputs) == 0 || len(m.Graph.Inputs[0].Shape) == 0 {
		return 0
	}
	if d := m.Graph.Inputs[0].Shape[0]; d.Fixed() {
		return int(d.Value)
	}
	return 0
}

func sha256hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
