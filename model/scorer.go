package model

import (
	"context"
	"fmt"
	"math"
	"sync"

	mm "github.com/methanemap/methanemap"
)

// DefaultBatchSize is how many chips one inference call scores.
const DefaultBatchSize = 16

// ScorerOptions tune a Scorer.
type ScorerOptions struct {
	BackendOptions
	// BatchSize is how many chips go into one inference call (default
	// DefaultBatchSize). A model with a fixed batch dimension always gets
	// that many, padded with fill values.
	BatchSize int
}

// Scorer scores chips with a model.
type Scorer struct {
	Model *Model
	// Fallback, when not nil, says why auto did not use ONNX Runtime.
	Fallback error

	backend Backend
	batch   int
	fixed   bool
	mu      sync.Mutex  // one inference call at a time
	inputs  [][]float32 // each input's values of the last call, under mu: reused, not allocated per batch
}

// NewScorer makes the backend for the model.
func NewScorer(m *Model, opts ScorerOptions) (*Scorer, error) {
	inputs := make([]string, len(m.Card.Chip.Inputs))
	for i, in := range m.Card.Chip.Inputs {
		inputs[i] = in.Name
	}
	b, fallback, err := NewBackend(m.ONNX, m.Graph, inputs, m.Card.Output.Name, opts.BackendOptions)
	if err != nil {
		return nil, err
	}
	s := &Scorer{Model: m, Fallback: fallback, backend: b, batch: opts.BatchSize}
	if s.batch <= 0 {
		s.batch = DefaultBatchSize
	}
	if fb := m.FixedBatch(); fb > 0 {
		s.batch, s.fixed = fb, true
	}
	return s, nil
}

// Backend is the name of the backend in use.
func (s *Scorer) Backend() string { return s.backend.Name() }

// BatchSize is the number of chips per inference call.
func (s *Scorer) BatchSize() int { return s.batch }

// Score returns each chip's class scores, in the order of mm.Classes,
// sigmoid applied when the card asks for it. Classes the card does not
// have score 0. ctx is checked between batches.
func (s *Scorer) Score(ctx context.Context, chips []mm.Chip) ([]mm.Scores, error) {
	out := make([]mm.Scores, 0, len(chips))
	for start := 0; start < len(chips); start += s.batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch := chips[start:min(start+s.batch, len(chips))]
		scores, err := s.scoreBatch(batch)
		if err != nil {
			return nil, err
		}
		out = append(out, scores...)
	}
	return out, nil
}

func (s *Scorer) scoreBatch(chips []mm.Chip) ([]mm.Scores, error) {
	card := s.Model.Card
	n := len(chips)
	rows := n
	if s.fixed {
		rows = s.batch
	}
	for _, c := range chips {
		for i, in := range card.Chip.Inputs {
			if per := len(in.Bands) * in.Size * in.Size; i >= len(c.Inputs) || len(c.Inputs[i].Data) != per {
				return nil, fmt.Errorf("model: chip %s input %d has %d values, the card's %q needs %d", c.ID, i, tensorLen(c, i), in.Name, per)
			}
		}
	}
	// the batch's values go into buffers kept from the last call: a batch
	// of 720 px chips is ~150 MB, and allocating (and zeroing) that for
	// every call had the garbage collector run beside inference, where
	// its workers hold a core the inference threads wait for
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inputs) != len(card.Chip.Inputs) {
		s.inputs = make([][]float32, len(card.Chip.Inputs))
	}
	inputs := make([]Tensor, len(card.Chip.Inputs))
	for i, in := range card.Chip.Inputs {
		per := len(in.Bands) * in.Size * in.Size
		if cap(s.inputs[i]) < rows*per {
			s.inputs[i] = make([]float32, rows*per)
		}
		data := s.inputs[i][:rows*per]
		for k, c := range chips {
			copy(data[k*per:], c.Inputs[i].Data)
		}
		for k := n; k < rows; k++ { // padding rows hold each band's fill value
			for b, band := range in.Bands {
				fill := data[k*per+b*in.Size*in.Size : k*per+(b+1)*in.Size*in.Size]
				for p := range fill {
					fill[p] = float32(band.Fill)
				}
			}
		}
		inputs[i] = Tensor{Shape: []int64{int64(rows), int64(len(in.Bands)), int64(in.Size), int64(in.Size)}, Data: data}
	}
	res, err := s.backend.Run(inputs)
	if err != nil {
		return nil, err
	}
	k := len(card.Classes)
	if len(res.Shape) != 2 || res.Shape[0] != int64(rows) || res.Shape[1] != int64(k) || len(res.Data) != rows*k {
		return nil, fmt.Errorf("model: output %q has shape %v, want [%d %d]", card.Output.Name, res.Shape, rows, k)
	}
	idx := make([]int, k) // card class i → position in mm.Classes
	for i, c := range card.Classes {
		idx[i] = c.Index()
	}
	scores := make([]mm.Scores, n)
	for r := range n {
		for i := range k {
			v := float64(res.Data[r*k+i])
			if card.Output.Sigmoid {
				v = 1 / (1 + math.Exp(-v))
			}
			scores[r][idx[i]] = v
		}
	}
	return scores, nil
}

func tensorLen(c mm.Chip, i int) int {
	if i >= len(c.Inputs) {
		return 0
	}
	return len(c.Inputs[i].Data)
}

// Threshold returns the card's threshold for a class (default 0.5).
func (c *Card) Threshold(cl mm.Class) float64 {
	if t, ok := c.Thresholds[cl]; ok {
		return t
	}
	return 0.5
}

// Close releases the backend.
func (s *Scorer) Close() error { return s.backend.Close() }
