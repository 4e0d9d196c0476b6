package model

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/internal/testenv"
	"github.com/methanemap/methanemap/tiles"
)

type reference struct {
	Shape  []int64     `json:"shape"`
	Logits [][]float64 `json:"logits"`
}

// referenceInput is what training/train.py feeds for its reference
// outputs: sin(0.001·i) over the flattened tensor, computed in float64 and
// rounded to float32 as NumPy does.
func referenceInput(shape []int64) Tensor {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(math.Sin(float64(i) * 0.001))
	}
	return Tensor{Shape: shape, Data: data}
}

func loadReference(t *testing.T, dir string) reference {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// checkReference runs the model's graph on the reference input with a
// backend and compares the logits with the training script's.
func checkReference(t *testing.T, m *Model, dir, backend string) {
	t.Helper()
	ref := loadReference(t, dir)
	b, _, err := NewBackend(m.ONNX, m.Graph, []string{m.Card.Chip.Inputs[0].Name}, m.Card.Output.Name, BackendOptions{Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	out, err := b.Run([]Tensor{referenceInput(ref.Shape)})
	if err != nil {
		t.Fatal(err)
	}
	k := len(m.Card.Classes)
	worst := 0.0
	for r, row := range ref.Logits {
		for c, want := range row {
			worst = math.Max(worst, math.Abs(float64(out.Data[r*k+c])-want))
		}
	}
	if worst > 1e-4 {
		t.Errorf("%s: logits differ from training/train.py's by up to %g", backend, worst)
	}
}

func TestDemoModelReproducesTraining(t *testing.T) {
	dir := filepath.Join(testenv.Root(), "models", "demo")
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if missing := MissingOnnxGoOps(m.Graph); len(missing) > 0 {
		t.Fatalf("the demo model uses operators onnx-go lacks: %v", missing)
	}
	for _, b := range []string{ONNXRuntime, ONNXGo} {
		t.Run(b, func(t *testing.T) { checkReference(t, m, dir, b) })
	}
}

// fixtureChips cuts the first n chips of a small fixture scene for the card.
func fixtureChips(t *testing.T, card *Card, n int) []mm.Chip {
	t.Helper()
	res, err := fixtures.Write(t.TempDir(), fixtures.Options{SizeKM: 2})
	if err != nil {
		t.Fatal(err)
	}
	ingest.ResolveHrefs(res.Scene, res.Dir)
	src, err := ingest.Open(context.Background(), res.Scene, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	grid, err := tiles.NewGrid(src, tiles.GridOptions{FootprintM: card.Chip.FootprintM})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiles.NewCutter(src, grid, card.Chip, tiles.CutOptions{MinValid: 0.01, MaxCloud: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var chips []mm.Chip
	for _, id := range grid.Chips[:min(n, len(grid.Chips))] {
		chip, _, err := c.Cut(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		chips = append(chips, chip)
	}
	return chips
}

func scoreWith(t *testing.T, m *Model, backend string, batch int, chips []mm.Chip) []mm.Scores {
	t.Helper()
	s, err := NewScorer(m, ScorerOptions{BackendOptions: BackendOptions{Backend: backend}, BatchSize: batch})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Backend() != backend {
		t.Fatalf("asked for %s, got %s", backend, s.Backend())
	}
	scores, err := s.Score(context.Background(), chips)
	if err != nil {
		t.Fatal(err)
	}
	if len(scores) != len(chips) {
		t.Fatalf("%d scores for %d chips", len(scores), len(chips))
	}
	return scores
}

func maxDiff(a, b []mm.Scores) float64 {
	d := 0.0
	for i := range a {
		for c := range a[i] {
			d = math.Max(d, math.Abs(a[i][c]-b[i][c]))
		}
	}
	return d
}

func TestBackendsAgreeOnFixtureChips(t *testing.T) {
	m, err := Load(filepath.Join(testenv.Root(), "models", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	chips := fixtureChips(t, m.Card, 9)
	ort := scoreWith(t, m, ONNXRuntime, 4, chips)
	gonnx := scoreWith(t, m, ONNXGo, 4, chips)
	if d := maxDiff(ort, gonnx); d > 1e-4 {
		t.Errorf("onnxruntime and onnx-go differ by %g on fixture chips", d)
	}
	for _, s := range ort {
		for _, v := range s {
			if v < 0 || v > 1 || math.IsNaN(v) {
				t.Fatalf("score %v is not a probability", v)
			}
		}
	}
}

// TestOnnxGoBatchOfOne pins the workaround for onnx-go's batch-1 bug: the
// same chip scored again and again, one at a time, gets the same scores,
// and they are ONNX Runtime's.
func TestOnnxGoBatchOfOne(t *testing.T) {
	m, err := Load(filepath.Join(testenv.Root(), "models", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	chips := fixtureChips(t, m.Card, 2)
	s, err := NewScorer(m, ScorerOptions{BackendOptions: BackendOptions{Backend: ONNXGo}, BatchSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := scoreWith(t, m, ONNXRuntime, 1, chips[:1])
	for run := range 5 {
		got, err := s.Score(context.Background(), chips[:1])
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(got, want); d > 1e-5 {
			t.Fatalf("run %d: onnx-go batch of one differs from onnxruntime by %g: %v vs %v", run+1, d, got[0], want[0])
		}
		// another chip in between must not disturb the next run either
		if _, err := s.Score(context.Background(), chips[1:2]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestScorerReusesItsBatchBuffer: a scorer copies each batch into values it
// keeps from the call before (of another size, longer or shorter); the
// scores of each call are those a new scorer gives the same chips, and the
// chips themselves are left as they were.
func TestScorerReusesItsBatchBuffer(t *testing.T) {
	m, err := Load(filepath.Join(testenv.Root(), "models", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	chips := fixtureChips(t, m.Card, 8)
	before := make([][]float32, len(chips))
	for i, c := range chips {
		before[i] = slices.Clone(c.Inputs[0].Data)
	}
	s, err := NewScorer(m, ScorerOptions{BackendOptions: BackendOptions{Backend: ONNXRuntime}, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, part := range [][2]int{{0, 4}, {4, 5}, {5, 8}, {1, 4}} {
		got, err := s.Score(context.Background(), chips[part[0]:part[1]])
		if err != nil {
			t.Fatal(err)
		}
		want := scoreWith(t, m, ONNXRuntime, 4, chips[part[0]:part[1]])
		if d := maxDiff(got, want); d != 0 {
			t.Errorf("chips %d-%d: a scorer used before differs from a new one by %g", part[0], part[1]-1, d)
		}
	}
	for i, c := range chips {
		if !slices.Equal(c.Inputs[0].Data, before[i]) {
			t.Errorf("chip %d: scoring changed its values", i)
		}
	}
}
