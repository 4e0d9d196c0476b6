package ingest

import (
	"context"
	"math"
	"path/filepath"
	"runtime"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/paulmach/orb"
)

// textureRasters returns a writer of GeoTIFFs into dir holding a gradient
// with texture: neighbours differ by at most 252.
func textureRasters(t *testing.T, dir string) func(name string, epsg int, gt [6]float64, w, h, bands int, dtype string, nodata *float64) string {
	return func(name string, epsg int, gt [6]float64, w, h, bands int, dtype string, nodata *float64) string {
		return writeTestRaster(t, GeoTIFFSpec{Path: filepath.Join(dir, name), EPSG: epsg, GeoTransform: gt, Width: w, Height: h, Bands: bands, DataType: dtype, Nodata: nodata},
			func(i, yStart int) float64 { return float64((i*7919+yStart*31)%251 + i%w) })
	}
}

// lonLat is the point x, y of the CRS epsg in lon/lat.
func lonLat(t *testing.T, epsg int, x, y float64) orb.Point {
	tr, err := NewTransformer(epsg, 4326)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	p := []orb.Point{{x, y}}
	if err := tr.Points(p); err != nil {
		t.Fatal(err)
	}
	return p[0]
}

// TestFixedWarpsMatchGDALWarp warps rasters of two CRSs, neither the
// window's, onto the same Fixed windows, inside the rasters and across
// their edges, and compares each with the gdalwarp tool on the same
// switches (-et 0, every position exact). Between the two UTM zones'
// datums the lattice's positions are the exact ones to ~1e-9 pixel, and
// the values must be gdalwarp's (our kernel for nearest and bilinear,
// GDAL's for average) to the bit but for a rounding now and then (2 float
// ulps at most); in lon/lat they differ by the
// interpolation, and the values by at most what 1e-4 pixel can change
// them. Our kernel must be the one that ran where it applies, and GDAL's
// where GDAL would shrink the source with another formula. One lattice
// per window and source CRS, every point on its good cells.
func TestFixedWarpsMatchGDALWarp(t *testing.T) {
	dir := t.TempDir()
	zero := 0.0
	const x0, y0 = 446400.0, 4651920.0 // grid corner, EPSG:26915
	// values: a gradient with texture (neighbours differ by at most
	// maxStep), nodata now and then
	const maxStep = 252
	write := textureRasters(t, dir)
	// the north-west corner in lon/lat, for the EPSG:4326 rasters
	ll := []orb.Point{lonLat(t, 26915, x0-300, y0+300)}
	type raster struct {
		name   string
		path   string
		alg    string
		crs    string // source CRS: one lattice each; "": none
		bands  int
		kernel bool    // ours, not GDAL's
		tol    float64 // largest difference allowed; 0: 2 float ulps, as positions ~1e-9 pixel apart can make
	}
	// in lon/lat: 1e-4 window pixel of position, in source pixels (at
	// most 1.3 here), times the steepest change of value per source pixel
	lonlat := 1e-4 * 1.3 * 2 * maxStep
	rasters := []raster{
		// WGS 84 / UTM 15N (Sentinel-2's CRS) onto NAD83 / UTM 15N
		{"10 m UInt16, 4 bands", write("s10.tif", 32615, [6]float64{x0 - 300, 10, 0, y0 + 300, 0, -10}, 360, 330, 4, "UInt16", &zero), Bilinear, "32615", 4, true, 0},
		{"20 m UInt16, nodata", write("s20.tif", 32615, [6]float64{x0 - 300, 20, 0, y0 + 300, 0, -20}, 180, 165, 2, "UInt16", &zero), Bilinear, "32615", 2, true, 0},
		{"60 m UInt16", write("s60.tif", 32615, [6]float64{x0 - 300, 60, 0, y0 + 300, 0, -60}, 60, 55, 2, "UInt16", nil), Bilinear, "32615", 2, true, 0},
		{"20 m Byte, nearest", write("scl.tif", 32615, [6]float64{x0 - 300, 20, 0, y0 + 300, 0, -20}, 180, 165, 1, "Byte", &zero), Nearest, "32615", 1, true, 0},
		// GDAL's average kernel over the lattice's positions
		{"20 m UInt16, average", write("avg.tif", 32615, [6]float64{x0 - 300, 20, 0, y0 + 300, 0, -20}, 180, 165, 2, "UInt16", &zero), Average, "32615", 2, false, 0},
		// the window's CRS: no reprojection, the geotransforms' positions
		{"window's CRS, 20 m, shifted", write("same.tif", 26915, [6]float64{x0 - 295, 20, 0, y0 + 305, 0, -20}, 180, 165, 2, "UInt16", &zero), Bilinear, "26915", 2, true, 0},
		{"window's CRS, 10 m, aligned, 4 bands", write("naip.tif", 26915, [6]float64{x0 - 300, 10, 0, y0 + 300, 0, -10}, 360, 330, 4, "Byte", nil), Bilinear, "26915", 4, true, 0},
		// lon/lat (Sentinel-1 GRD's): ~8 x 10 m pixels, which GDAL shrinks
		// with its general kernel; ~16 x 20 m, enlarged with 4 samples
		{"EPSG:4326 Float32, shrunk", write("s1.tif", 4326, [6]float64{ll[0][0], 0.0001, 0, ll[0][1], 0, -0.00009}, 400, 380, 2, "Float32", nil), Bilinear, "4326", 2, false, lonlat},
		{"EPSG:4326 Float32, nodata", write("s1b.tif", 4326, [6]float64{ll[0][0], 0.0002, 0, ll[0][1], 0, -0.00018}, 200, 190, 2, "Float32", &zero), Bilinear, "4326", 2, true, lonlat},
	}
	sceneOf := func(rr raster) *mm.Scene {
		if rr.crs == "4326" || rr.name == "window's CRS, 20 m, shifted" {
			return scene(map[mm.Sensor]mm.Asset{mm.Sentinel1: {Href: rr.path, Bands: []string{"VV", "VH"}}})
		}
		return scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: rr.path, Bands: []string{"red", "green", "blue", "nir"}[:rr.bands]}})
	}
	windows := []struct {
		what   string
		dx, dy float64 // west and north edges from the grid corner, metres
		px     int
		res    float64 // window pixel, metres
	}{
		{"a block inside", 0, 0, 288, 10},
		{"across the rasters' east and south edges", 720, -720, 288, 10},
		// METER-ML's 720 px chip: a lattice of 25 px steps (positions.c's
		// lattice_step), every source enlarged
		{"a 1 m chip", 1440, -1440, 720, 1},
	}
	for _, wd := range windows {
		side := float64(wd.px) * wd.res
		shared := NewPositions(4)
		w := Window{EPSG: 26915, Bounds: [4]float64{x0 + wd.dx, y0 + wd.dy - side, x0 + wd.dx + side, y0 + wd.dy}, Width: wd.px, Height: wd.px, Fixed: true, Shared: shared}
		crss := map[string]bool{}
		for _, rr := range rasters {
			src, err := Open(context.Background(), sceneOf(rr), Options{AnyResolution: true}) // 20 m declared as NAIP: a geometry test
			if err != nil {
				t.Fatal(err)
			}
			runs := kernelRuns()
			got, err := src.Rasters[0].Warp(context.Background(), w, rr.alg)
			ran := kernelRuns() - runs
			src.Close()
			if err != nil {
				t.Fatalf("%s, %s: %v", wd.what, rr.name, err)
			}
			kernel := rr.kernel || (wd.res < 5 && rr.alg != Average) // enlarged: 4 samples
			if ran != map[bool]int{true: 1}[kernel] {
				t.Errorf("%s, %s: our kernel ran %d times, want %v", wd.what, rr.name, ran, kernel)
			}
			if rr.crs != "" {
				crss[rr.crs] = true
			}
			if n, want := shared.Tables(), len(crss); n != want {
				t.Errorf("%s, %s: %d lattices kept, want %d (one per source CRS)", wd.what, rr.name, n, want)
			}
			if n := shared.Exact(); n != 0 {
				t.Errorf("%s, %s: %d points off the lattice's good cells", wd.what, rr.name, n)
			}
			want := gdalwarpAll(t, rr.path, w, rr.alg)
			if len(got) != len(want) {
				t.Fatalf("%s, %s: %d values, gdalwarp %d", wd.what, rr.name, len(got), len(want))
			}
			diff, nan, worst, ulps := 0, 0, 0.0, 0
			for i := range want {
				g, e := got[i], want[i]
				if math.IsNaN(float64(e)) {
					nan++
				}
				if math.IsNaN(float64(g)) != math.IsNaN(float64(e)) {
					t.Fatalf("%s, %s: value %d: %v, gdalwarp %v (nodata differs)", wd.what, rr.name, i, g, e)
				}
				if math.Float32bits(g) != math.Float32bits(e) && g == g {
					diff++
					worst = max(worst, math.Abs(float64(g-e)))
					ulps = max(ulps, int(math.Abs(float64(int64(math.Float32bits(g))-int64(math.Float32bits(e))))))
				}
			}
			t.Logf("%s, %s: %d of %d values differ from gdalwarp's, by at most %g", wd.what, rr.name, diff, len(want), worst)
			if (rr.tol > 0 && worst > rr.tol) || (rr.tol == 0 && ulps > 2) {
				t.Errorf("%s, %s: %d values differ from gdalwarp's, by up to %g, %d ulps (allowed %g, or 2 ulps)", wd.what, rr.name, diff, worst, ulps, rr.tol)
			}
			if rr.alg == Nearest && diff > 0 {
				t.Errorf("%s, %s: %d nearest values differ from gdalwarp's", wd.what, rr.name, diff)
			}
			if nan == len(want) {
				t.Errorf("%s, %s: every value is nodata", wd.what, rr.name)
			}
			if wd.what == "across the rasters' east and south edges" && nan == 0 {
				t.Errorf("%s, %s: no nodata beyond the raster's edge", wd.what, rr.name)
			}
		}
		shared.Close()
	}
}

// TestLatticeStep: the step keeps the interpolation error in window pixels
// (step^2 x pixel) at most that of 8 pixels of 10 m, and ten times fewer
// nodes than 8 pixels would take at METER-ML's 1 m.
func TestLatticeStep(t *testing.T) {
	for _, c := range []struct {
		pixel float64
		want  int
	}{{60, 8}, {20, 8}, {10, 8}, {5, 11}, {1, 25}, {0.6, 32}, {0.3, 32}, {1e-6, 32}, {0, 32}, {-1, 32}, {math.NaN(), 32}} {
		got := latticeStep(c.pixel)
		if got != c.want {
			t.Errorf("pixel %v: step %d, want %d", c.pixel, got, c.want)
		}
		if c.pixel > 0 && c.pixel < 10 && float64(got*got)*c.pixel > 8*8*10 {
			t.Errorf("pixel %v: step %d errs more than 8 pixels of 10 m", c.pixel, got)
		}
	}
}

// TestLatticeFallsBackNearThePole warps a lon/lat raster around the North
// Pole onto a polar stereographic window (EPSG:3413): around the pole
// and across the antimeridian, longitudes do not interpolate, so the
// lattice's cells there must fail their check and be computed exactly,
// and the values then be gdalwarp's (-et 0) to the bit, nodata in the
// same places: nearest by our kernel, bilinear (shrinking the source) by
// GDAL's, whose weights depend on the source window its warper computes
// (found here: sampling the window's edges only, pixels near the pole
// came out nodata).
func TestLatticeFallsBackNearThePole(t *testing.T) {
	dir := t.TempDir()
	const sw, sh = 720, 100 // 0.5° x 0.005°: 89.5°N to the pole
	path := writeTestRaster(t, GeoTIFFSpec{Path: filepath.Join(dir, "polar.tif"), EPSG: 4326, GeoTransform: [6]float64{-180, 0.5, 0, 90, 0, -0.005},
		Width: sw, Height: sh, Bands: 1, DataType: "Float32"},
		func(i, yStart int) float64 { return 1000 + 3*float64(i%sw) + 5*float64(yStart+i/sw) })
	src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.Sentinel1: {Href: path, Bands: []string{"VV"}}}), Options{AnyResolution: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	const px = 400 // 100 m pixels, 20 km each side of the pole
	for _, alg := range []string{Nearest, Bilinear} {
		shared := NewPositions(1)
		w := Window{EPSG: 3413, Bounds: [4]float64{-20000, -20000, 20000, 20000}, Width: px, Height: px, Fixed: true, Shared: shared}
		runs := kernelRuns()
		got, err := src.Rasters[0].Warp(context.Background(), w, alg)
		if err != nil {
			t.Fatal(err)
		}
		if ours := kernelRuns() == runs+1; ours != (alg == Nearest) {
			t.Errorf("%s: our kernel ran: %v", alg, ours)
		}
		if n := shared.Exact(); n < px*px {
			t.Errorf("%s: %d points computed exactly, fewer than the window's %d pixels: lattice cells around the pole held", alg, n, px*px)
		}
		shared.Close()
		want := gdalwarpAll(t, path, w, alg)
		valid := 0
		for i := range want {
			g, e := got[i], want[i]
			if math.IsNaN(float64(g)) != math.IsNaN(float64(e)) || (g == g && g != e) {
				t.Fatalf("%s: pixel %d: %v, gdalwarp %v", alg, i, g, e)
			}
			if e == e {
				valid++
			}
		}
		if valid < px*px/2 {
			t.Fatalf("%s: only %d of %d pixels have data", alg, valid, px*px)
		}
	}
}

// TestKernelRunsEqualOnePixelAtATime enlarges rasters 4 to 24 times onto
// windows inside and across their edges (nodata, lon/lat, the window's own
// CRS): our kernel values the neighbours that share four samples in runs,
// two pixels at a time in SSE2's lanes, and must give the bits it gives
// one pixel at a time.
func TestKernelRunsEqualOnePixelAtATime(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("runs are SSE2's (x86-64)")
	}
	dir := t.TempDir()
	zero := 0.0
	const x0, y0 = 446400.0, 4651920.0 // EPSG:26915
	write := textureRasters(t, dir)
	ll := []orb.Point{lonLat(t, 26915, x0-300, y0+300)}
	rasters := []struct {
		name  string
		path  string
		s1    bool
		bands int
	}{
		{"20 m UInt16, nodata", write("s20.tif", 32615, [6]float64{x0 - 300, 20, 0, y0 + 300, 0, -20}, 90, 80, 2, "UInt16", &zero), false, 2},
		{"60 m UInt16", write("s60.tif", 32615, [6]float64{x0 - 300, 60, 0, y0 + 300, 0, -60}, 30, 28, 2, "UInt16", nil), false, 2},
		{"window's CRS, 10 m, shifted", write("same.tif", 26915, [6]float64{x0 - 295, 10, 0, y0 + 305, 0, -10}, 180, 160, 4, "Byte", nil), false, 4},
		{"EPSG:4326 Float32, nodata", write("s1.tif", 4326, [6]float64{ll[0][0], 0.0002, 0, ll[0][1], 0, -0.00018}, 100, 95, 2, "Float32", &zero), true, 2},
	}
	defer setKernelRuns(true)
	for _, wd := range []struct{ dx, dy float64 }{{0, 0}, {900, -800}} {
		const px = 288
		side := px * 2.5
		w := Window{EPSG: 26915, Bounds: [4]float64{x0 + wd.dx, y0 + wd.dy - side, x0 + wd.dx + side, y0 + wd.dy}, Width: px, Height: px, Fixed: true, Shared: NewPositions(4)}
		for _, rr := range rasters {
			sc := scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: rr.path, Bands: []string{"red", "green", "blue", "nir"}[:rr.bands]}})
			if rr.s1 {
				sc = scene(map[mm.Sensor]mm.Asset{mm.Sentinel1: {Href: rr.path, Bands: []string{"VV", "VH"}}})
			}
			src, err := Open(context.Background(), sc, Options{AnyResolution: true})
			if err != nil {
				t.Fatal(err)
			}
			warp := func(runs bool) ([]float32, int, int) {
				setKernelRuns(runs)
				k, p := kernelRuns(), runPixels()
				vals, err := src.Rasters[0].Warp(context.Background(), w, Bilinear)
				if err != nil {
					t.Fatalf("%s: %v", rr.name, err)
				}
				return vals, kernelRuns() - k, runPixels() - p
			}
			alone, k1, p1 := warp(false)
			inRuns, k2, p2 := warp(true)
			src.Close()
			if k1 != 1 || k2 != 1 || p1 != 0 || p2 < len(alone)/rr.bands/4 {
				t.Fatalf("%s at %v: our kernel ran %d and %d times, %d and %d pixels in runs", rr.name, wd, k1, k2, p1, p2)
			}
			nan := 0
			for i := range alone {
				if math.Float32bits(alone[i]) != math.Float32bits(inRuns[i]) {
					t.Fatalf("%s at %v: value %d is %v in runs, %v one pixel at a time", rr.name, wd, i, inRuns[i], alone[i])
				}
				if alone[i] != alone[i] {
					nan++
				}
			}
			t.Logf("%s at %v: %d values equal (%d nodata), %d of %d pixels in runs", rr.name, wd, len(alone), nan, p2, len(alone)/rr.bands)
		}
		w.Shared.Close()
	}
}
