package ingest

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/airbusgeo/godal"
	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/testenv"
)

// TestAverageMatchesGDALWarp checks Warp's own average (boxAverage: a
// raster in the window's CRS, its pixels whole or partly covered by the
// window's) against the gdalwarp tool on the same switches, to the bit:
// inside the raster, across each of its edges, off it; windows GDAL must
// do (see boxSpans) go to GDAL and match it too.
func TestAverageMatchesGDALWarp(t *testing.T) {
	dir := t.TempDir()
	zero := 0.0
	write := func(name string, x0, y0, res float64, dtype string) string {
		return writeTestRaster(t, GeoTIFFSpec{Path: filepath.Join(dir, name), EPSG: 26915, GeoTransform: [6]float64{x0, res, 0, y0, 0, -res},
			Width: int(1900 / res), Height: int(1500 / res), Bands: 4, DataType: dtype, Nodata: &zero},
			func(i, yStart int) float64 { return float64((i*7919 + yStart*31) % 251) }) // texture, and a nodata pixel now and then
	}
	const x0, y0 = 446400.0, 4651920.0 // on the 720 m chip lattice
	tests := []struct {
		name  string
		path  string
		plain bool // every source pixel whole: integer sums
	}{
		{"1 m Byte, aligned", write("aligned.tif", x0, y0, 1, "Byte"), true},
		{"1 m UInt16, aligned", write("aligned16.tif", x0, y0, 1, "UInt16"), true},
		// source pixels cut by window pixels' edges: GDAL's weights
		{"1 m Byte, half a pixel off", write("shifted.tif", x0+0.5, y0-0.5, 1, "Byte"), false},
		{"0.6 m Byte (NAIP since 2018)", write("naip06.tif", x0+0.3, y0-0.18, 0.6, "Byte"), false},
		{"0.6 m UInt16, odd offset", write("naip06b.tif", x0-0.123, y0+0.377, 0.6, "UInt16"), false},
	}
	windows := []struct {
		what   string
		dx, dy float64 // window's west and north edges from the raster's origin, metres
		px     int     // window side in pixels of 10 m
	}{
		{"inside", 720, -720, 72},
		{"a block inside", 0, 0, 144},
		{"across the west edge", -360, -720, 72},
		{"across the north edge", 720, 360, 72},
		{"across the north-west corner", -130, 250, 72},
		{"across the east and south edges", 1440, -1080, 72},
		{"off the raster", -1440, 0, 72},
	}
	counted := map[string]int{}
	for _, tt := range tests {
		src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: tt.path}}), Options{})
		if err != nil {
			t.Fatal(err)
		}
		r := src.Rasters[0]
		for _, wd := range windows {
			// windows on the 10 m lattice: the shifted raster's pixels are
			// then cut in half along the window pixels' edges
			gx, gy := math.Round((x0+wd.dx)/10)*10, math.Round((y0+wd.dy)/10)*10
			side := float64(wd.px) * 10
			w := Window{EPSG: 26915, Bounds: [4]float64{gx, gy - side, gx + side, gy}, Width: wd.px, Height: wd.px, Fixed: true}
			cols, rows, ok := r.boxSpans(w)
			// windows across an edge are GDAL's where its chunks may
			// decide (see boxSpans); inside the raster and off it, and
			// every window of whole source pixels, ours
			ours := r.boxAverageOK(w, Average) && ok
			if !ours && (tt.plain || wd.what == "inside" || wd.what == "a block inside" || wd.what == "off the raster") {
				t.Errorf("%s, %s: not computed by us", tt.name, wd.what)
			}
			if ours {
				counted[tt.name]++
				if plain := whole(cols) && whole(rows); plain != tt.plain && wd.what == "inside" {
					t.Errorf("%s, %s: plain mean %v, want %v", tt.name, wd.what, plain, tt.plain)
				}
			}
			if plain := whole(cols) && whole(rows); plain != tt.plain && wd.what == "inside" {
				t.Errorf("%s, %s: plain mean %v, want %v", tt.name, wd.what, plain, tt.plain)
			}
			got, err := r.Warp(context.Background(), w, Average)
			if err != nil {
				t.Fatal(err)
			}
			want := gdalwarpAll(t, tt.path, w, Average)
			nan, diff := 0, 0
			for i := range want {
				g, e := got[i], want[i]
				if e != e {
					nan++
				}
				if (g != g) != (e != e) || (e == e && g != e) {
					if diff == 0 {
						t.Errorf("%s, %s: band %d pixel %d: %v, gdalwarp %v", tt.name, wd.what, i/(wd.px*wd.px)+1, i%(wd.px*wd.px), g, e)
					}
					diff++
				}
			}
			if diff > 0 {
				t.Errorf("%s, %s: %d of %d values differ", tt.name, wd.what, diff, len(want))
			}
			if wd.what == "off the raster" && nan != len(want) || wd.what == "inside" && nan == len(want) {
				t.Errorf("%s, %s: %d of %d values are nodata", tt.name, wd.what, nan, len(want))
			}
		}
		src.Close()
	}
	t.Logf("windows computed by us (of %d each): %v", len(windows), counted)
}

// gdalwarpAll runs the gdalwarp tool with the window's switches and reads
// every band back, band after band.
func gdalwarpAll(t *testing.T, src string, w Window, alg string) []float32 {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle.tif")
	testenv.Run(t, "", "gdalwarp", append(append([]string{"-q", "-overwrite"}, w.WarpSwitches(alg)...), src, out)...)
	ds, err := godal.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	buf := make([]float32, len(ds.Bands())*w.Width*w.Height)
	if err := ds.Read(0, 0, buf, w.Width, w.Height, godal.BandInterleaved()); err != nil {
		t.Fatal(fmt.Errorf("%s: %w", out, err))
	}
	return buf
}

// writeTestRaster writes a GeoTIFF whose value at index i of each strip
// (starting at row yStart) is value(i, yStart), and returns its path.
func writeTestRaster(t *testing.T, spec GeoTIFFSpec, value func(i, yStart int) float64) string {
	t.Helper()
	err := WriteGeoTIFF(spec, func(yStart, rows int, buf []float64) error {
		for i := range buf {
			buf[i] = value(i, yStart)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return spec.Path
}

// TestColumnSums checks the eight-bytes-at-a-time column sums against
// plain ones: strides that are not a multiple of eight, and the most rows
// its 16-bit lanes hold, all at 255.
func TestColumnSums(t *testing.T) {
	for _, tc := range []struct{ stride, rows int }{{13, 10}, {64, 1}, {7, 3}, {29, maxLaneRows}} {
		band := make([]uint8, tc.stride*(tc.rows+3))
		for i := range band {
			band[i] = uint8(i * 37 % 256)
		}
		if tc.rows == maxLaneRows {
			for i := range band {
				band[i] = 255
			}
		}
		sums := make([]uint32, tc.stride)
		columnSums(band, tc.stride, 2, tc.rows, sums)
		for x := range tc.stride {
			var want uint32
			for j := 2; j < 2+tc.rows; j++ {
				want += uint32(band[j*tc.stride+x])
			}
			if sums[x] != want {
				t.Fatalf("stride %d, %d rows: column %d sums to %d, want %d", tc.stride, tc.rows, x, sums[x], want)
			}
		}
	}
}
