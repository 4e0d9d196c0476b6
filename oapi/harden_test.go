package oapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paulmach/orb"
)

// hangDeadline is how long a request or a store call may take before the
// test calls it a hang: generous, as it only tells a hang from a slow CI.
const hangDeadline = 10 * time.Second

// within runs f and fails the test if it has not returned by hangDeadline.
// A hung f is left running (it cannot be stopped) so that the test fails
// instead of hanging.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(hangDeadline):
		t.Fatalf("%s: still running after %v", what, hangDeadline)
	}
}

// closeWithin closes a test server, failing the test instead of waiting
// forever when a handler hangs (Close waits for every handler).
func closeWithin(t *testing.T, srv *httptest.Server) {
	srv.CloseClientConnections()
	within(t, "closing the server", srv.Close)
}

// do sends a GET with headers (name, value pairs) and a deadline, and
// decodes a JSON body; an HTML body is returned under "html".
func do(t *testing.T, u string, headers ...string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := map[string]any{"html": string(body)}
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %d, body is not JSON: %v\n%s", u, resp.StatusCode, err, body)
		}
	}
	return resp.StatusCode, m
}

// TestBadParametersAre400 sends every kind of bad number, paging value,
// malformed pair and header to the real handler over the real store:
// each is a 400 OGC exception whose description starts with the name of
// the parameter or header at fault.
func TestBadParametersAre400(t *testing.T) {
	_, srv := testServer(t)
	items := "/collections/detections/items?"
	for _, c := range []struct {
		path, name string
		headers    []string
	}{
		{path: items + "bbox=NaN,41,-93,43", name: "bbox"},
		{path: items + "bbox=-94,nan,-93,43", name: "bbox"},
		{path: items + "bbox=-94,41,NaN,43", name: "bbox"},
		{path: items + "bbox=-94,41,-93,NaN", name: "bbox"},
		{path: items + "bbox=-94,41,Inf,43", name: "bbox"},
		{path: items + "bbox=-Inf,41,-93,43", name: "bbox"},
		{path: items + "bbox=-94,-Inf,-93,%2BInf", name: "bbox"},
		{path: items + "bbox=1e400,41,-93,43", name: "bbox"},
		{path: items + "bbox=-94,41,NaN,-93,43,0", name: "bbox"}, // a NaN height
		{path: items + "bbox=-94,41,5,-93,43,0", name: "bbox"},   // min height above max
		{path: items + "bbox=-94,43,-93,41", name: "bbox"},       // min latitude above max
		{path: items + "bbox=-181,41,-93,43", name: "bbox"},
		{path: items + "min_score=NaN", name: "min_score"},
		{path: items + "min_score=Inf", name: "min_score"},
		{path: items + "min_score=-Inf", name: "min_score"},
		{path: items + "min_score=1e400", name: "min_score"},
		{path: items + "min_score=-0.1", name: "min_score"},
		{path: items + "limit=NaN", name: "limit"},
		{path: items + "limit=Inf", name: "limit"},
		{path: items + "limit=1e400", name: "limit"},
		{path: items + "limit=-1", name: "limit"},
		{path: items + "limit=-9223372036854775808", name: "limit"},
		{path: items + "offset=NaN", name: "offset"},
		{path: items + "offset=Inf", name: "offset"},
		{path: items + "offset=1e400", name: "offset"},
		{path: items + "offset=-1", name: "offset"},
		{path: items + "offset=1000000001", name: "offset"},
		{path: items + "offset=9223372036854775807", name: "offset"},
		{path: items + "offset=99999999999999999999", name: "offset"},
		{path: items + "datetime=2023-13-01", name: "datetime"},
		{path: items + "datetime=NaN", name: "datetime"},
		{path: items + "scene_id=..%2Fetc", name: "scene_id"},
		{path: items + "scene_id=%3Cscript%3E", name: "scene_id"},
		{path: items + "class=%3Cb%3E", name: "class"},
		{path: items + "bbox=%zz", name: "bbox"},          // a bad escape, dropped by r.URL.Query()
		{path: items + "limit=1;offset=2", name: "limit"}, // ';' is no separator
		{path: items + "=5", name: `""`},                  // a nameless parameter
		{path: "/collections?f=json&f=html", name: "f"},   // repeated where none but f is taken
		{path: "/collections?limit=NaN", name: "limit"},   // unknown there
		{path: "/api?bbox=NaN,0,0,0", name: "bbox"},       // unknown there
		{path: "/collections/detections/schema?f=%zz", name: "f"},
		{path: "/collections", name: "X-Forwarded-Host", headers: []string{"X-Forwarded-Host", "evil.example/<script>"}},
		{path: "/api", name: "X-Forwarded-Host", headers: []string{"X-Forwarded-Host", `x", "paths": {}, "y": "`}},
		{path: items, name: "X-Forwarded-Host", headers: []string{"X-Forwarded-Host", "a b"}},
		{path: "/", name: "X-Forwarded-Host", headers: []string{"X-Forwarded-Host", "example.org:99999"}},
		{path: "/", name: "X-Forwarded-Host", headers: []string{"X-Forwarded-Host", "example.org:0"}},
		{path: "/", name: "X-Forwarded-Host", headers: []string{"X-Forwarded-Host", "[::1"}},
		{path: "/", name: "X-Forwarded-Host", headers: []string{"X-Forwarded-Host", "user@example.org"}},
		{path: "/conformance", name: "X-Forwarded-Proto", headers: []string{"X-Forwarded-Proto", "javascript"}},
		{path: "/collections/detections/items/x", name: "X-Forwarded-Proto", headers: []string{"X-Forwarded-Proto", "ftp"}},
	} {
		status, m := do(t, srv.URL+c.path, c.headers...)
		desc, _ := m["description"].(string)
		if status != 400 || m["code"] != "InvalidParameterValue" || !strings.HasPrefix(desc, c.name+":") {
			t.Errorf("%s %v: %d %v, want 400 naming %s", c.path, c.headers, status, m, c.name)
		}
	}
}

// TestForwardedHeaders: a proxy's valid host[:port] and scheme make the
// links, the first of a list counting; /api stays JSON.
func TestForwardedHeaders(t *testing.T) {
	_, srv := testServer(t)
	for _, c := range []struct{ host, proto, want string }{
		{"maps.example.org:8443", "https", "https://maps.example.org:8443/"},
		{"[2001:db8::1]:8080", "HTTP", "http://[2001:db8::1]:8080/"},
		{"maps.example.org, internal:9000", "https, http", "https://maps.example.org/"},
	} {
		status, m := do(t, srv.URL+"/collections", "X-Forwarded-Host", c.host, "X-Forwarded-Proto", c.proto)
		if self := links(m)["self"]; status != 200 || !strings.HasPrefix(self, c.want+"collections") {
			t.Errorf("%s %s: %d self %q, want it under %s", c.host, c.proto, status, self, c.want)
		}
		status, m = do(t, srv.URL+"/api", "X-Forwarded-Host", c.host, "X-Forwarded-Proto", c.proto)
		if servers := fmt.Sprint(m["servers"]); status != 200 || !strings.Contains(servers, strings.TrimSuffix(c.want, "/")) {
			t.Errorf("/api behind %s: %d servers %s", c.host, status, servers)
		}
	}
}

// TestHugeOffsetHTML: the items page at the largest offset served says
// nothing is on it and prints no negative number; one past it is a 400.
func TestHugeOffsetHTML(t *testing.T) {
	_, srv := testServer(t)
	status, m := do(t, srv.URL+fmt.Sprintf("/collections/detections/items?f=html&offset=%d", MaxOffset))
	page := m["html"].(string)
	summary := regexp.MustCompile(`<p>[^<]*</p>`).FindString(page)
	if status != 200 || summary != "<p>26 features match; none on this page.</p>" {
		t.Errorf("offset=%d: %d\n%s", MaxOffset, status, page)
	}
	status, m = do(t, srv.URL+"/collections/detections/items?f=html&offset=9223372036854775807")
	if desc, _ := m["description"].(string); status != 400 || !strings.HasPrefix(desc, "offset:") {
		t.Errorf("offset=MaxInt64 as HTML: %d %v", status, m)
	}
}

// TestNaNBBoxDoesNotHang: the request that used to spin under the store's
// read lock returns 400, and a write to the store afterwards goes through.
func TestNaNBBoxDoesNotHang(t *testing.T) {
	st := NewStore(Detections, Sites)
	st.Add("detections", square("a/1:720:0:0/cafo", "cafo", "a", -93.5, 42, 0.9, "2023-07-10T17:00:00Z"))
	mux := http.NewServeMux()
	Register(mux, st, Options{Title: "test"})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { closeWithin(t, srv) })
	status, m := do(t, srv.URL+"/collections/detections/items?bbox=NaN,41,-93,43")
	if desc, _ := m["description"].(string); status != 400 || !strings.HasPrefix(desc, "bbox:") {
		t.Errorf("NaN bbox: %d %v", status, m)
	}
	within(t, "a write after the NaN bbox request", func() {
		if err := st.Add("detections", square("b/1:720:0:0/cafo", "cafo", "b", -93.4, 42, 0.9, "2023-07-10T17:00:00Z")); err != nil {
			t.Error(err)
		}
	})
	if status, m := do(t, srv.URL+"/collections/detections/items?bbox=-94,41,-93,43"); status != 200 || m["numberMatched"] != 2.0 {
		t.Errorf("after the write: %d %v", status, m["numberMatched"])
	}
}

// TestStoreBoxesBounded: Store.Query and Store.Add take any bound, however
// wild (NaN, infinite, far beyond the world), in bounded time, and still
// find what is there.
func TestStoreBoxesBounded(t *testing.T) {
	st := NewStore(Detections, Sites)
	for i := range 20 { // more items than a small box has cells, so the grid is used
		st.Add("detections", square(fmt.Sprintf("s/%d/cafo", i), "cafo", "s", -93.6+float64(i)*0.01, 42, 0.5, "2023-07-10T17:00:00Z"))
	}
	// one polygon 200,000 degrees wide: 8e5 x 8e5 cells if indexed cell by cell
	huge := `{"type":"Feature","id":"huge","geometry":{"type":"Polygon","coordinates":[[[-1e5,-1e5],[1e5,-1e5],[1e5,1e5],[-1e5,1e5],[-1e5,-1e5]]]},"properties":{"class":"cafo","score":0.5}}`
	within(t, "adding a huge polygon", func() {
		if err := st.Add("detections", []byte(huge)); err != nil {
			t.Error(err)
		}
	})
	// one index entry for it, not the world's million cells
	if c := st.cols["detections"]; len(c.wide) != 1 || len(c.grid) != 4 {
		t.Errorf("the huge polygon: %d wide entries, %d cells indexed; want 1 and the squares' 4", len(c.wide), len(c.grid))
	}
	nan, inf := math.NaN(), math.Inf(1)
	for _, c := range []struct {
		b    orb.Bound
		want int // matches, the huge polygon included
	}{
		{orb.Bound{Min: orb.Point{-inf, -inf}, Max: orb.Point{inf, inf}}, 21},
		{orb.Bound{Min: orb.Point{-1e300, -1e300}, Max: orb.Point{1e300, 1e300}}, 21},
		{orb.Bound{Min: orb.Point{-93.605, 41.99}, Max: orb.Point{-93.595, 42.01}}, 2}, // one square and the huge one
		{orb.Bound{Min: orb.Point{10, 10}, Max: orb.Point{10.1, 10.1}}, 1},             // only inside the huge one
		{orb.Bound{Min: orb.Point{-93.9, 41.6}, Max: orb.Point{-93.455, 42.4}}, 16},    // 12 cells, more than the 4 occupied: the index is walked
	} {
		within(t, fmt.Sprintf("a query over %v", c.b), func() {
			p, err := st.Query("detections", Query{Limit: 100, BBoxes: []orb.Bound{c.b}})
			if err != nil || p.Matched != c.want {
				t.Errorf("query over %v: %d matched (%v), want %d", c.b, p.Matched, err, c.want)
			}
		})
	}
	// a NaN would match everything (every comparison with it fails): refused
	within(t, "a query over a NaN box", func() {
		_, err := st.Query("detections", Query{Limit: 100, BBoxes: []orb.Bound{{Min: orb.Point{nan, 41}, Max: orb.Point{-93, 43}}}})
		if err == nil || !strings.Contains(err.Error(), "bbox") {
			t.Errorf("query over a NaN box: %v, want an error naming bbox", err)
		}
	})
	// replaced by a small one elsewhere, the huge polygon leaves the index
	st.Add("detections", square("huge", "cafo", "s", 100, 10, 0.5, "2023-07-10T17:00:00Z"))
	if p, _ := st.Query("detections", Query{Limit: 100, BBoxes: []orb.Bound{{Min: orb.Point{10, 10}, Max: orb.Point{10.1, 10.1}}}}); p.Matched != 0 || len(st.cols["detections"].wide) != 0 {
		t.Errorf("the replaced huge polygon still matches (%d) or is still indexed (%d wide)", p.Matched, len(st.cols["detections"].wide))
	}
}
