package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/testenv"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geo"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/planar"
)

// realFacilities picks the first facility of each class from the real
// sample (south of 60°N), in at least three UTM zones.
func realFacilities(t *testing.T) []struct {
	class mm.Class
	at    orb.Point
} {
	data, err := os.ReadFile(testenv.RealData(t, "facilities/six_class_sample_30.geojson"))
	if err != nil {
		t.Fatal(err)
	}
	fc, err := geojson.UnmarshalFeatureCollection(data)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]mm.Class{"cafo": mm.CAFO, "coal_mine": mm.CoalMine, "landfill": mm.Landfill,
		"natural_gas_processing_plant": mm.ProcessingPlant, "oil_refinery": mm.RefineryTerminal,
		"petroleum_terminal": mm.RefineryTerminal, "wastewater": mm.WastewaterTreatment,
		"wastewater_treatment_plant": mm.WastewaterTreatment}
	var out []struct {
		class mm.Class
		at    orb.Point
	}
	seen, zones := map[mm.Class]bool{}, map[int]bool{}
	for _, f := range fc.Features {
		c := names[f.Properties.MustString("facility_class", "")]
		p := f.Geometry.(orb.Point)
		if c == "" || seen[c] || p[1] > 60 {
			continue
		}
		seen[c], zones[int((p[0]+180)/6)+1] = true, true
		out = append(out, struct {
			class mm.Class
			at    orb.Point
		}{c, p})
	}
	if len(out) != 6 || len(zones) < 3 {
		t.Fatalf("found %d classes in %d UTM zones, want 6 in at least 3", len(out), len(zones))
	}
	return out
}

func readFC(t *testing.T, path string) *geojson.FeatureCollection {
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

// TestScoreFindsRealFacilities plants one facility of each class at a real
// facility's coordinates (six UTM zones), scores each scene and checks that
// the facility lies inside a detection of its class and that a site of its
// class lies within 360 m of it.
func TestScoreFindsRealFacilities(t *testing.T) {
	for _, f := range realFacilities(t) {
		t.Run(string(f.class), func(t *testing.T) {
			dir := t.TempDir()
			plant := string(f.class) + "@" + ftoa(f.at[0]) + "," + ftoa(f.at[1])
			if code, _, stderr := cli(t, "fixtures", "--out", dir, "--size-km", "2.5", "--center", ftoa(f.at[0])+","+ftoa(f.at[1]), "--plant", plant); code != 0 {
				t.Fatalf("fixtures: %s", stderr)
			}
			out, sites := filepath.Join(dir, "det.geojson"), filepath.Join(dir, "sites.geojson")
			if code, stdout, stderr := cli(t, "score", "--scene", filepath.Join(dir, "scene.json"), "-o", out, "--sites", sites, "--quiet"); code != 0 {
				t.Fatalf("score: exit %d\n%s\n%s", code, stdout, stderr)
			}
			inside := false
			for _, d := range readFC(t, out).Features {
				poly, ok := d.Geometry.(orb.Polygon)
				if ok && d.Properties.MustString("class", "") == string(f.class) && planar.PolygonContains(poly, f.at) {
					inside = true
				}
			}
			if !inside {
				t.Errorf("%s at %v is inside no %s detection", f.class, f.at, f.class)
			}
			near := 1e9
			for _, s := range readFC(t, sites).Features {
				if s.Properties.MustString("class", "") == string(f.class) {
					near = min(near, geo.Distance(s.Geometry.(orb.Point), f.at))
				}
			}
			if near > 360 {
				t.Errorf("nearest %s site is %.0f m from the facility", f.class, near)
			}
		})
	}
}

func ftoa(v float64) string { return strings.TrimRight(strings.TrimRight(jsonNum(v), "0"), ".") }

func jsonNum(v float64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestScoreEmptySceneHasNoDetections(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := cli(t, "fixtures", "--out", dir, "--empty", "--center", "-90.33,30.01", "--seed", "4", "--size-km", "4"); code != 0 {
		t.Fatal(stderr)
	}
	out := filepath.Join(dir, "det.geojson")
	if code, stdout, stderr := cli(t, "score", "--scene", filepath.Join(dir, "scene.json"), "-o", out, "--quiet"); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if n := len(readFC(t, out).Features); n != 0 {
		t.Errorf("%d detections in a scene without facilities", n)
	}
}

// TestScoreFormats writes every format and reads each back with ogrinfo:
// same features everywhere; the GeoJSON is RFC 7946.
func TestScoreFormats(t *testing.T) {
	scene := filepath.Join(fixtureDir(t), "scene.json")
	dir := t.TempDir()
	var counts []string
	for _, ext := range []string{"geojson", "geojsonl", "gpkg", "fgb"} {
		out := filepath.Join(dir, "det."+ext)
		sites := filepath.Join(dir, "sites."+ext)
		if code, _, stderr := cli(t, "score", "--scene", scene, "-o", out, "--sites", sites, "--quiet"); code != 0 {
			t.Fatalf("%s: %s", ext, stderr)
		}
		info := testenv.Run(t, "", "ogrinfo", "-ro", "-al", "-so", out)
		if !strings.Contains(info, "Geometry: Polygon") {
			t.Errorf("%s: not a polygon layer:\n%s", ext, info)
		}
		counts = append(counts, featureCount(info)+"/"+featureCount(testenv.Run(t, "", "ogrinfo", "-ro", "-al", "-so", sites)))
		ids := testenv.Run(t, "", "ogrinfo", "-ro", "-al", "-q", "-sql", "SELECT id FROM "+layerName(info), out)
		if strings.Count(ids, "id (String) = ") != atoi(featureCount(info)) {
			t.Errorf("%s: ids not readable:\n%s", ext, ids)
		}
	}
	for _, c := range counts[1:] {
		if c != counts[0] {
			t.Errorf("feature counts differ between formats: %v", counts)
		}
	}
	if counts[0] == "0/0" {
		t.Fatalf("no detections in the fixture scene: %v", counts)
	}
	checkRFC7946(t, filepath.Join(dir, "det.geojson"))
}

func featureCount(info string) string {
	_, after, _ := strings.Cut(info, "Feature Count: ")
	return strings.Fields(after + " ")[0]
}

func layerName(info string) string {
	_, after, _ := strings.Cut(info, "Layer name: ")
	return strings.Fields(after + " ")[0]
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// checkRFC7946: Polygons with closed, counter-clockwise exterior rings of
// at least four positions, longitude first within range, the design's
// properties and ids.
func checkRFC7946(t *testing.T, path string) {
	t.Helper()
	var raw struct {
		Type     string `json:"type"`
		Features []struct {
			Type       string         `json:"type"`
			ID         string         `json:"id"`
			Properties map[string]any `json:"properties"`
			Geometry   struct {
				Type        string        `json:"type"`
				Coordinates [][][]float64 `json:"coordinates"`
			} `json:"geometry"`
		} `json:"features"`
	}
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &raw); err != nil || raw.Type != "FeatureCollection" {
		t.Fatalf("%s: %v", path, err)
	}
	for _, f := range raw.Features {
		if f.Type != "Feature" || f.Geometry.Type != "Polygon" || len(f.Geometry.Coordinates) == 0 {
			t.Fatalf("feature %s: type %s geometry %s", f.ID, f.Type, f.Geometry.Type)
		}
		ring := f.Geometry.Coordinates[0]
		if len(ring) < 4 || ring[0][0] != ring[len(ring)-1][0] || ring[0][1] != ring[len(ring)-1][1] {
			t.Errorf("feature %s: ring not closed: %v", f.ID, ring)
		}
		r := orb.Ring{}
		for _, p := range ring {
			if len(p) != 2 || p[0] < -180 || p[0] > 180 || p[1] < -90 || p[1] > 90 {
				t.Errorf("feature %s: position %v out of lon/lat range", f.ID, p)
			}
			r = append(r, orb.Point{p[0], p[1]})
		}
		if planar.Area(r) <= 0 {
			t.Errorf("feature %s: exterior ring is not counter-clockwise", f.ID)
		}
		for _, k := range []string{"class", "score", "scores", "scene_id", "chip_id", "acquired", "model", "sensors", "valid_fraction", "cloud_fraction", "detected_at"} {
			if _, ok := f.Properties[k]; !ok {
				t.Errorf("feature %s lacks property %s", f.ID, k)
			}
		}
		if want := f.Properties["scene_id"].(string) + "/" + f.Properties["chip_id"].(string) + "/" + f.Properties["class"].(string); f.ID != want {
			t.Errorf("id %q, want %q", f.ID, want)
		}
		// this fixture is in Iowa: longitude first means about -93.6
		if ring[0][0] > -90 || ring[0][1] < 40 {
			t.Errorf("feature %s: %v is not lon/lat order", f.ID, ring[0])
		}
	}
}

func TestScoreAOIAndRefusals(t *testing.T) {
	dir := fixtureDir(t)
	scene := filepath.Join(dir, "scene.json")
	tmp := t.TempDir()
	// a small box around the first planted facility
	truth := readFC(t, filepath.Join(dir, "truth.geojson"))
	p := truth.Features[0].Geometry.(orb.Point)
	d := 0.001
	box := orb.Polygon{{{p[0] - d, p[1] - d}, {p[0] + d, p[1] - d}, {p[0] + d, p[1] + d}, {p[0] - d, p[1] + d}, {p[0] - d, p[1] - d}}}
	aoi := filepath.Join(tmp, "aoi.geojson")
	b, _ := geojson.NewGeometry(box).MarshalJSON()
	os.WriteFile(aoi, b, 0o644)
	out := filepath.Join(tmp, "det.geojson")
	code, stdout, stderr := cli(t, "score", "--scene", scene, "--aoi", aoi, "-o", out, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "chips scored 1,") && !strings.Contains(stdout, "chips scored 2,") && !strings.Contains(stdout, "chips scored 4,") {
		t.Errorf("a 200 m AOI should score 1, 2 or 4 chips:\n%s", stdout)
	}
	for _, f := range readFC(t, out).Features {
		if !f.Geometry.Bound().Intersects(box.Bound()) {
			t.Errorf("detection %v does not touch the AOI", f.ID)
		}
	}
	before, _ := os.ReadFile(out)
	if code, _, stderr := cli(t, "score", "--scene", scene, "-o", out, "--quiet"); code != 2 || !strings.Contains(stderr, "exists") {
		t.Errorf("existing output: exit %d, %s", code, stderr)
	}
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Error("the refused run changed the existing output")
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"score", "--scene", scene, "-o", filepath.Join(tmp, "x.shp")}, "unknown output format"},
		{[]string{"score", "--scene", filepath.Join(tmp, "none.json"), "-o", filepath.Join(tmp, "y.geojson")}, "none.json"},
		{[]string{"score", "--scene", scene, "--aoi", scene, "-o", filepath.Join(tmp, "z.geojson")}, "--aoi"},
	} {
		if code, _, stderr := cli(t, tt.args...); code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, %s", tt.args, code, stderr)
		}
	}
}

// TestScoreKilledLeavesNoOutput kills a running score (SIGKILL: no chance
// to clean up) and checks nothing exists at the output path.
func TestScoreKilledLeavesNoOutput(t *testing.T) {
	scene := filepath.Join(fixtureDir(t), "scene.json")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		out := filepath.Join(t.TempDir(), "det.gpkg")
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainChild$")
		cmd.Env = append(os.Environ(), "METHANEMAP_MAIN_CHILD=score --scene "+scene+" -o "+out+" --backend onnxgo --batch 2")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		cmd.Process.Signal(sig)
		cmd.Wait()
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: %s exists after the run was killed", sig, out)
		}
		left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*"))
		if sig == syscall.SIGTERM && len(left) > 0 {
			t.Errorf("SIGTERM left %v", left)
		}
	}
}

// TestMainChild runs the CLI in a child process for TestScoreKilledLeavesNoOutput.
func TestMainChild(t *testing.T) {
	args := os.Getenv("METHANEMAP_MAIN_CHILD")
	if args == "" {
		t.Skip("run by other tests")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, strings.Fields(args), os.Stdout, os.Stderr))
}

func TestScoreKeepGoing(t *testing.T) {
	scene := filepath.Join(fixtureDir(t), "scene.json")
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.json")
	os.WriteFile(bad, []byte(`{"id": "broken", "assets": {"naip": {"href": "/nowhere/naip.tif"}, "s2": {"hrefs": {"B04": "/nowhere/b04.tif"}}, "s1": {"href": "/nowhere/s1.tif"}}}`), 0o644)
	out := filepath.Join(tmp, "det.geojson")
	code, _, stderr := cli(t, "score", "--scene", bad, "--scene", scene, "-o", out, "--quiet")
	if code != 2 || !strings.Contains(stderr, "/nowhere/") {
		t.Errorf("without --keep-going: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed run wrote its output")
	}
	code, stdout, stderr := cli(t, "score", "--scene", bad, "--scene", scene, "-o", out, "--quiet", "--keep-going")
	if code != 0 || !strings.Contains(stdout, "scenes 2 (1 skipped)") || !strings.Contains(stdout, "failed: broken:") {
		t.Errorf("with --keep-going: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
