package tiles

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
)

func TestZZ720(t *testing.T) {
	ingest.SetCacheMax(64)
	data, _ := os.ReadFile("/tmp/s3/scene.json")
	sc, _ := mm.ParseScene(data)
	ingest.ResolveHrefs(sc, filepath.Dir("/tmp/s3/scene.json"))
	src := openScene(t, sc)
	grid, _ := NewGrid(src, GridOptions{})
	spec := demoCard(t).Chip
	spec.Inputs[0].Size = 720
	c, err := NewCutter(src, grid, spec, CutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := grid.Chips[len(grid.Chips)/2]
	for _, plan := range c.inputs {
		for _, rd := range plan.reads {
			var buf []float32
			for k := 0; k < 3; k++ {
				t0 := time.Now()
				buf, err = rd.raster.WarpInto(context.Background(), c.Window(id, 720), rd.resampling, buf)
				if err != nil {
					t.Fatal(err)
				}
				if k == 2 {
					t.Logf("%s %s bands %d: %v", rd.raster.Field[:min(30, len(rd.raster.Field))], rd.resampling, len(rd.raster.Bands), time.Since(t0))
				}
			}
		}
	}
	for k := 0; k < 3; k++ {
		t0 := time.Now()
		c.Cut(context.Background(), id)
		t.Logf("whole cut %v", time.Since(t0))
	}
}
