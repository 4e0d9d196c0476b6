package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/worker"
)

// ogr runs a GDAL vector tool and returns its output.
func ogr(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var ogrID = regexp.MustCompile(`(?m)^\s+id \(String\) = (.+)$`)

// ogrIDs lists the "id" field of every feature ogrinfo printed.
func ogrIDs(out string) []string {
	var ids []string
	for _, m := range ogrID.FindAllStringSubmatch(out, -1) {
		ids = append(ids, strings.TrimSpace(m[1]))
	}
	sort.Strings(ids)
	return ids
}

// TestOGCAPIWithGDAL scores two fixture scenes through the daemon and reads
// its OGC API - Features endpoint with GDAL's own client: ogrinfo lists
// both collections with the stream's feature counts, ogr2ogr copies them
// to a GeoPackage, paging (3 per page) returns every feature once, and a
// bbox returns exactly the features GDAL itself finds intersecting it in
// the same data. A second daemon on the same data directory (a restart)
// serves the same features, replayed from the stream.
func TestOGCAPIWithGDAL(t *testing.T) {
	dir := fixtureDir(t)
	data := t.TempDir()
	d := startDaemon(t, "--allow", dir, "--data", data)
	second := remoteSceneCopy(t, dir, "oapi-second")
	if code, stdout, stderr := cli(t, "enqueue", "--nats", d.url, filepath.Join(dir, "scene.json"), second); code != 0 {
		t.Fatalf("enqueue: %d %s %s", code, stdout, stderr)
	}
	first := sceneID(t, filepath.Join(dir, "scene.json"))
	d.waitFinal(t, first, "oapi-second")
	// what the stream holds, by collection: the truth the API must serve
	want := map[string]map[string]json.RawMessage{"detections": {}, "sites": {}}
	for col, subj := range map[string]string{"detections": "methanemap.detections.>", "sites": "methanemap.sites.>"} {
		for _, raw := range readAll(t, d.js, worker.DetectionsStream, subj) {
			var f struct{ ID string }
			json.Unmarshal(raw, &f)
			want[col][f.ID] = raw
		}
		if len(want[col]) < 4 {
			t.Fatalf("only %d %s on the stream", len(want[col]), col)
		}
	}
	root := "OAPIF:http://" + d.http + "/"
	waitCount := func(col string, n int) {
		for i := 0; i < 100; i++ { // the follower may lag the stream by a moment
			resp, err := http.Get(fmt.Sprintf("http://%s/collections/%s/items?limit=1", d.http, col))
			if err == nil {
				var fc struct{ NumberMatched int }
				json.NewDecoder(resp.Body).Decode(&fc)
				resp.Body.Close()
				if fc.NumberMatched == n {
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: the API never held %d features", col, n)
	}
	waitCount("detections", len(want["detections"]))
	waitCount("sites", len(want["sites"]))
	// ogrinfo: both layers, their geometry types and feature counts
	info := ogr(t, "ogrinfo", "-ro", "-so", "-al", root)
	for col, geom := range map[string]string{"detections": "Polygon", "sites": "Point"} {
		block := info[strings.Index(info, "Layer name: "+col):]
		if !strings.Contains(block, "Geometry: "+geom) || featureCount(block) != fmt.Sprint(len(want[col])) {
			t.Errorf("ogrinfo %s: want %s with %d features:\n%s", col, geom, len(want[col]), info)
		}
	}
	// paging: 3 features a page, every feature once
	for col := range want {
		ids := ogrIDs(ogr(t, "ogrinfo", "-ro", "-oo", "PAGE_SIZE=3", "-al", root, col))
		if len(ids) != len(want[col]) {
			t.Errorf("%s paged by 3: %d features, want %d", col, len(ids), len(want[col]))
		}
		for i := 1; i < len(ids); i++ {
			if ids[i] == ids[i-1] {
				t.Errorf("%s paged by 3: %s twice", col, ids[i])
			}
		}
		for _, id := range ids {
			if _, ok := want[col][id]; !ok {
				t.Errorf("%s: %s is not on the stream", col, id)
			}
		}
	}
	// ogr2ogr copies both collections into a GeoPackage
	gpkg := filepath.Join(t.TempDir(), "copy.gpkg")
	ogr(t, "ogr2ogr", "-f", "GPKG", gpkg, root, "-oo", "PAGE_SIZE=4")
	copied := ogr(t, "ogrinfo", "-ro", "-so", "-al", gpkg)
	for col := range want {
		block := copied[strings.Index(copied, "Layer name: "+col):]
		if featureCount(block) != fmt.Sprint(len(want[col])) {
			t.Errorf("ogr2ogr copy: %s has %s features, want %d", col, featureCount(block), len(want[col]))
		}
	}
	if !strings.Contains(copied, "valid_fraction: Real") || !strings.Contains(copied, "acquired: DateTime") {
		t.Errorf("the copy's fields are not typed from the collection's schema:\n%s", copied)
	}
	// a bbox around a planted facility: exactly what GDAL finds in the same
	// features written to a local GeoJSON file
	truth, err := fixtures.ReadTruth(filepath.Join(dir, "truth.geojson"))
	if err != nil {
		t.Fatal(err)
	}
	p := truth[0].LonLat
	box := []string{fmt.Sprint(p[0] - 0.004), fmt.Sprint(p[1] - 0.003), fmt.Sprint(p[0] + 0.002), fmt.Sprint(p[1] + 0.004)}
	for col := range want {
		local := filepath.Join(t.TempDir(), col+".geojson")
		var feats []json.RawMessage
		for _, raw := range want[col] {
			feats = append(feats, raw)
		}
		fc, _ := json.Marshal(map[string]any{"type": "FeatureCollection", "features": feats})
		if err := os.WriteFile(local, fc, 0o644); err != nil {
			t.Fatal(err)
		}
		gdalIDs := ogrIDs(ogr(t, "ogrinfo", "-ro", "-al", "-spat", box[0], box[1], box[2], box[3], local))
		viaGDAL := ogrIDs(ogr(t, "ogrinfo", "-ro", "-al", "-spat", box[0], box[1], box[2], box[3], root, col))
		// the server itself, without the client's own filtering
		resp, err := http.Get(fmt.Sprintf("http://%s/collections/%s/items?limit=10000&bbox=%s", d.http, col, url.QueryEscape(strings.Join(box, ","))))
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Features []struct{ ID string }
		}
		json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		var server []string
		for _, f := range page.Features {
			server = append(server, f.ID)
		}
		sort.Strings(server)
		if len(gdalIDs) == 0 || len(gdalIDs) == len(want[col]) {
			t.Fatalf("%s: the test bbox selects %d of %d features: it tells nothing", col, len(gdalIDs), len(want[col]))
		}
		if fmt.Sprint(server) != fmt.Sprint(gdalIDs) || fmt.Sprint(viaGDAL) != fmt.Sprint(gdalIDs) {
			t.Errorf("%s bbox %v:\n server %v\n OAPIF  %v\n GDAL on the same features %v", col, box, server, viaGDAL, gdalIDs)
		}
	}
	// a restart: a new daemon on the same data directory serves the same features
	before := ogrIDs(ogr(t, "ogrinfo", "-ro", "-al", "-oo", "PAGE_SIZE=1000", root, "detections"))
	d.shutdown(t)
	d2 := startDaemon(t, "--allow", dir, "--data", data)
	after := ogrIDs(ogr(t, "ogrinfo", "-ro", "-al", "-oo", "PAGE_SIZE=1000", "OAPIF:http://"+d2.http+"/", "detections"))
	if fmt.Sprint(before) != fmt.Sprint(after) || len(after) != len(want["detections"]) {
		t.Errorf("after a restart: %d detections, before %d (stream %d)", len(after), len(before), len(want["detections"]))
	}
	resp, err := http.Get("http://" + d2.http + "/collections/detections/items/" + url.PathEscape(before[0]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/geo+json" || !strings.Contains(string(body), `"rel":"collection"`) {
		t.Errorf("GET one feature after the restart: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// remoteSceneCopy writes the fixture scene again under another id, hrefs
// absolute, so one daemon scores the same ground twice as two scenes.
func remoteSceneCopy(t *testing.T, dir, id string) string {
	t.Helper()
	scenes, err := loadScenes(filepath.Join(dir, "scene.json"))
	if err != nil {
		t.Fatal(err)
	}
	sc := *scenes[0]
	sc.ID = id
	b, _ := json.Marshal(&sc)
	path := filepath.Join(t.TempDir(), id+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
