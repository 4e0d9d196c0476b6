package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airbusgeo/godal"
	"github.com/methanemap/methanemap/internal/testenv"
)

// cli runs the command in-process and returns exit code, stdout and stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

var (
	sceneOnce sync.Once
	sceneDir  string
)

// fixtureDir writes one 3 km fixture scene for the package's tests.
func fixtureDir(t *testing.T) string {
	t.Helper()
	sceneOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cmd-test-")
		if err != nil {
			t.Fatal(err)
		}
		sceneDir = dir
		if code, _, stderr := cli(t, "fixtures", "--out", dir, "--size-km", "3"); code != 0 {
			t.Fatalf("fixtures: exit %d: %s", code, stderr)
		}
	})
	return sceneDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sceneDir != "" {
		os.RemoveAll(sceneDir)
	}
	os.Exit(code)
}

func modelDir() string { return filepath.Join(testenv.Root(), "models", "demo") }

type gdalInfo struct {
	Size         []int     `json:"size"`
	GeoTransform []float64 `json:"geoTransform"`
	Bands        []struct {
		Description string   `json:"description"`
		Type        string   `json:"type"`
		Scale       *float64 `json:"scale"`
		Offset      *float64 `json:"offset"`
	} `json:"bands"`
	Metadata         map[string]map[string]string `json:"metadata"`
	CoordinateSystem struct {
		WKT string `json:"wkt"`
	} `json:"coordinateSystem"`
}

func gdalinfo(t *testing.T, path string) gdalInfo {
	t.Helper()
	var info gdalInfo
	if err := json.Unmarshal([]byte(testenv.Run(t, "", "gdalinfo", "-json", path)), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func readBand(t *testing.T, path string, band int) []float32 {
	t.Helper()
	ds, err := godal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	st := ds.Structure()
	buf := make([]float32, st.SizeX*st.SizeY)
	if err := ds.Bands()[band-1].Read(0, 0, buf, st.SizeX, st.SizeY); err != nil {
		t.Fatal(err)
	}
	return buf
}

// TestChipsCommandMatchesGDAL exports the chips of a fixture scene and
// checks an exported GeoTIFF band by band against gdalwarp run on the
// source file each band description names, over the chip's own extent.
func TestChipsCommandMatchesGDAL(t *testing.T) {
	dir := fixtureDir(t)
	out := t.TempDir()
	code, stdout, stderr := cli(t, "chips", "--scene", filepath.Join(dir, "scene.json"), "--model", modelDir(), "--out", out, "--limit", "3")
	if code != 0 {
		t.Fatalf("chips: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "3 chips") {
		t.Errorf("stdout %q does not report 3 chips", stdout)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*", "*.tif"))
	if len(files) != 3 {
		t.Fatalf("%d chip files, want 3", len(files))
	}
	sources := map[string]string{
		"naip:": filepath.Join(dir, "naip.tif"),
		"s1:VV": filepath.Join(dir, "s1.tif"), "s1:VH": filepath.Join(dir, "s1.tif"),
	}
	bandOf := map[string]int{"naip:red": 1, "naip:green": 2, "naip:blue": 3, "naip:nir": 4, "s1:VV": 1, "s1:VH": 2}
	chip := files[0]
	info := gdalinfo(t, chip)
	if info.Size[0] != 72 || info.Size[1] != 72 || len(info.Bands) != 18 {
		t.Fatalf("chip %s: size %v with %d bands, want 72x72 with the card's 18", chip, info.Size, len(info.Bands))
	}
	gt := info.GeoTransform
	te := []string{fmt.Sprint(gt[0]), fmt.Sprint(gt[3] + 72*gt[5]), fmt.Sprint(gt[0] + 72*gt[1]), fmt.Sprint(gt[3])}
	if gt[1] != 10 || gt[3]-gt[0] == 0 {
		t.Fatalf("chip geotransform %v, want 10 m pixels", gt)
	}
	// how to read the values: Sentinel-2 scaled to reflectance (the
	// fixture's DNs carry baseline 04.00's +1000), the scene's radiometry
	md := info.Metadata[""]
	if md["S2_BOA_ADD_OFFSET"] != "-1000" || md["S2_PROCESSING_BASELINE"] != "04.00" || md["S1_UNITS"] != "db" {
		t.Errorf("chip metadata %v: want S2_BOA_ADD_OFFSET=-1000, S2_PROCESSING_BASELINE=04.00, S1_UNITS=db", md)
	}
	for _, b := range info.Bands {
		s2 := strings.HasPrefix(b.Description, "s2:")
		if s2 && (b.Scale == nil || b.Offset == nil || *b.Scale != 1e-4 || *b.Offset != -0.1) {
			t.Errorf("band %s: scale %v offset %v, want 0.0001 and -0.1", b.Description, b.Scale, b.Offset)
		}
		if !s2 && (b.Scale != nil || b.Offset != nil) {
			t.Errorf("band %s has a scale or offset", b.Description)
		}
	}
	for i, b := range info.Bands {
		src, band := sources[b.Description], bandOf[b.Description]
		alg := "bilinear"
		switch {
		case strings.HasPrefix(b.Description, "naip:"):
			src, alg = sources["naip:"], "average"
		case strings.HasPrefix(b.Description, "s2:"):
			src, band = filepath.Join(dir, "s2", strings.TrimPrefix(b.Description, "s2:")+".tif"), 1
		}
		if src == "" {
			t.Fatalf("band %d description %q does not name a sensor band", i+1, b.Description)
		}
		oracle := filepath.Join(t.TempDir(), "o.tif")
		testenv.Run(t, "", "gdalwarp", append([]string{"-q", "-t_srs", info.CoordinateSystem.WKT, "-te"}, append(te,
			"-ts", "72", "72", "-r", alg, "-ot", "Float32", "-dstnodata", "nan", "-nosrcalpha", "-et", "0", src, oracle)...)...)
		got, want := readBand(t, chip, i+1), readBand(t, oracle, band)
		for p := range got {
			g, w := float64(got[p]), float64(want[p])
			if math.IsNaN(g) != math.IsNaN(w) || (!math.IsNaN(g) && math.Abs(g-w) > 1e-4*math.Max(1, math.Abs(w))) {
				t.Fatalf("%s band %s pixel %d: %v, gdalwarp -r %s gives %v", filepath.Base(chip), b.Description, p, g, alg, w)
			}
		}
	}
	// the index lists every cell of the grid with its fractions
	var idx struct {
		Features []struct {
			Properties map[string]any `json:"properties"`
		} `json:"features"`
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(chip), "chips.geojson"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Features) < 3 {
		t.Fatalf("chips.geojson: %v, %d features", err, len(idx.Features))
	}
}

// TestRemoteReadsMatchLocal serves the fixture scene over HTTP (Go's file
// server answers range requests) and checks that chips read through
// /vsicurl/ equal the chips of the local files.
func TestRemoteReadsMatchLocal(t *testing.T) {
	dir := fixtureDir(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	data, err := os.ReadFile(filepath.Join(dir, "scene.json"))
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]any
	json.Unmarshal(data, &msg)
	msg["id"] = "remote"
	remoteDir := t.TempDir()
	remote := filepath.Join(remoteDir, "scene.json")
	b, _ := json.Marshal(msg)
	// relative hrefs resolve against the scene's location: point them at the server
	b = bytes.ReplaceAll(b, []byte(`"s2/`), []byte(`"`+srv.URL+`/s2/`))
	b = bytes.ReplaceAll(b, []byte(`"naip.tif"`), []byte(`"`+srv.URL+`/naip.tif"`))
	b = bytes.ReplaceAll(b, []byte(`"s1.tif"`), []byte(`"`+srv.URL+`/s1.tif"`))
	if err := os.WriteFile(remote, b, 0o644); err != nil {
		t.Fatal(err)
	}
	localOut, remoteOut := t.TempDir(), t.TempDir()
	for _, run := range []struct{ scene, out string }{{filepath.Join(dir, "scene.json"), localOut}, {remote, remoteOut}} {
		if code, _, stderr := cli(t, "chips", "--scene", run.scene, "--model", modelDir(), "--out", run.out, "--limit", "2"); code != 0 {
			t.Fatalf("chips %s: exit %d: %s", run.scene, code, stderr)
		}
	}
	local, _ := filepath.Glob(filepath.Join(localOut, "*", "*.tif"))
	if len(local) != 2 {
		t.Fatalf("%d local chips", len(local))
	}
	for _, l := range local {
		r := filepath.Join(remoteOut, "remote", filepath.Base(l))
		for band := 1; band <= 18; band++ {
			lv, rv := readBand(t, l, band), readBand(t, r, band)
			for p := range lv {
				if lv[p] != rv[p] && !(math.IsNaN(float64(lv[p])) && math.IsNaN(float64(rv[p]))) {
					t.Fatalf("%s band %d pixel %d: local %v, remote %v", filepath.Base(l), band, p, lv[p], rv[p])
				}
			}
		}
	}
}

func TestBadInputExitCodes(t *testing.T) {
	dir := fixtureDir(t)
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	badScene := write("bad.json", `{"id": "a b", "assets": {"naip": {"href": "/nowhere/naip.tif"}}}`)
	missingRaster := write("missing.json", `{"id": "m", "assets": {"naip": {"href": "/nowhere/naip.tif"}, "s2": {"hrefs": {"B04": "/nowhere/b04.tif"}}, "s1": {"href": "/nowhere/s1.tif"}}}`)
	farAOI := write("far.geojson", `{"type": "Polygon", "coordinates": [[[10, 10], [10.1, 10], [10.1, 10.1], [10, 10]]]}`)
	pointAOI := write("point.geojson", `{"type": "Point", "coordinates": [10, 10]}`)
	scene := filepath.Join(dir, "scene.json")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"unknown flag", []string{"chips", "--frob"}, 2, "flag provided but not defined"},
		{"missing --out", []string{"chips", "--scene", scene}, 2, "--out are required"},
		{"scene file missing", []string{"chips", "--scene", filepath.Join(tmp, "nope.json"), "--out", tmp}, 2, "nope.json"},
		{"invalid scene", []string{"chips", "--scene", badScene, "--out", tmp, "--model", modelDir()}, 2, "id: must be"},
		{"raster missing", []string{"chips", "--scene", missingRaster, "--out", tmp, "--model", modelDir()}, 2, "/nowhere/"},
		{"aoi outside", []string{"chips", "--scene", scene, "--aoi", farAOI, "--out", tmp, "--model", modelDir()}, 2, "aoi: does not overlap"},
		{"aoi not a polygon", []string{"chips", "--scene", scene, "--aoi", pointAOI, "--out", tmp, "--model", modelDir()}, 2, "must be a Polygon"},
		{"model missing", []string{"chips", "--scene", scene, "--out", tmp, "--model", tmp}, 2, "model.yaml"},
		{"bad plant", []string{"fixtures", "--out", tmp, "--plant", "volcano@1,2"}, 2, "unknown class"},
		{"plant outside", []string{"fixtures", "--out", tmp, "--size-km", "2", "--plant", "cafo@10,10"}, 2, "not at least 300 m inside"},
		{"lat/lon swapped", []string{"fixtures", "--out", tmp, "--center", "42.0,-93.6"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := cli(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tt.code, stderr, tt.want)
			}
		})
	}
}

func TestChipsWithBuiltInModel(t *testing.T) {
	dir := fixtureDir(t)
	out := t.TempDir()
	code, stdout, stderr := cli(t, "chips", "--scene", dir, "--out", out, "--limit", "1")
	if code != 0 || !strings.Contains(stdout, "1 chips") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestModelInspect(t *testing.T) {
	code, stdout, stderr := cli(t, "model", "inspect")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"card: methanemap-demo@", "input  chip FLOAT[batch,18,72,72]", "output logits FLOAT[batch,6]",
		"opset 13", "onnxruntime  yes", "onnxgo       yes", "class wastewater_treatment_plant"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("model inspect does not say %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = cli(t, "model", "inspect", testenv.RealData(t, "models/dummy_recognition_model.onnx"))
	if code != 0 || !strings.Contains(stdout, "onnxgo       no: model: onnx-go lacks operators ReduceSum") || !strings.Contains(stdout, "onnxruntime  yes") {
		t.Errorf("exit %d:\n%s", code, stdout)
	}
	if code, _, stderr := cli(t, "model", "inspect", t.TempDir()); code != 2 || !strings.Contains(stderr, "model.yaml") {
		t.Errorf("a directory without a card: exit %d, %s", code, stderr)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
