package ingest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/hostile"
	"github.com/methanemap/methanemap/internal/testenv"
)

func scene(assets map[mm.Sensor]mm.Asset) *mm.Scene {
	return &mm.Scene{ID: "t", Assets: assets}
}

func TestOpenRealRasters(t *testing.T) {
	rd := func(name string) string { return testenv.RealData(t, filepath.Join("rasters", name)) }
	tests := []struct {
		name      string
		sc        *mm.Scene
		bands     []string // bands of the first raster
		dtype     string
		epsg      int
		projected bool
	}{
		{"naip", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: rd("naip_m_4709963_se_14_20190904_5m.tif")}}),
			[]string{"red", "green", "blue", "nir"}, "Byte", 26914, true},
		{"s2 per band", scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Hrefs: map[string]string{"B01": rd("s2_t34_B01_600m.tif"), "B09": rd("s2_t34_B09_600m.tif")}}}),
			[]string{"B01", "B09"}, "UInt16", 32634, true},
		{"s2 in EPSG:4326", scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Href: rd("s2like_4band_10m_epsg4326.tif"), Bands: []string{"B02", "B03", "B04", "B08"}}}),
			[]string{"B02", "B03", "B04", "B08"}, "Float64", 4326, false},
		// two band files on one grid are read as one two-band VRT
		{"s2 whole tile", scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Hrefs: map[string]string{"B02": rd("s2_t29_band1_200m.tif"), "B03": rd("s2_t29_band2_200m.tif")}}}),
			[]string{"B02", "B03"}, "UInt16", 32629, true},
		{"s1", scene(map[mm.Sensor]mm.Asset{mm.Sentinel1: {Href: rd("s1a_iw_grd_20150309_vv_db_20m.tif")}}),
			[]string{"VV"}, "Float32", 32631, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := Open(context.Background(), tt.sc, Options{AnyResolution: true}) // decimated real files (200 m, 600 m Sentinel-2)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			r := src.Rasters[0]
			if strings.Join(r.Bands, ",") != strings.Join(tt.bands, ",") || r.DataType != tt.dtype || r.EPSG != tt.epsg || r.Projected != tt.projected {
				t.Errorf("got bands %v %s EPSG:%d projected=%v", r.Bands, r.DataType, r.EPSG, r.Projected)
			}
		})
	}
}

// writeTestTIFF writes a small georeferenced GeoTIFF and returns its path.
func writeTestTIFF(t *testing.T, dir, name string, bands int, dtype string, compress string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	err := WriteGeoTIFF(GeoTIFFSpec{Path: p, EPSG: 32615, GeoTransform: [6]float64{440000, 10, 0, 4650000, 0, -10},
		Width: 600, Height: 600, Bands: bands, DataType: dtype, Compress: compress},
		func(y0, rows int, buf []float64) error {
			for i := range buf {
				buf[i] = float64((i*7919 + y0*31) % 251)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenBadInput(t *testing.T) {
	dir := t.TempDir()
	good4 := writeTestTIFF(t, dir, "rgbn.tif", 4, "Byte", "")
	float1 := writeTestTIFF(t, dir, "float.tif", 1, "Float32", "")
	notRaster := filepath.Join(dir, "notes.tif")
	os.WriteFile(notRaster, []byte("this is not a raster\n"), 0o644)
	noGeo := filepath.Join(dir, "nogeo.png")
	testenv.Run(t, "", "gdal_translate", "-q", "-of", "PNG", good4, noGeo)
	os.Remove(noGeo + ".aux.xml")
	hugeVRT := filepath.Join(dir, "huge.vrt")
	os.WriteFile(hugeVRT, []byte(`<VRTDataset rasterXSize="200000000" rasterYSize="200000000"><SRS>EPSG:32615</SRS>
<GeoTransform>400000, 1, 0, 4600000, 0, -1</GeoTransform><VRTRasterBand dataType="Byte" band="1"/></VRTDataset>`), 0o644)
	coarse := filepath.Join(dir, "coarse.tif") // one 3 km pixel declared as NAIP
	if err := WriteGeoTIFF(GeoTIFFSpec{Path: coarse, EPSG: 32615, GeoTransform: [6]float64{440000, 3000, 0, 4650000, 0, -3000},
		Width: 1, Height: 1, Bands: 4, DataType: "Byte"}, func(int, int, []float64) error { return nil }); err != nil {
		t.Fatal(err)
	}
	nanGT := filepath.Join(dir, "nan.vrt")
	os.WriteFile(nanGT, []byte(`<VRTDataset rasterXSize="100" rasterYSize="100"><SRS>EPSG:32615</SRS>
<GeoTransform>nan, 1, 0, 4600000, 0, -1</GeoTransform><VRTRasterBand dataType="Byte" band="1"/></VRTDataset>`), 0o644)
	hugeTIFF := filepath.Join(dir, "huge.tif")
	os.WriteFile(hugeTIFF, hostile.AbsurdTIFF(), 0o644)

	tests := []struct {
		name  string
		sc    *mm.Scene
		wants []string
	}{
		{"missing file", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: filepath.Join(dir, "nope.tif")}}), []string{"assets.naip.href", "nope.tif", "no such file"}},
		{"directory", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: dir}}), []string{"assets.naip.href", "is a directory"}},
		{"not a raster", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: notRaster}}), []string{"assets.naip.href", "notes.tif", "not a readable raster"}},
		{"no georeferencing", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: noGeo}}), []string{"nogeo.png", "no georeferencing"}},
		{"wrong band count", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: good4, Bands: []string{"red", "green"}}}), []string{"assets.naip.href", "wrong band count", "file has 4"}},
		{"per-band file with 4 bands", scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Hrefs: map[string]string{"B04": good4}}}), []string{"assets.s2.hrefs.B04", "wrong band count"}},
		{"s2 multi-band without names", scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Href: good4}}), []string{"assets.s2.bands"}},
		{"dtype", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: float1, Bands: []string{"red", "green", "blue"}[:1]}}), []string{"band 1 (naip:red)", "Float32"}},
		{"absurd dimensions (VRT)", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: hugeVRT, Bands: []string{"red"}}}), []string{"huge.vrt", "absurd dimensions"}},
		{"absurd dimensions (TIFF header)", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: hugeTIFF}}), []string{"huge.tif", "not a readable raster"}},
		{"3 km pixels as NAIP", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: coarse}}), []string{"assets.naip.href", "coarse.tif", "3e+03 m are implausible for naip"}},
		{"NaN geotransform", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: nanGT, Bands: []string{"red"}}}), []string{"nan.vrt", "not finite"}},
		{"unsupported scheme", scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: "ftp://example.com/a.tif"}}), []string{"assets.naip.href", "unsupported scheme"}},
		{"sensor not in scene", &mm.Scene{ID: "t", Assets: map[mm.Sensor]mm.Asset{}}, []string{"assets.s1"}},
		// a readable file, refused for what its values are
		{"uncalibrated GRD numbers", scene(map[mm.Sensor]mm.Asset{mm.Sentinel1: {Href: float1, Units: mm.S1DN}}), []string{"assets.s1.units", "uncalibrated", "sentinel-1-rtc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{}
			if tt.name == "sensor not in scene" {
				opts.Sensors = []mm.Sensor{mm.Sentinel1}
			}
			src, err := Open(context.Background(), tt.sc, opts)
			if err == nil {
				src.Close()
				t.Fatal("want an error")
			}
			if !mm.IsPermanent(err) {
				t.Errorf("error %v is not permanent", err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestTruncatedGeoTIFF(t *testing.T) {
	dir := t.TempDir()
	full := writeTestTIFF(t, dir, "full.tif", 4, "Byte", "NONE")
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.tif")
	os.WriteFile(cut, data[:len(data)/2], 0o644)
	sc := scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: cut}})
	src, err := Open(context.Background(), sc, Options{})
	if err == nil {
		// The header survived: the damage shows when pixels are read.
		defer src.Close()
		w := Window{EPSG: 32615, Bounds: [4]float64{440000, 4644000, 446000, 4650000}, Width: 60, Height: 60}
		_, err = src.Rasters[0].Warp(context.Background(), w, Average)
	}
	if err == nil {
		t.Fatal("a truncated GeoTIFF read without error")
	}
	if !mm.IsPermanent(err) || !strings.Contains(err.Error(), "cut.tif") {
		t.Errorf("error %v: want a permanent error naming cut.tif", err)
	}
}

func TestHTTPErrorsAreClassified(t *testing.T) {
	tests := []struct {
		status    int
		permanent bool
	}{
		{http.StatusServiceUnavailable, false},
		{http.StatusBadGateway, false},
		{http.StatusTooManyRequests, false},
		{http.StatusNotFound, true},
		{http.StatusForbidden, true},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "no", tt.status)
			}))
			defer srv.Close()
			sc := scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: srv.URL + "/naip.tif?sig=secret"}})
			src, err := Open(context.Background(), sc, Options{})
			if err == nil {
				src.Close()
				t.Fatal("want an error")
			}
			if mm.IsPermanent(err) != tt.permanent {
				t.Errorf("HTTP %d: permanent=%v, want %v (%v)", tt.status, mm.IsPermanent(err), tt.permanent, err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error leaks the query string: %v", err)
			}
			if !strings.Contains(err.Error(), "assets.naip.href") {
				t.Errorf("error does not name the field: %v", err)
			}
		})
	}
}

func TestGDALPath(t *testing.T) {
	tests := []struct{ given, want string }{
		{"/data/a.tif", "/data/a.tif"},
		{"rel/a.tif", "rel/a.tif"},
		{"https://host/x/a.tif", "/vsicurl/https://host/x/a.tif"},
		{"http://host/a.tif?token=1", "/vsicurl/http://host/a.tif?token=1"},
		{"s3://bucket/key/a.tif", "/vsis3/bucket/key/a.tif"},
		{"gs://bucket/key/a.tif", "/vsigs/bucket/key/a.tif"},
		{"file:///data/a.tif", "/data/a.tif"},
		{"/vsizip//data/a.zip/a.tif", "/vsizip//data/a.zip/a.tif"},
	}
	for _, tt := range tests {
		got, err := GDALPath(tt.given)
		if err != nil || got != tt.want {
			t.Errorf("GDALPath(%q) = %q, %v; want %q", tt.given, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "ftp://host/a.tif"} {
		if _, err := GDALPath(bad); err == nil || !mm.IsPermanent(err) {
			t.Errorf("GDALPath(%q): want a permanent error, got %v", bad, err)
		}
	}
}

// TestAlphaBandIsData writes a 4-band Byte GeoTIFF as GDAL does by default,
// which declares band 4 alpha, and checks that warps read it as data: NAIP's
// NIR must never be used as a transparency mask.
func TestAlphaBandIsData(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rgba.tif")
	testenv.Run(t, "", "gdal_translate", "-q", "-co", "PHOTOMETRIC=RGB", "-co", "ALPHA=YES", writeTestTIFF(t, dir, "src.tif", 4, "Byte", ""), p)
	if !strings.Contains(testenv.Run(t, "", "gdalinfo", p), "ColorInterp=Alpha") {
		t.Fatal("the test file has no alpha band")
	}
	src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: p}}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	w := Window{EPSG: 32615, Bounds: [4]float64{440000, 4644000, 446000, 4650000}, Width: 600, Height: 600}
	v, err := src.Rasters[0].Warp(context.Background(), w, Nearest)
	if err != nil {
		t.Fatal(err)
	}
	n := 600 * 600
	for i, x := range v {
		if x != x {
			t.Fatalf("band %d pixel %d is nodata: the alpha band masked the data", i/n+1, i%n)
		}
	}
	for b := 1; b <= 4; b++ {
		want := strings.TrimSpace(testenv.Run(t, "", "gdallocationinfo", "-valonly", "-b", fmt.Sprint(b), p, "17", "3"))
		if got := fmt.Sprint(v[(b-1)*n+3*600+17]); got != want {
			t.Errorf("band %d at (17,3): %s, gdallocationinfo reads %s", b, got, want)
		}
	}
}

func TestAllowedHrefs(t *testing.T) {
	root := t.TempDir()
	inside := writeTestTIFF(t, root, "in.tif", 4, "Byte", "")
	outside := writeTestTIFF(t, t.TempDir(), "out.tif", 4, "Byte", "")
	os.Symlink(outside, filepath.Join(root, "link.tif"))
	allow := []string{root, "https://data.example.org/scenes/"}
	tests := []struct {
		href string
		ok   bool
	}{
		{inside, true},
		{filepath.Join(root, "sub", "..", "in.tif"), true},
		{outside, false},
		{filepath.Join(root, "..", filepath.Base(filepath.Dir(outside)), "out.tif"), false},
		{filepath.Join(root, "link.tif"), false},
		{"/etc/passwd", false},
		{"https://data.example.org/scenes/a.tif", true},
		{"https://data.example.org/other/a.tif", false},
		{"https://evil.example.org/scenes/a.tif", false},
		{"/vsicurl/https://evil.example.org/a.tif", false},
		{"s3://bucket/a.tif", false},
	}
	for _, tt := range tests {
		err := Allowed(tt.href, allow)
		if (err == nil) != tt.ok || (err != nil && !mm.IsPermanent(err)) {
			t.Errorf("Allowed(%s) = %v, want ok=%v", tt.href, err, tt.ok)
		}
	}
	// Open refuses before reading: /etc/passwd is never opened by GDAL
	_, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: "/etc/passwd"}}), Options{Allow: allow})
	if err == nil || !mm.IsPermanent(err) || !strings.Contains(err.Error(), "assets.naip.href: /etc/passwd: not under an allowed directory") {
		t.Errorf("Open of /etc/passwd: %v", err)
	}
}
