package oapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzQuery drives the real handler over a real store with arbitrary
// query strings (and an arbitrary X-Forwarded-Host), on the items of a
// collection or on another resource: no panic, a status of 200, 400 or
// 404, a JSON body that parses (an exception with a code and a
// description naming what is at fault, or a page of at most limit
// features), and an HTML page that prints no negative count.
func FuzzQuery(f *testing.F) {
	for _, q := range []string{
		"", "limit=5&offset=3", "bbox=-93.605,41.995,-93.595,42.005", "bbox=179.5,-17,-179.5,-16",
		"bbox=179.5,-17,0,-179.5,-16,10", "bbox=NaN,41,-93,43", "bbox=-180,-90,180,90", "bbox=1e400,0,0,0",
		"datetime=2023-07-10", "datetime=2023-07-13T00:00:00Z/..", "datetime=../..", "class=cafo&min_score=0.5&scene_id=s0",
		"min_score=NaN", "limit=-1", "offset=9223372036854775807", "f=html&offset=1000000000", "a=%zz", "limit=1;offset=2",
	} {
		f.Add(q, "", uint8(0))
	}
	f.Add("f=html", "proxy.example.org:8080", uint8(0))
	f.Add("", "evil/<x>", uint8(1))
	f.Add("f=json", "[::1]:80", uint8(2))

	st := testStore(f)
	mux := http.NewServeMux()
	Register(mux, st, Options{Title: "fuzz"})
	paths := []string{"/collections/detections/items", "/collections/sites/items", "/collections/detections",
		"/collections", "/api", "/", "/collections/volcanoes/items", "/collections/detections/items/s0%2F26915:720:0:0%2Fcafo"}

	f.Fuzz(func(t *testing.T, query, fwdHost string, which uint8) {
		req := httptest.NewRequest("GET", paths[int(which)%len(paths)], nil)
		req.URL.RawQuery = query // set, not parsed: NewRequest panics on what a raw socket can carry
		if fwdHost != "" {
			req.Header.Set("X-Forwarded-Host", fwdHost)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		checkResponse(t, req.URL.String(), rec)
	})
}

// checkResponse is FuzzQuery's verdict on one response.
func checkResponse(t *testing.T, u string, rec *httptest.ResponseRecorder) {
	body := rec.Body.Bytes()
	ct := rec.Header().Get("Content-Type")
	switch rec.Code {
	case 200, 400, 404:
	default:
		t.Fatalf("%s: status %d\n%s", u, rec.Code, body)
	}
	if strings.HasPrefix(ct, "text/html") {
		if rec.Code != 200 || strings.Contains(string(body), "showing -") || strings.Contains(string(body), "–-") {
			t.Fatalf("%s: %d HTML\n%s", u, rec.Code, body)
		}
		return
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: %d %s body is not JSON: %v\n%s", u, rec.Code, ct, err, body)
	}
	if rec.Code != 200 {
		desc, _ := m["description"].(string)
		if m["code"] == nil || (rec.Code == 400 && !strings.Contains(desc, ": ")) {
			t.Fatalf("%s: %d exception without a code or a named parameter: %v", u, rec.Code, m)
		}
		return
	}
	if feats, ok := m["features"].([]any); ok && len(feats) > MaxLimit {
		t.Fatalf("%s: %d features, more than MaxLimit", u, len(feats))
	}
	r, _ := m["numberReturned"].(float64)
	n, _ := m["numberMatched"].(float64)
	if r < 0 || n < 0 {
		t.Fatalf("%s: negative counts: %v returned, %v matched", u, r, n)
	}
}
