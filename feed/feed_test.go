package feed

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/paulmach/orb"
)

func box(x0, y0, x1, y1 float64) orb.Polygon {
	return orb.Polygon{{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}, {x0, y0}}}
}

func item(id string, s mm.Sensor, g orb.Geometry, when string, cloud float64) ingest.Item {
	t, _ := time.Parse(time.RFC3339, when)
	return ingest.Item{ID: id, SceneID: id, Sensor: s, Footprint: g, Acquired: t, CloudCover: cloud}
}

func TestChoose(t *testing.T) {
	naip := item("naip", mm.NAIP, box(0, 0, 1, 1), "2023-07-15T00:00:00Z", math.NaN())
	p := Pairing{Window: 10 * 24 * time.Hour, S1Window: 5 * 24 * time.Hour, MaxCloud: 50}
	ids := func(its []ingest.Item) []string {
		var out []string
		for _, it := range its {
			out = append(out, it.ID)
		}
		return out
	}
	for _, c := range []struct {
		name   string
		sensor mm.Sensor
		cands  []ingest.Item
		want   []string // best last
		reason string
	}{
		{"least cloud wins", mm.Sentinel2, []ingest.Item{
			item("cloudy", mm.Sentinel2, box(-1, -1, 2, 2), "2023-07-15T00:00:00Z", 40),
			item("clear", mm.Sentinel2, box(-1, -1, 2, 2), "2023-07-20T00:00:00Z", 1),
		}, []string{"clear"}, ""},
		{"too cloudy is left out", mm.Sentinel2, []ingest.Item{
			item("overcast", mm.Sentinel2, box(-1, -1, 2, 2), "2023-07-15T00:00:00Z", 90),
		}, nil, ReasonNoCandidates},
		{"outside the window", mm.Sentinel2, []ingest.Item{
			item("old", mm.Sentinel2, box(-1, -1, 2, 2), "2023-06-01T00:00:00Z", 0),
		}, nil, ReasonNoCandidates},
		{"two halves make a mosaic, best on top", mm.Sentinel2, []ingest.Item{
			item("west", mm.Sentinel2, box(-1, -1, 0.55, 2), "2023-07-15T00:00:00Z", 5),
			item("east", mm.Sentinel2, box(0.45, -1, 2, 2), "2023-07-15T00:00:00Z", 2),
			item("corner", mm.Sentinel2, box(0.9, 0.9, 2, 2), "2023-07-15T00:00:00Z", 0),
		}, []string{"west", "east", "corner"}, ""},
		{"a gap stays a gap", mm.Sentinel2, []ingest.Item{
			item("west", mm.Sentinel2, box(-1, -1, 0.3, 2), "2023-07-15T00:00:00Z", 5),
			item("east", mm.Sentinel2, box(0.7, -1, 2, 2), "2023-07-15T00:00:00Z", 2),
		}, nil, ReasonNotCovered},
		{"sentinel-1: nearest in time", mm.Sentinel1, []ingest.Item{
			item("s1-4d", mm.Sentinel1, box(-1, -1, 2, 2), "2023-07-19T00:00:00Z", math.NaN()),
			item("s1-1d", mm.Sentinel1, box(-1, -1, 2, 2), "2023-07-14T00:00:00Z", math.NaN()),
			item("s1-6d", mm.Sentinel1, box(-1, -1, 2, 2), "2023-07-21T00:00:00Z", math.NaN()),
		}, []string{"s1-1d"}, ""},
	} {
		got, why := choose(naip, c.cands, c.sensor, p)
		if why != c.reason || len(got) != len(c.want) {
			t.Errorf("%s: %v %q, want %v %q", c.name, ids(got), why, c.want, c.reason)
			continue
		}
		for i := range got {
			if got[i].ID != c.want[i] {
				t.Errorf("%s: %v, want %v", c.name, ids(got), c.want)
				break
			}
		}
	}
}

func TestRetryAfterAndMerge(t *testing.T) {
	if d, ok := retryAfter("3"); !ok || d != 3*time.Second {
		t.Errorf("Retry-After 3: %v %v", d, ok)
	}
	future := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	if d, ok := retryAfter(future); !ok || d < 80*time.Second || d > 91*time.Second {
		t.Errorf("Retry-After %s: %v %v", future, d, ok)
	}
	if _, ok := retryAfter("soon"); ok {
		t.Error("Retry-After soon: accepted")
	}
	got := string(mergeBody([]byte(`{"collections":["naip"],"limit":2}`), []byte(`{"token":"abc"}`), true))
	if got != `{"collections":["naip"],"limit":2,"token":"abc"}` {
		t.Errorf("merged body %s", got)
	}
	if got := string(mergeBody([]byte(`{"limit":2}`), []byte(`{"token":"x"}`), false)); got != `{"token":"x"}` {
		t.Errorf("replaced body %s", got)
	}
	if got := widen("2023-07-10T00:00:00Z/..", 24*time.Hour); got != "2023-07-09T00:00:00Z/.." {
		t.Errorf("widen: %s", got)
	}
}

// s2Item is a minimal Sentinel-2 L2A STAC Item.
func s2Item(id string, x0 float64) map[string]any {
	return map[string]any{"stac_version": "1.0.0", "type": "Feature", "id": id, "collection": "sentinel-2-l2a",
		"geometry":   map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{{x0, 0}, {x0 + 1, 0}, {x0 + 1, 1}, {x0, 1}, {x0, 0}}}},
		"properties": map[string]any{"datetime": "2023-07-15T10:00:00Z", "eo:cloud_cover": 5},
		"assets":     map[string]any{"red": map[string]any{"href": "https://data.example/" + id + "/B04.tif"}, "scl": map[string]any{"href": "https://data.example/" + id + "/SCL.tif"}}}
}

// TestOneSensorAndSigning: for a model that needs Sentinel-2 only, each
// Item is a scene; a bad Item is counted and skipped; the href query is
// appended to every asset URL; an AOI keeps only the Items it touches.
func TestOneSensorAndSigning(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad := map[string]any{"stac_version": "1.0.0", "type": "Feature", "id": "no-geometry", "collection": "sentinel-2-l2a",
			"properties": map[string]any{"datetime": "2023-07-15T10:00:00Z"}, "assets": map[string]any{"red": map[string]any{"href": "https://x/B04.tif"}}}
		json.NewEncoder(w).Encode(map[string]any{"type": "FeatureCollection", "features": []any{s2Item("a", 0), bad, s2Item("b", 10)}})
	}))
	defer srv.Close()
	cfg := Config{Endpoints: []Endpoint{{URL: srv.URL}}, Collections: map[mm.Sensor][]string{mm.Sentinel2: {"sentinel-2-l2a"}},
		Sensors: []mm.Sensor{mm.Sentinel2}, HrefQuery: "sv=2021&sig=abc"}
	var scenes []*mm.Scene
	f := New(cfg, &Client{}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	st, err := f.Pass(context.Background(), func(sc *mm.Scene) { scenes = append(scenes, sc) })
	if err != nil || st.Items != 3 || st.Bad != 1 || len(scenes) != 2 {
		t.Fatalf("pass: %+v, %d scenes, %v", st, len(scenes), err)
	}
	if h := scenes[0].Assets[mm.Sentinel2].Hrefs["B04"]; h != "https://data.example/a/B04.tif?sv=2021&sig=abc" {
		t.Errorf("signed href %s", h)
	}
	cfg.AOI = box(10.2, 0.2, 10.4, 0.4)
	scenes = nil
	f = New(cfg, &Client{}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := f.Pass(context.Background(), func(sc *mm.Scene) { scenes = append(scenes, sc) }); err != nil || len(scenes) != 1 || scenes[0].ID != "b" || scenes[0].AOI == nil {
		t.Errorf("with an AOI over b: %d scenes, %v", len(scenes), err)
	}
}

// TestSceneKeepsRadiometry: a scene made of Items keeps what they say of
// their values' scale, and Items on different scales make no mosaic.
func TestSceneKeepsRadiometry(t *testing.T) {
	f := New(Config{MosaicDir: t.TempDir()}, &Client{}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	naip := item("naip", mm.NAIP, box(0, 0, 1, 1), "2023-07-15T00:00:00Z", math.NaN())
	naip.Asset = mm.Asset{Href: "https://x/naip.tif"}
	s2 := func(id, baseline string, applied bool) ingest.Item {
		it := item(id, mm.Sentinel2, box(-1, -1, 2, 2), "2023-07-15T00:00:00Z", 1)
		it.Asset = mm.Asset{Hrefs: map[string]string{"B04": "https://x/" + id + "/B04.tif"}, ProcessingBaseline: baseline}
		if applied {
			zero := 0.0
			it.Asset.BOAAddOffset = &zero
		}
		return it
	}
	s1 := item("s1", mm.Sentinel1, box(-1, -1, 2, 2), "2023-07-15T00:00:00Z", math.NaN())
	s1.Asset = mm.Asset{Hrefs: map[string]string{"VV": "https://x/vv.tif"}, Units: mm.S1Power}

	sc, _, why := f.scene(naip, map[mm.Sensor][]ingest.Item{mm.NAIP: {naip}, mm.Sentinel2: {s2("old", "02.14", false)}, mm.Sentinel1: {s1}})
	if why != "" {
		t.Fatal(why)
	}
	if a := sc.Assets[mm.Sentinel2]; a.ProcessingBaseline != "02.14" {
		t.Errorf("one Item's scene lost its baseline: %+v", a)
	}
	if u := sc.Assets[mm.Sentinel1].BackscatterUnits(); u != mm.S1Power {
		t.Errorf("one Item's scene lost its units: %q", u)
	}

	// two baselines with the +1000: one mosaic, the offset said outright
	sc, ms, why := f.scene(naip, map[mm.Sensor][]ingest.Item{mm.Sentinel2: {s2("a", "05.10", false), s2("b", "05.11", false)}})
	if why != "" || len(ms) != 1 {
		t.Fatalf("%q, %d mosaics", why, len(ms))
	}
	if off, known := sc.Assets[mm.Sentinel2].BOAOffset(); off != -1000 || !known {
		t.Errorf("mosaic of 05.10 and 05.11: BOA offset %v, %v", off, known)
	}
	// Earth Search's harmonised COGs with ESA's DNs: not one scale
	for _, pair := range [][2]ingest.Item{
		{s2("a", "05.10", false), s2("b", "02.14", false)},
		{s2("a", "05.11", true), s2("b", "05.11", false)},
		{s2("a", "", false), s2("b", "02.14", false)}, // unsaid: taken as 04.00's
	} {
		if _, _, why := f.scene(naip, map[mm.Sensor][]ingest.Item{mm.Sentinel2: pair[:]}); why != "s2_radiometry_differs" {
			t.Errorf("mosaic of %+v and %+v: %q", pair[0].Asset, pair[1].Asset, why)
		}
	}
	// one unsaid beside a 05.10: one scale, and the scene says nothing
	// (the warning is due)
	sc, _, why = f.scene(naip, map[mm.Sensor][]ingest.Item{mm.Sentinel2: {s2("a", "", false), s2("b", "05.10", false)}})
	if off, known := sc.Assets[mm.Sentinel2].BOAOffset(); why != "" || off != -1000 || known {
		t.Errorf("mosaic of an unsaid Item and a 05.10 one: %q, offset %v, known %v", why, off, known)
	}
	// GRD numbers make no scene
	grd := s1
	grd.Asset.Units = mm.S1DN
	if _, _, why := f.scene(naip, map[mm.Sensor][]ingest.Item{mm.Sentinel1: {grd}}); why != "s1_uncalibrated" {
		t.Errorf("a GRD Item: %q", why)
	}
	// both harmonised: the mosaic says offset 0
	sc, _, why = f.scene(naip, map[mm.Sensor][]ingest.Item{mm.Sentinel2: {s2("a", "05.11", true), s2("b", "05.09", true)}})
	if off, known := sc.Assets[mm.Sentinel2].BOAOffset(); why != "" || off != 0 || !known {
		t.Errorf("mosaic of harmonised Items: %q, offset %v, %v", why, off, known)
	}
}
