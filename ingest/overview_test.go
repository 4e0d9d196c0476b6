package ingest

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/testenv"
)

// TestOverviewsDoNotChangeWarps: the real 5 m NAIP, with overviews built
// by gdaladdo -r nearest, with and without a mask band, warps to the same
// values as without overviews, and as gdalwarp with the window's switches
// (which say -ovr NONE): gdalwarp's default (-ovr AUTO) warps a coarse
// window from an overview, and a chip's values would depend on the file's
// overviews (3.5 DN on average, measured).
func TestOverviewsDoNotChangeWarps(t *testing.T) {
	src := testenv.RealData(t, "rasters/naip_m_4709963_se_14_20190904_5m.tif")
	dir := t.TempDir()
	file := func(name string, mask bool, ovr bool) string {
		p := filepath.Join(dir, name)
		args := []string{"-q", "-co", "TILED=YES"}
		if mask {
			args = append(args, "-mask", "4") // a mask band from the NIR band's zeros and non-zeros
		}
		testenv.Run(t, "", "gdal_translate", append(args, src, p)...)
		if ovr {
			testenv.Run(t, "", "gdaladdo", "-q", "-r", "nearest", p, "2", "4", "8")
		}
		return p
	}
	// a window in WGS 84 / UTM 14 (the file is NAD83 / UTM 14): GDAL's warper,
	// at 20 m: four times coarser than the file, where -ovr AUTO takes an overview
	w := Window{EPSG: 32614, Bounds: [4]float64{486500, 5206500, 489500, 5208500}, Width: 150, Height: 100}
	warp := func(p string, w Window) []float32 {
		sc := &mm.Scene{ID: "t", Assets: map[mm.Sensor]mm.Asset{mm.NAIP: {Href: p}}}
		s, err := Open(context.Background(), sc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		v, err := s.Rasters[0].Warp(context.Background(), w, Average)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, mask := range []bool{false, true} {
		plain, ovr := file("plain.tif", mask, false), file("ovr.tif", mask, true)
		for _, fixed := range []bool{false, true} { // GDAL's warper; chips' lattice positions (gdalwarp -et 0)
			w := w
			w.Fixed = fixed
			a, b, oracle := warp(plain, w), warp(ovr, w), gdalwarpAll(t, ovr, w, Average)
			valid := 0
			for i := range a {
				nan := math.IsNaN(float64(a[i]))
				if !nan {
					valid++
				}
				near := math.Abs(float64(b[i]-oracle[i])) <= 1e-3*math.Max(1, math.Abs(float64(oracle[i])))
				if !fixed {
					near = b[i] == oracle[i]
				}
				if (a[i] != b[i] && !(nan && math.IsNaN(float64(b[i])))) || (nan != math.IsNaN(float64(oracle[i]))) || (!nan && !near) {
					t.Fatalf("mask %v, fixed %v: value %d: %v without overviews, %v with, %v by gdalwarp with the window's switches", mask, fixed, i, a[i], b[i], oracle[i])
				}
			}
			if valid < len(a)/2 {
				t.Fatalf("mask %v: only %d of %d values have data: the window misses the file", mask, valid, len(a))
			}
		}
		os.Remove(plain)
		os.Remove(ovr)
	}
}
