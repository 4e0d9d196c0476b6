package oapi

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"
)

// square is a detection-like feature: a small square around lon, lat.
func square(id, class, scene string, lon, lat, score float64, acquired string) []byte {
	d := 0.003
	ring := [][2]float64{{lon - d, lat - d}, {lon + d, lat - d}, {lon + d, lat + d}, {lon - d, lat + d}, {lon - d, lat - d}}
	f := map[string]any{"type": "Feature", "id": id, "geometry": map[string]any{"type": "Polygon", "coordinates": [][][2]float64{ring}},
		"properties": map[string]any{"class": class, "score": score, "scene_id": scene, "acquired": acquired, "valid_fraction": 1}}
	b, _ := json.Marshal(f)
	return b
}

func testServer(t *testing.T) (*Store, *httptest.Server) {
	st := testStore(t)
	mux := http.NewServeMux()
	Register(mux, st, Options{Title: "test", Extra: []Link{{Href: "/map", Rel: "related", Type: "text/html", Title: "map"}}})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { closeWithin(t, srv) })
	return st, srv
}

// testStore holds 25 detections on a grid near -93.6, 42, one near the
// antimeridian and one site.
func testStore(t testing.TB) *Store {
	st := NewStore(Detections, Sites)
	classes := []string{"cafo", "landfill", "coal_mine"}
	for i := range 25 {
		lon, lat := -93.6+float64(i%5)*0.01, 42.0+float64(i/5)*0.01
		acq := fmt.Sprintf("2023-07-%02dT17:00:00Z", 10+i%5)
		if err := st.Add("detections", square(fmt.Sprintf("s%d/26915:720:%d:%d/%s", i%2, i%5, i/5, classes[i%3]), classes[i%3], fmt.Sprintf("s%d", i%2), lon, lat, float64(i)/25, acq)); err != nil {
			t.Fatal(err)
		}
	}
	// one across the antimeridian's neighbourhood, one point site
	st.Add("detections", square("far/1:720:0:0/cafo", "cafo", "far", 179.99, -16.5, 0.9, "2024-01-01T00:00:00Z"))
	st.Add("sites", []byte(`{"type":"Feature","id":"cafo/s0/1","geometry":{"type":"Point","coordinates":[-93.6,42.0]},"properties":{"class":"cafo","max_score":0.8,"scene_ids":["s0","s1"]}}`))
	return st
}

func get(t *testing.T, u string, accept string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %v\n%s", u, err, body)
		}
	} else {
		m = map[string]any{"html": string(body)}
	}
	return resp, m
}

// links returns a body's links by rel (several for a rel are joined by " ").
func links(m map[string]any) map[string]string {
	out := map[string]string{}
	ls, _ := m["links"].([]any)
	for _, l := range ls {
		l := l.(map[string]any)
		rel := l["rel"].(string)
		if out[rel] != "" {
			out[rel] += " "
		}
		out[rel] += l["href"].(string) + "|" + fmt.Sprint(l["type"])
	}
	return out
}

func TestConformance(t *testing.T) {
	_, srv := testServer(t)
	resp, m := get(t, srv.URL+"/", "")
	l := links(m)
	if resp.Header.Get("Content-Type") != "application/json" || l["self"] == "" || l["alternate"] == "" || !strings.Contains(l["service-desc"], "/api|application/vnd.oai.openapi+json;version=3.0") ||
		!strings.Contains(l["conformance"], "/conformance") || !strings.Contains(l["data"], "/collections") || !strings.Contains(l["related"], "/map") {
		t.Errorf("landing page links %v", l)
	}
	_, m = get(t, srv.URL+"/conformance", "")
	cs := fmt.Sprint(m["conformsTo"])
	for _, c := range []string{"conf/core", "conf/geojson", "conf/oas30", "conf/html"} {
		if !strings.Contains(cs, c) {
			t.Errorf("conformsTo lacks %s: %s", c, cs)
		}
	}
	resp, m = get(t, srv.URL+"/api", "")
	if resp.Header.Get("Content-Type") != "application/vnd.oai.openapi+json;version=3.0" || m["openapi"] != "3.0.3" || !strings.Contains(fmt.Sprint(m["servers"]), srv.URL) {
		t.Errorf("/api: %s %v", resp.Header.Get("Content-Type"), m["servers"])
	}
	if paths := fmt.Sprint(m["paths"]); !strings.Contains(paths, "/collections/{collectionId}/items/{featureId}") {
		t.Errorf("/api paths: %s", paths)
	}
	// collections: real extents, links to items as GeoJSON and to the schema
	_, m = get(t, srv.URL+"/collections", "")
	cols := m["collections"].([]any)
	if len(cols) != 2 {
		t.Fatalf("%d collections", len(cols))
	}
	det := cols[0].(map[string]any)
	bbox := det["extent"].(map[string]any)["spatial"].(map[string]any)["bbox"].([]any)[0].([]any)
	if math.Abs(bbox[0].(float64)+93.603) > 1e-9 || math.Abs(bbox[1].(float64)+16.503) > 1e-9 || math.Abs(bbox[2].(float64)-179.993) > 1e-9 || math.Abs(bbox[3].(float64)-42.043) > 1e-9 {
		t.Errorf("detections bbox %v", bbox)
	}
	interval := det["extent"].(map[string]any)["temporal"].(map[string]any)["interval"].([]any)[0].([]any)
	if interval[0] != "2023-07-10T17:00:00Z" || interval[1] != "2024-01-01T00:00:00Z" {
		t.Errorf("temporal extent %v", interval)
	}
	dl := links(det)
	if !strings.Contains(dl["items"], "/collections/detections/items?f=json|application/geo+json") || !strings.Contains(dl["describedby"], "/schema|application/schema+json") {
		t.Errorf("collection links %v", dl)
	}
	// items: numberMatched, numberReturned, timeStamp, self/alternate/next/collection
	resp, m = get(t, srv.URL+"/collections/detections/items?limit=10", "")
	l = links(m)
	if resp.Header.Get("Content-Type") != "application/geo+json" || m["type"] != "FeatureCollection" || m["numberMatched"].(float64) != 26 ||
		m["numberReturned"].(float64) != 10 || m["timeStamp"] == nil || l["self"] == "" || l["alternate"] == "" || l["next"] == "" || l["collection"] == "" {
		t.Errorf("items page: %s matched %v returned %v links %v", resp.Header.Get("Content-Type"), m["numberMatched"], m["numberReturned"], l)
	}
	// following next links returns every feature once
	seen := map[string]bool{}
	next := srv.URL + "/collections/detections/items?limit=7"
	for pages := 0; next != "" && pages < 10; pages++ {
		_, m = get(t, next, "")
		for _, f := range m["features"].([]any) {
			id := f.(map[string]any)["id"].(string)
			if seen[id] {
				t.Errorf("%s on two pages", id)
			}
			seen[id] = true
		}
		next, _, _ = strings.Cut(links(m)["next"], "|")
	}
	if len(seen) != 26 {
		t.Errorf("paging by 7 returned %d features, want 26", len(seen))
	}
	// one feature, with an id holding '/' and ':'
	id := "s0/26915:720:0:0/cafo"
	resp, m = get(t, srv.URL+"/collections/detections/items/"+url.PathEscape(id), "")
	if resp.StatusCode != 200 || m["id"] != id || links(m)["collection"] == "" || resp.Header.Get("Content-Type") != "application/geo+json" {
		t.Errorf("one feature: %d %v", resp.StatusCode, m)
	}
	// a browser gets HTML
	resp, m = get(t, srv.URL+"/collections/detections/items", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(m["html"].(string), "26 features match") {
		t.Errorf("HTML items: %s\n%.300s", resp.Header.Get("Content-Type"), m["html"])
	}
}

func TestQueries(t *testing.T) {
	_, srv := testServer(t)
	count := func(q string) int {
		t.Helper()
		resp, m := get(t, srv.URL+"/collections/detections/items?limit=1000&"+q, "")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %v", q, resp.StatusCode, m)
		}
		return int(m["numberMatched"].(float64))
	}
	for q, want := range map[string]int{
		"":                                                   26,
		"class=cafo":                                         10, // 9 on the grid, 1 far
		"scene_id=s1":                                        12,
		"min_score=0.5":                                      13, // 0.52 ... 0.96 and the far one
		"bbox=-93.605,41.995,-93.595,42.005":                 1,  // squares are 0.006 wide, 0.01 apart
		"bbox=-93.598,41.998,-93.592,42.002":                 2,  // reaches into (0,0) and (1,0)
		"bbox=-93.5955,41.995,-93.5945,42.005":               0,  // between two squares
		"bbox=-93.6,42.0,-93.6,42.0":                         1,  // a point inside one
		"bbox=179.5,-17,-179.5,-16":                          1,  // across the antimeridian
		"bbox=179.5,-17,0,-179.5,-16,10":                     1,  // 6 numbers: heights ignored
		"datetime=2023-07-10T17:00:00Z":                      5,
		"datetime=2023-07-10":                                5,
		"datetime=2023-07-13T00:00:00Z/..":                   11,
		"datetime=../2023-07-11T17:00:00Z":                   10,
		"datetime=2023-07-11T00:00:00Z/2023-07-12T23:00Z":    0,
		"datetime=2023-07-11T00:00:00Z/2023-07-12T23:00:00Z": 10,
		"class=cafo&min_score=0.5&scene_id=s0":               2, // i = 18, 24
	} {
		if q == "datetime=2023-07-11T00:00:00Z/2023-07-12T23:00Z" {
			continue // not RFC 3339 (no seconds): checked below as a 400
		}
		if got := count(q); got != want {
			t.Errorf("%s: %d features, want %d", q, got, want)
		}
	}
	// bad parameters: 400 naming the parameter; unknown things: 404
	for q, name := range map[string]string{
		"bbox=1,2,3":     "bbox",
		"bbox=a,b,c,d":   "bbox",
		"bbox=0,95,1,96": "bbox",
		"bbox-crs=http://www.opengis.net/def/crs/EPSG/0/4326": "bbox-crs",
		"datetime=yesterday": "datetime",
		"datetime=../..":     "datetime",
		"datetime=2024-01-01T00:00:00Z/2023-01-01T00:00:00Z": "datetime",
		"datetime=2023-07-11T00:00:00Z/2023-07-12T23:00Z":    "datetime",
		"limit=0":         "limit",
		"limit=ten":       "limit",
		"offset=-1":       "offset",
		"class=volcano":   "class",
		"min_score=2":     "min_score",
		"colour=red":      "colour",
		"f=xml":           "f",
		"limit=1&limit=2": "limit",
	} {
		resp, m := get(t, srv.URL+"/collections/detections/items?"+q, "")
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || m["code"] != "InvalidParameterValue" ||
			!strings.HasPrefix(m["description"].(string), name+":") {
			t.Errorf("%s: %d %v", q, resp.StatusCode, m)
		}
	}
	if resp, m := get(t, srv.URL+"/collections/sites/items?datetime=2023-07-10", ""); resp.StatusCode != 400 || !strings.Contains(m["description"].(string), "no time property") {
		t.Errorf("datetime on sites: %d %v", resp.StatusCode, m)
	}
	for _, u := range []string{"/collections/volcanoes", "/collections/volcanoes/items", "/collections/detections/items/nope", "/collections/sites/items/s0%2F26915:720:0:0%2Fcafo"} {
		if resp, m := get(t, srv.URL+u, ""); resp.StatusCode != 404 || m["code"] != "NotFound" {
			t.Errorf("%s: %d %v", u, resp.StatusCode, m)
		}
	}
	// limit above the maximum is served as the maximum
	if resp, m := get(t, srv.URL+"/collections/detections/items?limit=20000", ""); resp.StatusCode != 200 || m["numberReturned"].(float64) != 26 {
		t.Errorf("limit=20000: %d %v", resp.StatusCode, m["numberReturned"])
	}
}

// TestIntersects checks exact polygon/box intersection on a footprint
// that is not axis-aligned (as a UTM chip is in lon/lat).
func TestIntersects(t *testing.T) {
	diamond := orb.Polygon{{{0, -1}, {1, 0}, {0, 1}, {-1, 0}, {0, -1}}}
	for _, c := range []struct {
		b    orb.Bound
		want bool
	}{
		{orb.Bound{Min: orb.Point{0.8, 0.8}, Max: orb.Point{1, 1}}, false},       // in the diamond's bounds, not in it
		{orb.Bound{Min: orb.Point{0.4, 0.4}, Max: orb.Point{1, 1}}, true},        // corner over an edge
		{orb.Bound{Min: orb.Point{-0.1, -0.1}, Max: orb.Point{0.1, 0.1}}, true},  // wholly inside
		{orb.Bound{Min: orb.Point{-5, -5}, Max: orb.Point{5, 5}}, true},          // wholly around
		{orb.Bound{Min: orb.Point{0.5, 0.5}, Max: orb.Point{0.6, 0.6}}, true},    // touching the edge x+y=1
		{orb.Bound{Min: orb.Point{1.0001, -0.1}, Max: orb.Point{2, 0.1}}, false}, // right of the tip
		{orb.Bound{Min: orb.Point{-0.2, 1.2}, Max: orb.Point{0.2, 1.5}}, false},  // above
	} {
		if got := intersects(diamond, c.b); got != c.want {
			t.Errorf("diamond vs %v: %v, want %v", c.b, got, c.want)
		}
	}
}

// TestExpire drops what the stream has aged out: counts, lookups, the
// spatial index and the extents follow.
func TestExpire(t *testing.T) {
	st := NewStore(Detections, Sites)
	now := time.Now()
	st.AddAt("detections", square("old/1", "cafo", "s", 10, 10, 0.9, "2020-01-01T00:00:00Z"), now.Add(-48*time.Hour))
	st.AddAt("detections", square("new/1", "cafo", "s", -93.6, 42, 0.9, "2023-07-15T00:00:00Z"), now)
	if n := st.Expire(now.Add(-24 * time.Hour)); n != 1 {
		t.Fatalf("dropped %d, want 1", n)
	}
	info, _ := st.Collection("detections")
	if info.Count != 1 || info.Bound.Min[0] > -93.6 || info.Bound.Max[0] > -93.5 || info.TMin.Year() != 2023 {
		t.Errorf("after expiry: %+v", info)
	}
	if _, ok := st.Feature("detections", "old/1"); ok {
		t.Error("the old feature is still found by id")
	}
	p, _ := st.Query("detections", Query{Limit: 10, BBoxes: []orb.Bound{{Min: orb.Point{9, 9}, Max: orb.Point{11, 11}}}})
	q, _ := st.Query("detections", Query{Limit: 10, BBoxes: []orb.Bound{{Min: orb.Point{-94, 41}, Max: orb.Point{-93, 43}}}})
	if p.Matched != 0 || q.Matched != 1 {
		t.Errorf("bbox queries after expiry: old place %d, new place %d", p.Matched, q.Matched)
	}
}
