package model

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/testenv"
)

// syntheticChips makes n chips of deterministic values for the card.
func syntheticChips(card *Card, n int) []mm.Chip {
	chips := make([]mm.Chip, n)
	for i := range chips {
		for _, in := range card.Chip.Inputs {
			data := make([]float32, len(in.Bands)*in.Size*in.Size)
			for k := range data {
				data[k] = float32((k*31+i*7)%97)/48 - 1
			}
			chips[i].Inputs = append(chips[i].Inputs, mm.Tensor{Name: in.Name, Size: in.Size, Data: data})
		}
	}
	return chips
}

func benchScorer(b *testing.B, m *Model, backend string, batch int) {
	s, err := NewScorer(m, ScorerOptions{BackendOptions: BackendOptions{Backend: backend}, BatchSize: batch})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	chips := syntheticChips(m.Card, batch)
	if _, err := s.Score(context.Background(), chips); err != nil { // warm up
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := s.Score(context.Background(), chips); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "chips/s")
}

// BenchmarkInference scores the demo model alone (no chip cutting) on each
// backend at batch sizes 1, 8 and 32.
func BenchmarkInference(b *testing.B) {
	m, err := Load(filepath.Join(testenv.Root(), "models", "demo"))
	if err != nil {
		b.Fatal(err)
	}
	for _, backend := range []string{ONNXRuntime, ONNXGo} {
		for _, batch := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/batch%d", backend, batch), func(b *testing.B) { benchScorer(b, m, backend, batch) })
		}
	}
}

// BenchmarkDenseNet121 exports METER-ML's architecture (DenseNet-121 on
// 720 x 720 chips of the demo card's 18 bands) with random weights through
// training/train.py and runs it on ONNX Runtime, the only backend that can.
func BenchmarkDenseNet121(b *testing.B) {
	dir := testenv.DenseNet121(b, b.TempDir())
	m, err := Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	if missing := MissingOnnxGoOps(m.Graph); len(missing) > 0 {
		b.Logf("onnx-go cannot run it: lacks %v", missing)
	}
	for _, batch := range []int{1, 4} {
		b.Run(fmt.Sprintf("onnxruntime/batch%d", batch), func(b *testing.B) { benchScorer(b, m, ONNXRuntime, batch) })
	}
}
