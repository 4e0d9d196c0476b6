package ingest

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/paulmach/orb"
)

// TestSharedPositionsMatchGDALWarp warps rasters of two CRSs, neither the
// window's, onto the same exact windows with shared positions: each
// warp's values are those of the gdalwarp tool on the same switches, to
// the bit, and the positions are computed once per window and source CRS
// (the rasters of one CRS but of other resolutions use the first one's).
func TestSharedPositionsMatchGDALWarp(t *testing.T) {
	dir := t.TempDir()
	zero := 0.0
	const x0, y0 = 446400.0, 4651920.0 // grid corner, EPSG:26915
	write := func(name string, epsg int, gt [6]float64, w, h, bands int, dtype string, nodata *float64) string {
		return writeTestRaster(t, GeoTIFFSpec{Path: filepath.Join(dir, name), EPSG: epsg, GeoTransform: gt, Width: w, Height: h, Bands: bands, DataType: dtype, Nodata: nodata},
			func(i, yStart int) float64 { return float64((i*7919+yStart*31)%251 + i%w) }) // a gradient with texture, nodata now and then
	}
	// the north-west corner in lon/lat, for the EPSG:4326 raster
	toLL, err := NewTransformer(26915, 4326)
	if err != nil {
		t.Fatal(err)
	}
	ll := []orb.Point{{x0 - 300, y0 + 300}}
	if err := toLL.Points(ll); err != nil {
		t.Fatal(err)
	}
	toLL.Close()
	type raster struct {
		name  string
		path  string
		alg   string
		group string // rasters of one group share positions; "": none kept
		bands int
	}
	rasters := []raster{
		// WGS 84 / UTM 15N (Sentinel-2's CRS) onto NAD83 / UTM 15N
		{"10 m UInt16, 4 bands", write("s10.tif", 32615, [6]float64{x0 - 300, 10, 0, y0 + 300, 0, -10}, 360, 330, 4, "UInt16", &zero), Bilinear, "32615", 4},
		{"20 m UInt16, nodata", write("s20.tif", 32615, [6]float64{x0 - 300, 20, 0, y0 + 300, 0, -20}, 180, 165, 2, "UInt16", &zero), Bilinear, "32615", 2},
		{"60 m UInt16", write("s60.tif", 32615, [6]float64{x0 - 300, 60, 0, y0 + 300, 0, -60}, 60, 55, 2, "UInt16", nil), Bilinear, "32615", 2},
		{"20 m Byte, nearest", write("scl.tif", 32615, [6]float64{x0 - 300, 20, 0, y0 + 300, 0, -20}, 180, 165, 1, "Byte", &zero), Nearest, "32615", 1},
		// not shared: average (GDAL's kernel transforms pixel corners), and
		// a raster in the window's CRS (no reprojection: nothing to share)
		{"20 m UInt16, average", write("avg.tif", 32615, [6]float64{x0 - 300, 20, 0, y0 + 300, 0, -20}, 180, 165, 2, "UInt16", &zero), Average, "", 2},
		{"window's CRS, 20 m, shifted", write("same.tif", 26915, [6]float64{x0 - 295, 20, 0, y0 + 305, 0, -20}, 180, 165, 2, "UInt16", &zero), Bilinear, "", 2},
		// lon/lat (Sentinel-1 GRD's)
		{"EPSG:4326 Float32", write("s1.tif", 4326, [6]float64{ll[0][0], 0.0001, 0, ll[0][1], 0, -0.00009}, 400, 380, 2, "Float32", nil), Bilinear, "4326", 2},
	}
	sceneOf := func(rr raster) *mm.Scene {
		if rr.group == "4326" || rr.name == "window's CRS, 20 m, shifted" {
			return scene(map[mm.Sensor]mm.Asset{mm.Sentinel1: {Href: rr.path, Bands: []string{"VV", "VH"}}})
		}
		return scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: rr.path, Bands: []string{"red", "green", "blue", "nir"}[:rr.bands]}})
	}
	windows := []struct {
		what   string
		dx, dy float64 // west and north edges from the grid corner, metres
		px     int
	}{
		{"a block inside", 0, 0, 288},
		{"across the rasters' east and south edges", 720, -720, 288},
	}
	for _, wd := range windows {
		side := float64(wd.px) * 10
		shared := NewPositions(4)
		w := Window{EPSG: 26915, Bounds: [4]float64{x0 + wd.dx, y0 + wd.dy - side, x0 + wd.dx + side, y0 + wd.dy}, Width: wd.px, Height: wd.px, Exact: true, Shared: shared}
		groups := map[string]bool{}
		for _, rr := range rasters {
			src, err := Open(context.Background(), sceneOf(rr), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := src.Rasters[0].Warp(context.Background(), w, rr.alg)
			src.Close()
			if err != nil {
				t.Fatalf("%s, %s: %v", wd.what, rr.name, err)
			}
			if rr.group != "" {
				groups[rr.group] = true
			}
			// every window pixel's position is kept once per source CRS
			if f, want := shared.Filled(), len(groups)*wd.px*wd.px; f != want {
				t.Errorf("%s, %s: %d positions kept, want %d (one per pixel and source CRS)", wd.what, rr.name, f, want)
			}
			want := gdalwarpAll(t, rr.path, w, rr.alg)
			if len(got) != len(want) {
				t.Fatalf("%s, %s: %d values, gdalwarp %d", wd.what, rr.name, len(got), len(want))
			}
			diff, nan := 0, 0
			for i := range want {
				g, e := got[i], want[i]
				if math.IsNaN(float64(e)) {
					nan++
				}
				if math.Float32bits(g) != math.Float32bits(e) && !(g != g && e != e) {
					if diff == 0 {
						t.Errorf("%s, %s: value %d: %v, gdalwarp %v", wd.what, rr.name, i, g, e)
					}
					diff++
				}
			}
			if diff > 0 {
				t.Errorf("%s, %s: %d of %d values differ", wd.what, rr.name, diff, len(want))
			}
			if nan == len(want) {
				t.Errorf("%s, %s: every value is nodata", wd.what, rr.name)
			}
			if wd.what != "a block inside" && nan == 0 {
				t.Errorf("%s, %s: no nodata beyond the raster's edge", wd.what, rr.name)
			}
		}
		shared.Close()
	}
}
