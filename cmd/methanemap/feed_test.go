package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/internal/testenv"
	"github.com/methanemap/methanemap/worker"
)

// stacAPI is a small STAC API /search over a fixed set of Items, paging
// by a token (GET: in the next link's query; POST: in its body, merged).
type stacAPI struct {
	items  []map[string]any
	mu     sync.Mutex
	served map[string]int // "search|item id" → times returned
	pages  int
}

func (s *stacAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var collections []string
	var datetime, token string
	limit := 10
	if r.Method == http.MethodPost {
		var body struct {
			Collections []string `json:"collections"`
			Datetime    string   `json:"datetime"`
			Limit       int      `json:"limit"`
			Token       string   `json:"token"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		collections, datetime, token = body.Collections, body.Datetime, body.Token
		if body.Limit > 0 {
			limit = body.Limit
		}
	} else {
		q := r.URL.Query()
		if c := q.Get("collections"); c != "" {
			collections = strings.Split(c, ",")
		}
		datetime, token = q.Get("datetime"), q.Get("token")
		if n, err := strconv.Atoi(q.Get("limit")); err == nil {
			limit = n
		}
	}
	start, end := time.Time{}, time.Time{}
	if a, b, ok := strings.Cut(datetime, "/"); ok {
		start, _ = time.Parse(time.RFC3339, a)
		end, _ = time.Parse(time.RFC3339, b)
	}
	var match []map[string]any
	for _, it := range s.items {
		t, _ := time.Parse(time.RFC3339Nano, it["properties"].(map[string]any)["datetime"].(string))
		in := len(collections) == 0
		for _, c := range collections {
			in = in || c == it["collection"]
		}
		if in && (start.IsZero() || !t.Before(start)) && (end.IsZero() || !t.After(end)) {
			match = append(match, it)
		}
	}
	off, _ := strconv.Atoi(token)
	page := match[min(off, len(match)):min(off+limit, len(match))]
	key := strings.Join(collections, ",") + " " + r.Method
	s.mu.Lock()
	s.pages++
	for _, it := range page {
		s.served[key+"|"+it["id"].(string)]++
	}
	s.mu.Unlock()
	links := []map[string]any{}
	if off+limit < len(match) {
		next := strconv.Itoa(off + limit)
		if r.Method == http.MethodPost {
			links = append(links, map[string]any{"rel": "next", "href": "http://" + r.Host + r.URL.Path, "method": "POST", "merge": true, "body": map[string]any{"token": next}})
		} else {
			q := r.URL.Query()
			q.Set("token", next)
			links = append(links, map[string]any{"rel": "next", "href": "http://" + r.Host + r.URL.Path + "?" + q.Encode(), "type": "application/geo+json"})
		}
	}
	w.Header().Set("Content-Type", "application/geo+json")
	json.NewEncoder(w).Encode(map[string]any{"type": "FeatureCollection", "features": page, "links": links})
}

// feedCatalogue builds Items from real STAC Items (Planetary Computer NAIP
// and Sentinel-1 RTC, Earth Search Sentinel-2 L2A), moved onto the fixture
// scene: geometry from gdalinfo's wgs84Extent of the fixture NAIP, hrefs to
// hard links of the fixture rasters (one directory per Item, so a scene's
// hrefs say which Items were paired).
func feedCatalogue(t *testing.T, fixture, root string) *stacAPI {
	t.Helper()
	out, err := exec.Command("gdalinfo", "-json", filepath.Join(fixture, "naip.tif")).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		WGS84Extent struct {
			Coordinates [][][2]float64 `json:"coordinates"`
		} `json:"wgs84Extent"`
	}
	json.Unmarshal(out, &info)
	ring := info.WGS84Extent.Coordinates[0]
	minx, miny, maxx, maxy := ring[0][0], ring[0][1], ring[0][0], ring[0][1]
	for _, p := range ring {
		minx, maxx, miny, maxy = min(minx, p[0]), max(maxx, p[0]), min(miny, p[1]), max(maxy, p[1])
	}
	box := func(x0, x1 float64) map[string]any {
		return map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{{x0, miny}, {x1, miny}, {x1, maxy}, {x0, maxy}, {x0, miny}}}}
	}
	full, west, east := box(minx, maxx), box(minx-0.01, (minx+maxx)/2+0.001), box((minx+maxx)/2-0.001, maxx+0.01)
	far := box(minx+5, maxx+5)
	// the fixture's Sentinel-1 as two single-band files, as RTC Items have them
	s1 := filepath.Join(root, "s1split")
	os.MkdirAll(s1, 0o755)
	for b, pol := range []string{"vv", "vh"} {
		if out, err := exec.Command("gdal_translate", "-q", "-b", fmt.Sprint(b+1), filepath.Join(fixture, "s1.tif"), filepath.Join(s1, pol+".tif")).CombinedOutput(); err != nil {
			t.Fatalf("gdal_translate: %v %s", err, out)
		}
	}
	link := func(id, src, name string) string {
		dir := filepath.Join(root, "items", id)
		os.MkdirAll(dir, 0o755)
		dst := filepath.Join(dir, name)
		if err := os.Link(src, dst); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	load := func(name string) map[string]any {
		var it map[string]any
		data, err := os.ReadFile(testenv.RealData(t, filepath.Join("stac", name)))
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(data, &it)
		return it
	}
	make := func(tmpl, id, when string, cloud any, geom map[string]any) map[string]any {
		it := load(tmpl)
		it["id"], it["geometry"] = id, geom
		props := it["properties"].(map[string]any)
		props["datetime"], props["eo:cloud_cover"] = when, cloud
		for k, a := range it["assets"].(map[string]any) {
			a := a.(map[string]any)
			base := strings.TrimSuffix(k, "-jp2")
			switch {
			case k == "image":
				a["href"] = filepath.Join(fixture, "naip.tif")
			case k == "vv" || k == "vh":
				a["href"] = link(id, filepath.Join(s1, k+".tif"), k+".tif")
			case s2Band[base] != "":
				dst := filepath.Join(root, "items", id, s2Band[base]+".tif")
				if _, err := os.Stat(dst); err != nil {
					link(id, filepath.Join(fixture, "s2", s2Band[base]+".tif"), s2Band[base]+".tif")
				}
				a["href"] = dst
			default:
				delete(it["assets"].(map[string]any), k) // thumbnails, metadata: not ours to read
			}
		}
		return it
	}
	naip := "pc_naip_id_m_4611606_ne_11_060_20231117_20240103.json"
	s2 := "earthsearch-v1_sentinel-2-l2a_S2A_13TDE_20231008_0_L2A.json"
	s1rtc := "pc_sentinel-1-rtc_S1A_IW_GRDH_1SDV_20240419T045839_20240419T045904_053498_067DF2_rtc.json"
	broken := make(naip, "naip-broken", "2023-07-15T16:00:00Z", nil, full)
	delete(broken, "geometry") // an Item that cannot be paired: counted and skipped
	return &stacAPI{served: map[string]int{}, items: []map[string]any{
		broken,
		make(naip, "naip-a", "2023-07-15T16:00:00Z", nil, full),
		make(naip, "naip-b", "2024-06-01T16:00:00Z", nil, full),
		make(naip, "naip-c", "2025-03-01T16:00:00Z", nil, full), // no Sentinel-2 near it
		make(s2, "s2-cloudy", "2023-07-14T17:00:00Z", 60.0, full),
		make(s2, "s2-clear", "2023-07-20T17:00:00Z", 3.0, full),
		make(s2, "s2-old", "2023-05-01T17:00:00Z", 0.0, full), // searched, but 75 days from naip-a
		make(s2, "s2-elsewhere", "2023-07-15T17:00:00Z", 0.0, far),
		make(s2, "s2-west", "2024-06-03T17:00:00Z", 10.0, west),
		make(s2, "s2-east", "2024-06-05T17:00:00Z", 12.0, east),
		make(s1rtc, "s1-near", "2023-07-16T05:00:00Z", nil, full),
		make(s1rtc, "s1-far", "2023-07-01T05:00:00Z", nil, full),
		make(s1rtc, "s1-2024", "2024-06-02T05:00:00Z", nil, full),
	}}
}

// s2Band maps Earth Search v1 asset keys to the fixture's band files.
var s2Band = map[string]string{"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
	"rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "swir16": "B11", "swir22": "B12", "scl": "SCL"}

func feedArgs(url, mosaics string, extra ...string) []string {
	return append([]string{"feed", "--stac", url + "/search", "--collection", "naip=naip", "--collection", "s2=sentinel-2-l2a",
		"--collection", "s1=sentinel-1-rtc", "--datetime", "2023-01-01T00:00:00Z/2025-12-31T00:00:00Z", "--limit", "2",
		"--mosaic-dir", mosaics, "--once", "--rate", "0"}, extra...)
}

// TestFeedPairsAndQueues runs `feed` against a local STAC API made of real
// Items moved onto the fixture scene: paging (GET and POST) returns every
// Item once; NAIP Items pair with the clearest Sentinel-2 and the nearest
// Sentinel-1 in their windows, or with a mosaic of two Sentinel-2 halves;
// a NAIP Item with nothing near is counted, not queued; the queued scenes
// are scored by the daemon; a second run queues nothing; two feeds at once
// queue each scene once.
func TestFeedPairsAndQueues(t *testing.T) {
	fixture := fixtureDir(t)
	root := t.TempDir()
	api := feedCatalogue(t, fixture, root)
	srv := httptest.NewServer(api)
	defer srv.Close()
	mosaics := filepath.Join(root, "mosaics")
	for _, post := range []bool{false, true} {
		args := feedArgs(srv.URL, mosaics, "--dry-run")
		if post {
			args = append(args, "--post")
		}
		api.served = map[string]int{}
		code, stdout, stderr := cli(t, args...)
		if code != 0 {
			t.Fatalf("feed --dry-run (post %v): %d\n%s\n%s", post, code, stdout, stderr)
		}
		for k, n := range api.served {
			if n != 1 {
				t.Errorf("post %v: %s served %d times", post, k, n)
			}
		}
		if len(api.served) != 13 {
			t.Errorf("post %v: %d Items served over the searches, want 13", post, len(api.served))
		}
		scenes := map[string]mm.Scene{}
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var sc mm.Scene
			if err := json.Unmarshal([]byte(l), &sc); err != nil {
				t.Fatalf("dry run printed %q", l)
			}
			scenes[sc.ID] = sc
		}
		a, b := scenes["naip-a"], scenes["naip-b"]
		if len(scenes) != 2 || a.ID == "" || b.ID == "" {
			t.Fatalf("post %v: scenes %v", post, scenes)
		}
		if h := a.Assets[mm.Sentinel2].Hrefs["B04"]; !strings.Contains(h, "/items/s2-clear/") {
			t.Errorf("naip-a paired with Sentinel-2 %s, want s2-clear (least cloud in the window)", h)
		}
		if h := a.Assets[mm.Sentinel1].Hrefs["VV"]; !strings.Contains(h, "/items/s1-near/") {
			t.Errorf("naip-a paired with Sentinel-1 %s, want s1-near (nearest in time)", h)
		}
		if h := b.Assets[mm.Sentinel2].Hrefs["B04"]; h != filepath.Join(mosaics, "naip-b", "s2-B04.vrt") {
			t.Errorf("naip-b's Sentinel-2 B04 is %s, want a mosaic of s2-west and s2-east", h)
		}
		if !strings.Contains(stderr, "s2_no_items_in_window") {
			t.Errorf("naip-c's missing pair is not reported:\n%s", stderr)
		}
		if !strings.Contains(stderr, "bad_items=1") || !strings.Contains(stderr, "naip-broken: geometry") {
			t.Errorf("the Item without geometry is not counted as bad:\n%s", stderr)
		}
		if _, err := os.Stat(mosaics); err == nil {
			t.Error("a dry run wrote mosaics")
		}
	}
	// an AOI: set on each scene; one far away leaves nothing to queue
	truth, err := fixtures.ReadTruth(filepath.Join(fixture, "truth.geojson"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dx     float64
		scenes int
	}{{0, 2}, {3, 0}} {
		p := truth[0].LonLat
		aoi := filepath.Join(root, fmt.Sprintf("aoi%g.geojson", c.dx))
		writeFile(t, aoi, fmt.Sprintf(`{"type":"Polygon","coordinates":[[[%f,%f],[%f,%f],[%f,%f],[%f,%f],[%f,%f]]]}`,
			p[0]+c.dx-0.005, p[1]-0.005, p[0]+c.dx+0.005, p[1]-0.005, p[0]+c.dx+0.005, p[1]+0.005, p[0]+c.dx-0.005, p[1]+0.005, p[0]+c.dx-0.005, p[1]-0.005))
		code, stdout, stderr := cli(t, feedArgs(srv.URL, mosaics, "--dry-run", "--aoi", aoi)...)
		lines := strings.Fields(strings.TrimSpace(stdout))
		if code != 0 || len(lines) != c.scenes || (c.scenes > 0 && !strings.Contains(stdout, `"aoi":{"type":"Polygon"`)) {
			t.Errorf("--aoi %g° east: exit %d, %d scenes\n%s\n%s", c.dx, code, len(lines), stdout, stderr)
		}
	}
	// queue for real: the daemon scores both scenes
	d := startDaemon(t, "--allow", fixture, "--allow", root)
	code, stdout, stderr := cli(t, append(feedArgs(srv.URL, mosaics), "--nats", d.url)...)
	if code != 0 || !strings.Contains(stdout, "(bad 1), queued 2, already queued 0") || !strings.Contains(stdout, "s2_no_items_in_window:1") {
		t.Fatalf("feed: %d\n%s\n%s", code, stdout, stderr)
	}
	ev := d.waitFinal(t, "naip-a", "naip-b")
	for id, e := range ev {
		if e.Event != "done" {
			t.Errorf("%s: %+v", id, e)
		}
	}
	// the mosaic is a VRT of both halves, as GDAL reads it
	vrt, err := exec.Command("gdalinfo", filepath.Join(mosaics, "naip-b", "s2-B04.vrt")).CombinedOutput()
	if err != nil || !strings.Contains(string(vrt), "items/s2-west/B04.tif") || !strings.Contains(string(vrt), "items/s2-east/B04.tif") {
		t.Errorf("gdalinfo of the mosaic: %v\n%s", err, vrt)
	}
	// a restart queues nothing again
	code, stdout, stderr = cli(t, append(feedArgs(srv.URL, mosaics), "--nats", d.url)...)
	if code != 0 || !strings.Contains(stdout, "queued 0, already queued 2") {
		t.Errorf("second feed run: %d\n%s\n%s", code, stdout, stderr)
	}
	// two feeds at once on a fresh broker: each scene queued once
	d2 := startDaemon(t, "--allow", fixture, "--allow", root)
	var wg sync.WaitGroup
	outs := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, outs[i], _ = cli(t, append(feedArgs(srv.URL, filepath.Join(root, fmt.Sprintf("mosaics%d", i))), "--nats", d2.url)...)
		}()
	}
	wg.Wait()
	queued := 0
	for _, o := range outs {
		var q, a int
		i := strings.Index(o, "queued ")
		if i < 0 {
			t.Fatalf("a feed printed no summary:\n%s", o)
		}
		fmt.Sscanf(o[i:], "queued %d, already queued %d", &q, &a)
		queued += q
	}
	if queued != 2 {
		t.Errorf("two feeds at once queued %d scenes, want 2:\n%s", queued, strings.Join(outs, "\n"))
	}
	d2.waitFinal(t, "naip-a", "naip-b")
	for _, id := range []string{"naip-a", "naip-b"} {
		accepted, started := 0, 0
		for _, raw := range readAll(t, d2.js, worker.EventsStream, "methanemap.events."+id) {
			if strings.Contains(string(raw), `"event":"accepted"`) {
				accepted++
			}
			if strings.Contains(string(raw), `"event":"started"`) {
				started++
			}
		}
		// no accepted event only when the worker reported first (Enqueue
		// then leaves the worker's event last)
		if accepted > 1 || accepted == 0 && started == 0 {
			t.Errorf("%s accepted %d times (started %d)", id, accepted, started)
		}
	}
}

// TestFeedCatalogueFaults: a catalogue answering 429 then 200 is waited
// for (Retry-After) and read; one answering 500 forever and one answering
// HTML end the pass with a clear error and exit 1, without a crash.
func TestFeedCatalogueFaults(t *testing.T) {
	fixture := fixtureDir(t)
	root := t.TempDir()
	api := feedCatalogue(t, fixture, root)
	var calls atomic.Int64
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		api.ServeHTTP(w, r)
	}))
	defer flaky.Close()
	t0 := time.Now()
	code, stdout, stderr := cli(t, feedArgs(flaky.URL, filepath.Join(root, "m"), "--dry-run")...)
	if code != 0 || strings.Count(stdout, "\n") != 2 || time.Since(t0) < time.Second {
		t.Errorf("429 then 200: exit %d after %s\n%s\n%s", code, time.Since(t0), stdout, stderr)
	}
	var fails atomic.Int64
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fails.Add(1)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}))
	defer broken.Close()
	code, _, stderr = cli(t, feedArgs(broken.URL, filepath.Join(root, "m"), "--dry-run", "--retries", "3")...)
	if code != 1 || !strings.Contains(stderr, "HTTP 500 after 3 attempt(s)") || fails.Load() < 3 {
		t.Errorf("500 forever: exit %d, %d requests\n%s", code, fails.Load(), stderr)
	}
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Welcome to our catalogue portal</body></html>")
	}))
	defer html.Close()
	code, _, stderr = cli(t, feedArgs(html.URL, filepath.Join(root, "m"), "--dry-run")...)
	if code != 1 || !strings.Contains(stderr, "not a STAC API search endpoint") || !strings.Contains(stderr, "text/html") {
		t.Errorf("HTML: exit %d\n%s", code, stderr)
	}
}

// TestServeFollowsFeed: with feed.stac in its config, serve runs the feed
// loop itself: the catalogue's scenes are queued and scored, and /metrics
// counts them.
func TestServeFollowsFeed(t *testing.T) {
	fixture := fixtureDir(t)
	root := t.TempDir()
	srv := httptest.NewServer(feedCatalogue(t, fixture, root))
	defer srv.Close()
	useFeedConfig(t, root, srv.URL+"/search", filepath.Join(root, "mosaics"))
	d := startDaemon(t, "--allow", fixture, "--allow", root)
	for id, e := range d.waitFinal(t, "naip-a", "naip-b") {
		if e.Event != "done" {
			t.Errorf("%s: %+v", id, e)
		}
	}
	resp, err := http.Get("http://" + d.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"methanemap_feed_scenes_queued_total 2", `methanemap_feed_not_paired_total{reason="s2_no_items_in_window"} 1`,
		`methanemap_feed_requests_total{status="200"}`, "methanemap_feed_request_seconds_count"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// useFeedConfig writes a config whose feed follows the catalogue at search
// (one pass an hour, two Items a page, no rate limit), mosaics in mosaics,
// and makes it the config of the commands the test runs.
func useFeedConfig(t *testing.T, root, search, mosaics string) {
	t.Helper()
	conf := filepath.Join(root, "methanemap.yaml")
	writeFile(t, conf, fmt.Sprintf(`feed:
  stac: [%q]
  datetime: 2023-01-01T00:00:00Z/2025-12-31T00:00:00Z
  limit: 2
  rate: 0
  interval: 1h
  mosaic_dir: %q
`, search, mosaics))
	t.Setenv("METHANEMAP_CONFIG", conf)
}
