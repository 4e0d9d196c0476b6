package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/tiles"
)

// BenchmarkScore10km scores a 10 km x 10 km three-sensor fixture scene end
// to end (score to a GeoJSON file), and in the same iteration measures
// chip building alone and inference alone on as many chips. It reports
// each as chips/s, end to end as km²/h, and the ratio of the end-to-end
// time to the slower stage (1.0: the pipeline hides the faster stage).
func BenchmarkScore10km(b *testing.B) {
	dir := b.TempDir()
	res, err := fixtures.Write(filepath.Join(dir, "scene"), fixtures.Options{SizeKM: 10})
	if err != nil {
		b.Fatal(err)
	}
	m, err := loadModel("")
	if err != nil {
		b.Fatal(err)
	}
	scorer, err := model.NewScorer(m, model.ScorerOptions{BatchSize: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer scorer.Close()
	var cutT, inferT, e2eT time.Duration
	var chips int
	var km2 float64
	for i := range b.N {
		// chip building alone, with as many cutters as score uses
		t0 := time.Now()
		cut, err := cutAll(res, m.Card.Chip, runtime.NumCPU())
		if err != nil {
			b.Fatal(err)
		}
		cutT += time.Since(t0)
		// inference alone, on the same chips
		t0 = time.Now()
		if _, err := scorer.Score(context.Background(), cut); err != nil {
			b.Fatal(err)
		}
		inferT += time.Since(t0)
		// end to end
		out := filepath.Join(dir, "det.geojson")
		os.Remove(out)
		var stdout, stderr bytes.Buffer
		t0 = time.Now()
		if code := run(context.Background(), []string{"score", "--scene", res.SceneFile, "-o", out, "--quiet"}, &stdout, &stderr); code != 0 {
			b.Fatalf("score: %s", stderr.String())
		}
		e2eT += time.Since(t0)
		if i == 0 {
			chips = len(cut)
			km2 = float64(len(cut)) * 0.72 * 0.72
			b.Logf("%d chips; %s", len(cut), bytes.TrimSpace(stdout.Bytes()))
		}
	}
	n := float64(chips * b.N)
	b.ReportMetric(n/cutT.Seconds(), "cut-chips/s")
	b.ReportMetric(n/inferT.Seconds(), "infer-chips/s")
	b.ReportMetric(n/e2eT.Seconds(), "e2e-chips/s")
	b.ReportMetric(km2*float64(b.N)/e2eT.Hours(), "e2e-km2/h")
	b.ReportMetric(e2eT.Seconds()/max(cutT.Seconds(), inferT.Seconds()), "e2e/slower-stage")
}

// cutAll cuts every chip of a scene with n goroutines, each on its own
// opened rasters, as score does.
func cutAll(res *fixtures.Result, spec mm.ChipSpec, n int) ([]mm.Chip, error) {
	sc := *res.Scene
	ingest.ResolveHrefs(&sc, res.Dir)
	src, err := ingest.Open(context.Background(), &sc, ingest.Options{})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	grid, err := tiles.NewGrid(src, tiles.GridOptions{})
	if err != nil {
		return nil, err
	}
	parts := make([][]mm.Chip, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := ingest.Open(context.Background(), &sc, ingest.Options{})
			if err != nil {
				errs[w] = err
				return
			}
			defer s.Close()
			c, err := tiles.NewCutter(s, grid, spec, tiles.CutOptions{})
			if err != nil {
				errs[w] = err
				return
			}
			defer c.Close()
			var ids []mm.ChipID
			for i := w; i < len(grid.Chips); i += n {
				ids = append(ids, grid.Chips[i])
			}
			_, errs[w] = c.EachOf(context.Background(), ids, func(ch mm.Chip) error { parts[w] = append(parts[w], ch); return nil })
		}()
	}
	wg.Wait()
	var all []mm.Chip
	for w := range n {
		if errs[w] != nil {
			return nil, errs[w]
		}
		all = append(all, parts[w]...)
	}
	return all, nil
}
