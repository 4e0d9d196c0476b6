package tiles

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"
)

func TestGridIsAlignedAndCoversTheScene(t *testing.T) {
	res := fixtureScene(t)
	src := openScene(t, res.Scene)
	for _, stride := range []int{720, 360} {
		grid, err := NewGrid(src, GridOptions{StrideM: stride})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, id := range grid.Chips {
			b := id.Bounds()
			if math.Mod(b[0], float64(stride)) != 0 || math.Mod(b[1], float64(stride)) != 0 || b[2]-b[0] != 720 {
				t.Fatalf("chip %s bounds %v not on the %d m lattice from the CRS origin", id, b, stride)
			}
			if seen[id.String()] {
				t.Fatalf("chip %s listed twice", id)
			}
			seen[id.String()] = true
		}
		// a 4 km scene snapped to 60 m spans 6 or 7 columns of 720 m cells
		// (4 or 5 of them whole); with half the stride about twice as many
		cells := int(math.Ceil(4000/float64(stride))) + 1
		if n := len(grid.Chips); n < (cells-1)*(cells-1) || n > (cells+1)*(cells+1) {
			t.Errorf("stride %d: %d chips for a 4 km scene, want about %d", stride, n, cells*cells)
		}
	}
}

// TestSameGroundSameChipID writes two overlapping scenes, with NAIP in
// different CRSs, and checks that chips over common ground share their ids
// when the grid CRS is the same.
func TestSameGroundSameChipID(t *testing.T) {
	dir := t.TempDir()
	a, err := fixtures.Write(filepath.Join(dir, "a"), fixtures.Options{SizeKM: 2, Center: orb.Point{-93.62, 42.03}, Plants: []fixtures.Plant{}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := fixtures.Write(filepath.Join(dir, "b"), fixtures.Options{SizeKM: 2, Center: orb.Point{-93.61, 42.035}, Plants: []fixtures.Plant{}, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(r *fixtures.Result) map[string]mm.ChipID {
		ingest.ResolveHrefs(r.Scene, r.Dir)
		g, err := NewGrid(openScene(t, r.Scene), GridOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]mm.ChipID{}
		for _, id := range g.Chips {
			m[id.String()] = id
		}
		return m
	}
	ia, ib := ids(a), ids(b)
	common := 0
	for k := range ia {
		if _, ok := ib[k]; ok {
			common++
		}
	}
	// the scenes overlap by about 1.2 x 1.4 km: at least one whole cell
	if common == 0 {
		t.Fatalf("no common chip ids between overlapping scenes: %v / %v", ia, ib)
	}
}

func TestAOILimitsChips(t *testing.T) {
	res := fixtureScene(t)
	src := openScene(t, res.Scene)
	full, err := NewGrid(src, GridOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// a small triangle around the first truth point, in lon/lat
	p := truthPoints(t, res)[0]
	d := 0.002
	aoi := orb.Polygon{{{p[0] - d, p[1] - d}, {p[0] + d, p[1] - d}, {p[0], p[1] + d}, {p[0] - d, p[1] - d}}}
	grid, err := NewGrid(src, GridOptions{AOIs: []orb.Geometry{aoi}})
	if err != nil {
		t.Fatal(err)
	}
	if len(grid.Chips) == 0 || len(grid.Chips) >= len(full.Chips) {
		t.Fatalf("AOI kept %d of %d chips", len(grid.Chips), len(full.Chips))
	}
	// every kept chip touches the AOI, every dropped one does not, judged
	// in lon/lat with GDAL's transform of the chip corners
	kept := map[string]bool{}
	for _, id := range grid.Chips {
		kept[id.String()] = true
	}
	toLL, err := ingest.NewTransformer(full.EPSG, 4326)
	if err != nil {
		t.Fatal(err)
	}
	defer toLL.Close()
	for _, id := range full.Chips {
		b := id.Bounds()
		ring := orb.Ring{{b[0], b[1]}, {b[2], b[1]}, {b[2], b[3]}, {b[0], b[3]}, {b[0], b[1]}}
		if err := toLL.Points(ring); err != nil {
			t.Fatal(err)
		}
		touches := false
		for _, q := range aoi[0] {
			touches = touches || planar.RingContains(ring, q)
		}
		for _, q := range ring {
			touches = touches || planar.PolygonContains(aoi, q)
		}
		if touches && !kept[id.String()] {
			t.Errorf("chip %s overlaps the AOI but was dropped", id)
		}
		if kept[id.String()] && !touches && !edgesCross(ring, aoi[0]) {
			t.Errorf("chip %s was kept but does not touch the AOI", id)
		}
	}
}

func TestTwoAOIsMustBothBeTouched(t *testing.T) {
	res := fixtureScene(t)
	src := openScene(t, res.Scene)
	pts := truthPoints(t, res)
	box := func(p orb.Point) orb.Polygon {
		d := 0.001
		return orb.Polygon{{{p[0] - d, p[1] - d}, {p[0] + d, p[1] - d}, {p[0] + d, p[1] + d}, {p[0] - d, p[1] + d}, {p[0] - d, p[1] - d}}}
	}
	one, err := NewGrid(src, GridOptions{AOIs: []orb.Geometry{box(pts[0])}})
	if err != nil {
		t.Fatal(err)
	}
	both, err := NewGrid(src, GridOptions{AOIs: []orb.Geometry{box(pts[0]), orb.MultiPolygon{box(pts[0]), box(pts[3])}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Chips) == 0 || len(both.Chips) != len(one.Chips) {
		t.Errorf("AOI around plant 0: %d chips; with a second AOI holding it too: %d", len(one.Chips), len(both.Chips))
	}
	// plants 0 and 3 are 2.4 km apart: no chip touches boxes around both
	_, err = NewGrid(src, GridOptions{AOIs: []orb.Geometry{box(pts[0]), box(pts[3])}})
	if err == nil || !strings.Contains(err.Error(), "aoi: no chip") {
		t.Errorf("disjoint AOIs: error %v", err)
	}
}

func edgesCross(a, b orb.Ring) bool {
	for i := 0; i+1 < len(a); i++ {
		for j := 0; j+1 < len(b); j++ {
			if segmentsIntersect(a[i], a[i+1], b[j], b[j+1]) {
				return true
			}
		}
	}
	return false
}

func truthPoints(t testing.TB, res *fixtures.Result) []orb.Point {
	t.Helper()
	fc := readGeoJSON(t, res.TruthFile)
	var pts []orb.Point
	for _, f := range fc.Features {
		pts = append(pts, f.Geometry.(orb.Point))
	}
	return pts
}

func TestGridErrors(t *testing.T) {
	res := fixtureScene(t)
	// a second scene far away: its Sentinel-1 shares no ground with the first
	dir := t.TempDir()
	far, err := fixtures.Write(dir, fixtures.Options{SizeKM: 1, Center: orb.Point{-90.0, 35.0}, Plants: []fixtures.Plant{}})
	if err != nil {
		t.Fatal(err)
	}
	ingest.ResolveHrefs(far.Scene, far.Dir)
	tests := []struct {
		name string
		sc   *mm.Scene
		opts GridOptions
		want string
	}{
		{"sensors do not overlap", &mm.Scene{ID: "x", Assets: map[mm.Sensor]mm.Asset{
			mm.NAIP: res.Scene.Assets[mm.NAIP], mm.Sentinel1: far.Scene.Assets[mm.Sentinel1]}}, GridOptions{}, "sensors do not overlap"},
		{"aoi outside the scene", res.Scene, GridOptions{AOIs: []orb.Geometry{orb.Polygon{{{10, 10}, {10.1, 10}, {10.1, 10.1}, {10, 10}}}}}, "aoi: does not overlap"},
		{"aoi that is not a polygon", res.Scene, GridOptions{AOIs: []orb.Geometry{orb.LineString{{1, 1}, {2, 2}}}}, "aoi: must be a Polygon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := ingest.Open(context.Background(), tt.sc, ingest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			_, err = NewGrid(src, tt.opts)
			if err == nil || !mm.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v: want a permanent %q", err, tt.want)
			}
		})
	}
}

func TestSkipRules(t *testing.T) {
	res := fixtureScene(t)
	card := demoCard(t)
	src := openScene(t, res.Scene)
	grid, err := NewGrid(src, GridOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCutter(src, grid, card.Chip, CutOptions{MinValid: 0.9, MaxCloud: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	st, err := c.Each(context.Background(), func(chip mm.Chip) error {
		n++
		if chip.ValidFraction < 0.9 || chip.CloudFraction > 0.05 {
			t.Errorf("chip %s scored with valid %.2f cloud %.2f", chip.ID, chip.ValidFraction, chip.CloudFraction)
		}
		if len(chip.Footprint) != 1 || len(chip.Footprint[0]) != 5 || planar.Area(chip.Footprint[0]) <= 0 {
			t.Errorf("chip %s footprint %v is not a counter-clockwise square", chip.ID, chip.Footprint)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Cut != n || st.Cut+st.Skipped[SkipNodata]+st.Skipped[SkipCloud] != len(grid.Chips) {
		t.Errorf("stats %+v do not add up to %d chips", st, len(grid.Chips))
	}
	// the fixture has a cloud and a cut corner away from the facilities
	if st.Skipped[SkipCloud] == 0 || st.Skipped[SkipNodata] == 0 {
		t.Errorf("want chips skipped for cloud and for nodata, got %v", st.Skipped)
	}
}

func TestCutStopsWhenCancelled(t *testing.T) {
	res := fixtureScene(t)
	src := openScene(t, res.Scene)
	grid, err := NewGrid(src, GridOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCutter(src, grid, demoCard(t).Chip, CutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err = c.Each(ctx, func(mm.Chip) error {
		n++
		cancel()
		return nil
	})
	if err != context.Canceled || n != 1 {
		t.Fatalf("Each after cancel: err %v after %d chips", err, n)
	}
}

// TestInsideBoundsValidFraction checks Grid.Inside against the chips
// themselves: no chip has more pixels with data than its share inside the
// rasters' footprints allows (give or take the edge strips), so the chips
// the cutter skips unread are chips a full cut would skip too.
func TestInsideBoundsValidFraction(t *testing.T) {
	for _, probes := range []bool{false, true} { // the grid's chips, then probes
		_, card, src, grid := fixtureGrid(t)
		c, err := NewCutter(src, grid, card.Chip, CutOptions{Block: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ids := slices.Clone(grid.Chips)
		if probes { // half-shifted chips all over, edges included
			ids = nil
			for _, id := range grid.Chips {
				ids = append(ids, mm.ChipID{EPSG: id.EPSG, Footprint: id.Footprint, Stride: id.Footprint / 2, Col: id.Col*2 - 1, Row: id.Row*2 - 1})
			}
		}
		unread, partial := 0, 0
		for _, id := range ids {
			inside := grid.Inside(id)
			valid := 1.0
			for _, plan := range c.inputs { // the full cut, without the shortcut
				_, v, err := c.cutInput(context.Background(), id, plan)
				if err != nil {
					t.Fatal(err)
				}
				valid = math.Min(valid, v)
			}
			if valid > inside+c.edge {
				t.Errorf("chip %s: %.3f of its pixels have data, but only %.3f of it is inside the rasters", id, valid, inside)
			}
			if inside < 1 {
				partial++
			}
			if inside < c.opts.MinValid-c.edge {
				unread++
				if _, skip, _ := c.Cut(context.Background(), id); skip != SkipNodata {
					t.Errorf("chip %s: inside %.3f, skip %q", id, inside, skip)
				}
			}
		}
		t.Logf("%d chips: %d partly outside the rasters, %d skipped unread", len(ids), partial, unread)
		if unread == 0 || partial == 0 {
			t.Errorf("no chip partly outside (%d) or skipped unread (%d): the test shows nothing", partial, unread)
		}
		c.Close()
	}
}
