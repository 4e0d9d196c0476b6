package methanemap

import (
	"errors"
	"strings"
	"testing"
)

const goodScene = `{
  "id": "nd-2019-09-04-m4709963",
  "acquired": "2019-09-04T17:20:00Z",
  "aoi": {"type": "Polygon", "coordinates": [[[-99.1, 47.0], [-99.0, 47.0], [-99.0, 47.1], [-99.1, 47.0]]]},
  "assets": {
    "naip": {"href": "/data/naip/m_4709963_se_14_1_20190904.tif"},
    "s2":   {"hrefs": {"b02": "s2/B02.tif", "B03": "s2/B03.tif", "scl": "s2/SCL.tif"}},
    "s1":   {"href": "/data/s1/vv_vh.tif", "bands": ["vv", "VH"]}
  },
  "future_field": 42
}`

func TestParseScene(t *testing.T) {
	sc, err := ParseScene([]byte(goodScene))
	if err != nil {
		t.Fatal(err)
	}
	if sc.ID != "nd-2019-09-04-m4709963" || sc.Acquired.Year() != 2019 || sc.AOI == nil {
		t.Fatalf("fields not read: %+v", sc)
	}
	if got := sc.Assets[Sentinel2].Hrefs["B02"]; got != "s2/B02.tif" {
		t.Errorf("s2 band keys not canonical: %v", sc.Assets[Sentinel2].Hrefs)
	}
	if got := sc.Assets[Sentinel2].Hrefs["SCL"]; got != "s2/SCL.tif" {
		t.Errorf("scl not mapped to SCL: %v", sc.Assets[Sentinel2].Hrefs)
	}
	if got := sc.Assets[Sentinel1].Bands; got[0] != "VV" || got[1] != "VH" {
		t.Errorf("s1 bands = %v", got)
	}
	if got := sc.Sensors(); len(got) != 3 || got[0] != NAIP {
		t.Errorf("sensors = %v", got)
	}
	// round trip
	data, err := sc.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseScene(data)
	if err != nil {
		t.Fatalf("re-parse of %s: %v", data, err)
	}
	if back.ID != sc.ID || !back.Acquired.Equal(sc.Acquired) || len(back.Assets) != 3 {
		t.Errorf("round trip changed the scene: %+v", back)
	}
}

func TestParseSceneErrors(t *testing.T) {
	tests := []struct {
		name   string
		given  string
		fields []string // every one must be named in the error
	}{
		{"not json", `{"id": `, []string{"(message)"}},
		{"empty", `{}`, []string{"id: required", "assets: at least one sensor"}},
		{"bad id", `{"id": "a b/c", "assets": {"naip": {"href": "x.tif"}}}`, []string{"id: must be"}},
		{"long id", `{"id": "` + strings.Repeat("a", 129) + `", "assets": {"naip": {"href": "x.tif"}}}`, []string{"id: must be"}},
		{"dot-dot id", `{"id": "..", "assets": {"naip": {"href": "x.tif"}}}`, []string{"id: must be"}},
		{"id with an empty subject token", `{"id": "a..b", "assets": {"naip": {"href": "x.tif"}}}`, []string{"id: must be"}},
		{"id ending with a dot", `{"id": "scene.", "assets": {"naip": {"href": "x.tif"}}}`, []string{"id: must be"}},
		{"bad time", `{"id": "a", "acquired": "yesterday", "assets": {"naip": {"href": "x.tif"}}}`, []string{"acquired"}},
		{"aoi point", `{"id": "a", "aoi": {"type": "Point", "coordinates": [1, 2]}, "assets": {"naip": {"href": "x.tif"}}}`, []string{"aoi: must be a Polygon"}},
		{"aoi lat/lon swapped", `{"id": "a", "aoi": {"type": "Polygon", "coordinates": [[[47, -99], [47.1, -99], [47.1, -98.9], [47, -99]]]}, "assets": {"naip": {"href": "x.tif"}}}`, []string{"aoi:", "not lon/lat"}},
		{"aoi open ring", `{"id": "a", "aoi": {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 2]]]}, "assets": {"naip": {"href": "x.tif"}}}`, []string{"not closed"}},
		{"unknown sensor", `{"id": "a", "assets": {"landsat": {"href": "x.tif"}}}`, []string{"assets.landsat: unknown sensor"}},
		{"both href and hrefs", `{"id": "a", "assets": {"naip": {"href": "x.tif", "hrefs": {"red": "r.tif"}}}}`, []string{"assets.naip: give either"}},
		{"neither", `{"id": "a", "assets": {"naip": {}}}`, []string{"assets.naip: href or hrefs"}},
		{"bad band", `{"id": "a", "assets": {"s2": {"hrefs": {"B13": "x.tif"}}}}`, []string{"assets.s2.hrefs.B13", "unknown s2 band"}},
		{"duplicate band", `{"id": "a", "assets": {"s1": {"href": "x.tif", "bands": ["VV", "vv"]}}}`, []string{"assets.s1.bands[1]", "twice"}},
		{"asset wrong type", `{"id": "a", "assets": {"naip": "x.tif"}}`, []string{"assets.naip"}},
		{"version", `{"version": 2, "id": "a", "assets": {"naip": {"href": "x.tif"}}}`, []string{"version: unsupported"}},
		{"several at once", `{"id": "", "acquired": "x", "assets": {"s2": {"hrefs": {"B99": "x"}}}}`, []string{"id: required", "acquired", "assets.s2.hrefs.B99"}},
		{"baseline not NN.NN", `{"id": "a", "assets": {"s2": {"hrefs": {"B04": "x"}, "processing_baseline": "4.0"}}}`, []string{"assets.s2.processing_baseline", "NN.NN"}},
		{"baseline not a string", `{"id": "a", "assets": {"s2": {"hrefs": {"B04": "x"}, "processing_baseline": 4}}}`, []string{"assets.s2"}},
		{"baseline on naip", `{"id": "a", "assets": {"naip": {"href": "x", "processing_baseline": "04.00"}}}`, []string{"assets.naip.processing_baseline", "only Sentinel-2"}},
		{"offset not whole", `{"id": "a", "assets": {"s2": {"hrefs": {"B04": "x"}, "boa_add_offset": -999.5}}}`, []string{"assets.s2.boa_add_offset", "whole number"}},
		{"offset too large", `{"id": "a", "assets": {"s2": {"hrefs": {"B04": "x"}, "boa_add_offset": -1e9}}}`, []string{"assets.s2.boa_add_offset"}},
		{"offset the wrong way", `{"id": "a", "assets": {"s2": {"hrefs": {"B04": "x"}, "boa_add_offset": 1000}}}`, []string{"assets.s2.boa_add_offset", "-10000 to 0"}},
		{"offset on s1", `{"id": "a", "assets": {"s1": {"href": "x", "boa_add_offset": 0}}}`, []string{"assets.s1.boa_add_offset", "only Sentinel-2"}},
		{"unknown units", `{"id": "a", "assets": {"s1": {"href": "x", "units": "dBm"}}}`, []string{"assets.s1.units", "db, power (linear), amplitude or dn"}},
		{"units on s2", `{"id": "a", "assets": {"s2": {"hrefs": {"B04": "x"}, "units": "db"}}}`, []string{"assets.s2.units", "only Sentinel-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseScene([]byte(tt.given))
			if err == nil {
				t.Fatal("want an error")
			}
			if !IsPermanent(err) || !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not a permanent ValidationError", err)
			}
			for _, f := range tt.fields {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not name %q", err, f)
				}
			}
		})
	}
}

// TestRadiometryFields reads how a scene's Sentinel-2 DNs and Sentinel-1
// values are scaled, and what is assumed when it does not say.
func TestRadiometryFields(t *testing.T) {
	tests := []struct {
		name   string
		s2, s1 string // extra fields of the s2 and s1 assets
		offset float64
		known  bool
		units  string
	}{
		{"nothing said", ``, ``, -1000, false, S1DB},
		{"old baseline", `, "processing_baseline": "02.14"`, ``, 0, true, S1DB},
		{"baseline 04.00", `, "processing_baseline": "04.00"`, `, "units": "db"`, -1000, true, S1DB},
		{"reprocessed", `, "processing_baseline": "05.10"`, `, "units": "Linear"`, -1000, true, S1Power},
		{"harmonised copy", `, "processing_baseline": "05.11", "boa_add_offset": 0`, `, "units": "amplitude"`, 0, true, S1Amplitude},
		{"offset alone", `, "boa_add_offset": -1000`, `, "units": "POWER"`, -1000, true, S1Power},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := `{"id": "a", "assets": {"s2": {"hrefs": {"B04": "x"}` + tt.s2 + `}, "s1": {"href": "y"` + tt.s1 + `}}}`
			sc, err := ParseScene([]byte(msg))
			if err != nil {
				t.Fatal(err)
			}
			if off, known := sc.Assets[Sentinel2].BOAOffset(); off != tt.offset || known != tt.known {
				t.Errorf("BOAOffset() = %v, %v; want %v, %v", off, known, tt.offset, tt.known)
			}
			if got := sc.Assets[Sentinel1].BackscatterUnits(); got != tt.units {
				t.Errorf("BackscatterUnits() = %q, want %q", got, tt.units)
			}
			// the fields survive the trip through the queue
			data, err := sc.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseScene(data)
			if err != nil {
				t.Fatal(err)
			}
			if off, known := back.Assets[Sentinel2].BOAOffset(); off != tt.offset || known != tt.known {
				t.Errorf("after a round trip through %s: BOAOffset() = %v, %v", data, off, known)
			}
			if got := back.Assets[Sentinel1].BackscatterUnits(); got != tt.units {
				t.Errorf("after a round trip: units %q", got)
			}
		})
	}
}

func TestChipID(t *testing.T) {
	tests := []struct {
		id   ChipID
		text string
		b    [4]float64
	}{
		{ChipID{EPSG: 32614, Footprint: 720, Col: 1234, Row: 5678}, "32614:720:1234:5678", [4]float64{888480, 4088160, 889200, 4088880}},
		{ChipID{EPSG: 32614, Footprint: 720, Stride: 360, Col: -3, Row: 7}, "32614:720/360:-3:7", [4]float64{-1080, 2520, -360, 3240}},
	}
	for _, tt := range tests {
		if got := tt.id.String(); got != tt.text {
			t.Errorf("String() = %q, want %q", got, tt.text)
		}
		if got := tt.id.Bounds(); got != tt.b {
			t.Errorf("Bounds() = %v, want %v", got, tt.b)
		}
		back, err := ParseChipID(tt.text)
		if err != nil {
			t.Fatal(err)
		}
		if back.String() != tt.text {
			t.Errorf("ParseChipID(%q) = %v", tt.text, back)
		}
	}
	for _, bad := range []string{"", "1:2:3", "x:720:1:1", "32614:0:1:1", "32614:720/0:1:1", "32614:720:a:1"} {
		if _, err := ParseChipID(bad); err == nil {
			t.Errorf("ParseChipID(%q) accepted", bad)
		}
	}
}

func FuzzParseScene(f *testing.F) {
	f.Add([]byte(goodScene))
	f.Add([]byte(`{"id":"a","assets":{"s2":{"hrefs":{"B04":"x"}}}}`))
	f.Add([]byte(`{"id":"a","aoi":{"type":"MultiPolygon","coordinates":[]},"assets":{}}`))
	f.Add([]byte(`{"id":"a","aoi":{"type":"FeatureCollection","features":[{"type":"Feature","geometry":null}]},"assets":{"naip":{"href":"x"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := ParseScene(data)
		if err != nil {
			if !IsPermanent(err) {
				t.Fatalf("error not permanent: %v", err)
			}
			return
		}
		// A scene that parsed must validate and survive a round trip.
		if err := sc.Validate(); err != nil {
			t.Fatalf("parsed scene does not validate: %v", err)
		}
		out, err := sc.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseScene(out); err != nil {
			t.Fatalf("round trip of %s: %v", out, err)
		}
	})
}
