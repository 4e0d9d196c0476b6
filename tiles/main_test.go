package tiles

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/airbusgeo/godal"
	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/internal/testenv"
	"github.com/methanemap/methanemap/model"
	"github.com/paulmach/orb/geojson"
)

var (
	fixtureOnce sync.Once
	fixtureRes  *fixtures.Result
	fixtureErr  error
	tmpRoot     string
)

func TestMain(m *testing.M) {
	var err error
	tmpRoot, err = os.MkdirTemp("", "tiles-test-")
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

// fixtureScene is one 4 km fixture scene with the six default facilities,
// written once for the package's tests.
func fixtureScene(t testing.TB) *fixtures.Result {
	t.Helper()
	fixtureOnce.Do(func() {
		fixtureRes, fixtureErr = fixtures.Write(filepath.Join(tmpRoot, "scene"), fixtures.Options{SizeKM: 4})
		if fixtureErr == nil {
			ingest.ResolveHrefs(fixtureRes.Scene, fixtureRes.Dir)
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureRes
}

// fixtureGrid opens the fixture scene and lays the demo card's grid on it.
func fixtureGrid(t testing.TB) (*fixtures.Result, *model.Card, *ingest.Source, *Grid) {
	t.Helper()
	res := fixtureScene(t)
	card := demoCard(t)
	src := openScene(t, res.Scene)
	grid, err := NewGrid(src, GridOptions{FootprintM: card.Chip.FootprintM})
	if err != nil {
		t.Fatal(err)
	}
	return res, card, src, grid
}

func demoCard(t testing.TB) *model.Card {
	t.Helper()
	c, err := model.LoadCard(filepath.Join(testenv.Root(), "models", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openScene(t testing.TB, sc *mm.Scene) *ingest.Source {
	t.Helper()
	src, err := ingest.Open(context.Background(), sc, ingest.Options{AnyResolution: true}) // geometry tests: decimated real files too
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// gdalwarpChip runs the gdalwarp command-line tool on src for the window
// and reads back band (1-based) of its output.
func gdalwarpChip(t testing.TB, src string, band int, w ingest.Window, alg string) []float32 {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle.tif")
	f := func(v float64) string { return fmt.Sprintf("%.6f", v) }
	args := []string{"-q", "-overwrite", "-t_srs", fmt.Sprintf("EPSG:%d", w.EPSG),
		"-te", f(w.Bounds[0]), f(w.Bounds[1]), f(w.Bounds[2]), f(w.Bounds[3]),
		"-ts", fmt.Sprint(w.Width), fmt.Sprint(w.Height), "-r", alg, "-ot", "Float32", "-dstnodata", "nan", "-nosrcalpha",
		"-ovr", "NONE"} // from full resolution: the real NAIP has overviews (issue 18)
	// the recipe's chunks (16 MiB): where GDAL approximates positions, it
	// interpolates them per chunk
	args = append(args, "-wm", "16")
	if w.Fixed {
		args = append(args, "-et", "0")
	}
	testenv.Run(t, "", "gdalwarp", append(args, src, out)...)
	ds, err := godal.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	buf := make([]float32, w.Width*w.Height)
	if err := ds.Bands()[band-1].Read(0, 0, buf, w.Width, w.Height); err != nil {
		t.Fatal(err)
	}
	return buf
}

// sameValues compares two rasters: NaN where the other is NaN, values equal
// within tol elsewhere. It returns a description of the first difference.
func sameValues(got, want []float32, tol float64) (string, bool) {
	return compareRasters(got, want, func(i int, w float64) float64 { return tol * math.Max(1, math.Abs(w)) })
}

// nearValues compares a w-pixel-wide raster warped with the lattice's
// positions (ingest.Window.Fixed) with gdalwarp's exact ones: NaN where
// the other is NaN, and elsewhere values no further apart than a position
// error of pos window pixels can take them — pos times the steepest
// change to a neighbouring pixel of gdalwarp's output, along both axes
// — plus 2 float ulps. It returns a description of the first
// difference.
func nearValues(got, want []float32, w int, pos float64) (string, bool) {
	return compareRasters(got, want, func(i int, e float64) float64 {
		steep := 0.0
		x, y := i%w, i/w
		for _, d := range [][2]int{{-1, 0}, {1, 0}, {0, -1}, {0, 1}} {
			nx, ny := x+d[0], y+d[1]
			if nx < 0 || ny < 0 || nx >= w || (ny*w+nx) >= len(want) {
				continue
			}
			if v := float64(want[ny*w+nx]); !math.IsNaN(v) {
				steep = max(steep, math.Abs(v-e))
			}
		}
		return pos*2*steep + 2*float64(math.Nextafter32(float32(math.Abs(e)), float32(math.Inf(1)))-float32(math.Abs(e)))
	})
}

// compareRasters is sameValues' and nearValues' comparison: the same
// length, NaN in the same places, and elsewhere values no further apart
// than allowed(i, want[i]). It returns a description of the first
// difference.
func compareRasters(got, want []float32, allowed func(i int, want float64) float64) (string, bool) {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d vs %d", len(got), len(want)), false
	}
	for i := range got {
		g, e := float64(got[i]), float64(want[i])
		if math.IsNaN(g) != math.IsNaN(e) {
			return fmt.Sprintf("pixel %d: %v vs %v (nodata differs)", i, g, e), false
		}
		if math.IsNaN(g) {
			continue
		}
		if tol := allowed(i, e); math.Abs(g-e) > tol {
			return fmt.Sprintf("pixel %d: %v vs %v (allowed %g)", i, g, e, tol), false
		}
	}
	return "", true
}

func readGeoJSON(t testing.TB, path string) *geojson.FeatureCollection {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := geojson.UnmarshalFeatureCollection(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return fc
}
