package publisher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"
)

func square(x, y, d float64, clockwise bool) orb.Polygon {
	r := orb.Ring{{x, y}, {x + d, y}, {x + d, y + d}, {x, y + d}, {x, y}}
	if clockwise {
		r.Reverse()
	}
	return orb.Polygon{r}
}

func det(c mm.Class, col int, score float64, x float64) mm.Detection {
	id := mm.ChipID{EPSG: 32615, Footprint: 720, Col: col, Row: 1}
	return mm.Detection{ID: mm.DetectionID("s", id, c), Class: c, Score: score, SceneID: "s", ChipID: id, Footprint: square(x, 10, 0.01, false)}
}

func TestFeatureIsRFC7946(t *testing.T) {
	d := det(mm.CAFO, 1, 0.9, -93.6)
	d.Footprint = square(-93.6, 42, 0.01, true) // clockwise on purpose, and open
	d.Footprint[0] = d.Footprint[0][:4]
	f := Feature(d)
	ring := f.Geometry.(orb.Polygon)[0]
	if ring[0] != ring[len(ring)-1] || planar.Area(ring) <= 0 {
		t.Fatalf("ring %v: want closed and counter-clockwise", ring)
	}
	if f.ID != "s/32615:720:1:1/cafo" || f.Properties["class"] != "cafo" {
		t.Errorf("id %v properties %v", f.ID, f.Properties)
	}
}

func TestSitesMergeTouchingChipsOfOneClass(t *testing.T) {
	dets := []mm.Detection{
		det(mm.CAFO, 1, 0.9, 0.00), det(mm.CAFO, 2, 0.6, 0.01), // touching
		det(mm.CAFO, 5, 0.8, 0.05),     // apart
		det(mm.Landfill, 2, 0.7, 0.01), // same place, another class
	}
	sites := Sites(dets)
	if len(sites) != 3 {
		t.Fatalf("%d sites, want 3: %+v", len(sites), sites)
	}
	s := sites[0]
	if s.Class != mm.CAFO || len(s.Chips) != 2 || s.MaxScore != 0.9 {
		t.Fatalf("first site %+v", s)
	}
	// score-weighted: closer to the 0.9 chip's centre (0.005) than the 0.6 one's (0.015)
	want := (0.9*0.005 + 0.6*0.015) / 1.5
	if d := s.Center[0] - want; d > 1e-12 || d < -1e-12 {
		t.Errorf("centre %v, want x %v", s.Center, want)
	}
}

func TestFileSinksCommitOrLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	for _, ext := range []string{"geojson", "geojsonl", "gpkg", "fgb"} {
		path := filepath.Join(dir, "out."+ext)
		s, err := NewFileSink(path, "detections")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(Feature(det(mm.CAFO, 1, 0.9, 0))); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err == nil {
			t.Fatalf("%s visible before Commit", path)
		}
		s.Abort()
		left, _ := filepath.Glob(filepath.Join(dir, "*"))
		hidden, _ := filepath.Glob(filepath.Join(dir, ".*"))
		if len(left)+len(hidden) > 0 {
			t.Fatalf("Abort left %v %v", left, hidden)
		}
	}
	if _, err := NewFileSink(filepath.Join(dir, "out.shp"), "x"); err == nil || !strings.Contains(err.Error(), "unknown output format") {
		t.Errorf("shapefile: %v", err)
	}
}

func TestProbesPlaceSites(t *testing.T) {
	d := det(mm.CAFO, 1, 0.9, 0.00)
	alone := Sites([]mm.Detection{d})[0]
	probe := det(mm.CAFO, 2, 0.9, 0.005) // half a chip east
	moved := Sites([]mm.Detection{d}, Probe{Parent: d.ID, Detection: probe})[0]
	if !(moved.Center[0] > alone.Center[0]) || len(moved.Chips) != 1 {
		t.Errorf("a probe east of the chip should pull the site east and not join its chips: %v -> %v %v", alone.Center, moved.Center, moved.Chips)
	}
	other := Sites([]mm.Detection{d}, Probe{Parent: "another", Detection: probe})[0]
	if other.Center != alone.Center {
		t.Error("a probe of another detection moved the site")
	}
}
