package pipeline

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
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

// TestFirstErrorWins: a truncated NAIP fails the cutter that reads its
// damaged part; the other cutters and the scorer stop on the cancelled
// context. The scene's error is the first one, GDAL's, naming the file,
// and permanent (retrying reads the same bytes), never "context canceled".
func TestFirstErrorWins(t *testing.T) {
	res, err := fixtures.Write(t.TempDir(), fixtures.Options{SizeKM: 3})
	if err != nil {
		t.Fatal(err)
	}
	ingest.ResolveHrefs(res.Scene, res.Dir)
	naip := res.Scene.Assets[mm.NAIP].Href
	data, err := os.ReadFile(naip)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(naip, data[:len(data)*6/10], 0o644); err != nil {
		t.Fatal(err)
	}
	s := demoScorer(t)
	for range 5 { // the race it lost was not every time
		_, err := Run(context.Background(), res.Scene, s, Options{Cutters: 3})
		if err == nil {
			t.Fatal("a truncated NAIP was scored")
		}
		if errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("the scene failed with %v, not the read error that caused it", err)
		}
		if !mm.IsPermanent(err) || !strings.Contains(err.Error(), "naip.tif") {
			t.Errorf("error %v: want a permanent error naming naip.tif", err)
		}
	}
}
