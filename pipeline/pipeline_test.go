package pipeline

import (
	"context"
	"errors"
	"testing"

	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/models"
)

func demoScorer(t *testing.T) *model.Scorer {
	t.Helper()
	m, err := model.LoadFS(models.Demo, models.DemoDir, "built-in:demo")
	if err != nil {
		t.Fatal(err)
	}
	s, err := model.NewScorer(m, model.ScorerOptions{BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCuttersDoNotChangeResults scores one scene with one and with three
// cutting goroutines: same detections, probes and counts.
func TestCuttersDoNotChangeResults(t *testing.T) {
	res, err := fixtures.Write(t.TempDir(), fixtures.Options{SizeKM: 3})
	if err != nil {
		t.Fatal(err)
	}
	ingest.ResolveHrefs(res.Scene, res.Dir)
	s := demoScorer(t)
	one, err := Run(context.Background(), res.Scene, s, Options{Cutters: 1})
	if err != nil {
		t.Fatal(err)
	}
	three, err := Run(context.Background(), res.Scene, s, Options{Cutters: 3})
	if err != nil {
		t.Fatal(err)
	}
	if one.Scored == 0 || len(one.Detections) == 0 || len(one.Probes) == 0 {
		t.Fatalf("nothing found: %+v", one)
	}
	ids := func(r Result) map[string]float64 {
		m := map[string]float64{}
		for _, d := range r.Detections {
			m[d.ID] = d.Score
		}
		return m
	}
	a, b := ids(one), ids(three)
	if len(a) != len(b) || one.Scored != three.Scored || len(one.Probes) != len(three.Probes) {
		t.Fatalf("1 cutter: %d detections, %d scored, %d probes; 3 cutters: %d, %d, %d",
			len(a), one.Scored, len(one.Probes), len(b), three.Scored, len(three.Probes))
	}
	for id, v := range a {
		if b[id] != v {
			t.Errorf("%s: %v with one cutter, %v with three", id, v, b[id])
		}
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	res, err := fixtures.Write(t.TempDir(), fixtures.Options{SizeKM: 3})
	if err != nil {
		t.Fatal(err)
	}
	ingest.ResolveHrefs(res.Scene, res.Dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, res.Scene, demoScorer(t), Options{Cutters: 2}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}
