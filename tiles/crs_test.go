package tiles

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/testenv"
)

// TestGridIsGroundMetresInAnyCRS: the real NAIP (NAD83 / UTM 14N), warped
// by gdalwarp into web Mercator, State Plane US feet and NAD83 geographic,
// gets its chip grid in UTM on its datum, never in the raster's own units
// (720 Mercator units are ~490 m at 47°N, 720 ft are 219 m): every chip's
// edges measure 720 m ± 0.5% on the ellipsoid (GDAL's gdaltransform and
// SpatiaLite's geodesic length, not our arithmetic), and the ground of
// the original's chips has the same chip ids.
func TestGridIsGroundMetresInAnyCRS(t *testing.T) {
	naip := testenv.RealData(t, "rasters/naip_m_4709963_se_14_20190904_5m.tif")
	dir := t.TempDir()
	grid := func(name, srs string) *Grid {
		p := naip
		if srs != "" {
			p = filepath.Join(dir, name+".tif")
			testenv.Run(t, "", "gdalwarp", "-q", "-t_srs", srs, "-r", "near", naip, p)
		}
		src, err := ingest.Open(context.Background(), &mm.Scene{ID: name, Assets: map[mm.Sensor]mm.Asset{mm.NAIP: {Href: p}}}, ingest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		g, err := NewGrid(src, GridOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	original, wgs := grid("original", ""), grid("wgs84-utm", "EPSG:32614")
	if original.EPSG != 26914 || wgs.EPSG != 32614 {
		t.Fatalf("UTM rasters: grids in EPSG:%d and EPSG:%d, want their own 26914 and 32614", original.EPSG, wgs.EPSG)
	}
	for _, tt := range []struct {
		name, srs string
		ref       *Grid
	}{
		{"web-mercator", "EPSG:3857", wgs},
		{"state-plane-ftus", "EPSG:2266", original},
		{"nad83-geographic", "EPSG:4269", original},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := grid(tt.name, tt.srs)
			t.Logf("%s: EPSG:%d: %s", tt.srs, g.EPSG, g.Why)
			if g.EPSG != tt.ref.EPSG {
				t.Fatalf("grid in EPSG:%d, want EPSG:%d (UTM on the raster's datum)", g.EPSG, tt.ref.EPSG)
			}
			ids := map[mm.ChipID]bool{}
			for _, id := range g.Chips {
				ids[id] = true
			}
			inside := 0
			for _, id := range tt.ref.Chips {
				if tt.ref.Inside(id) < 1 {
					continue
				}
				inside++
				if !ids[id] {
					t.Errorf("the ground of %v, a chip of the UTM raster, has no chip of that id", id)
				}
			}
			if inside < 10 {
				t.Fatalf("only %d whole chips in the UTM raster", inside)
			}
			for _, n := range chipEdges(t, g) {
				if n < 720*0.995 || n > 720*1.005 {
					t.Errorf("a chip edge measures %.2f m on the ellipsoid, want 720 ± 0.5%%", n)
				}
			}
		})
	}
}

// chipEdges measures the bottom and left edges of a few of the grid's
// chips on the ellipsoid: corners to lon/lat by gdaltransform, lengths by
// SpatiaLite's ST_Length(geometry, 1) through ogrinfo.
func chipEdges(t *testing.T, g *Grid) []float64 {
	t.Helper()
	var in strings.Builder
	picks := []mm.ChipID{g.Chips[0], g.Chips[len(g.Chips)/2], g.Chips[len(g.Chips)-1]}
	for _, id := range picks {
		b := id.Bounds()
		fmt.Fprintf(&in, "%f %f\n%f %f\n%f %f\n", b[0], b[1], b[2], b[1], b[0], b[3])
	}
	out := testenv.Run(t, in.String(), "gdaltransform", "-s_srs", fmt.Sprintf("EPSG:%d", g.EPSG), "-t_srs", "OGC:CRS84")
	var pts [][2]float64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		x, _ := strconv.ParseFloat(f[0], 64)
		y, _ := strconv.ParseFloat(f[1], 64)
		pts = append(pts, [2]float64{x, y})
	}
	var feats []string
	for i := 0; i+2 < len(pts); i += 3 {
		for _, end := range [][2]float64{pts[i+1], pts[i+2]} {
			feats = append(feats, fmt.Sprintf(`{"type":"Feature","properties":{},"geometry":{"type":"LineString","coordinates":[[%.10f,%.10f],[%.10f,%.10f]]}}`,
				pts[i][0], pts[i][1], end[0], end[1]))
		}
	}
	p := filepath.Join(t.TempDir(), "edges.geojson")
	os.WriteFile(p, []byte(`{"type":"FeatureCollection","features":[`+strings.Join(feats, ",")+`]}`), 0o644)
	res := testenv.Run(t, "", "ogrinfo", "-q", "-dialect", "SQLite", "-sql", "SELECT ST_Length(geometry, 1) AS len FROM edges", p)
	var lens []float64
	for _, m := range regexp.MustCompile(`len \(Real\) = ([0-9.]+)`).FindAllStringSubmatch(res, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		lens = append(lens, v)
	}
	if len(lens) != len(feats) {
		t.Fatalf("%d lengths for %d edges:\n%s", len(lens), len(feats), res)
	}
	return lens
}
