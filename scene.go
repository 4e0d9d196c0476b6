package methanemap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// SceneVersion is the version of the scene message this package reads and writes.
const SceneVersion = 1

// Scene is one acquisition over one place: the rasters of one or more
// sensors that a worker scores together.
type Scene struct {
	// ID identifies the scene: 1–128 of [A-Za-z0-9._-]. It is the NATS
	// message id, so queueing the same scene twice is deduplicated.
	ID string
	// Acquired is when the imagery was taken (zero when unknown).
	Acquired time.Time
	// AOI, when not nil, is a WGS84 Polygon or MultiPolygon: chips that do
	// not touch it are skipped.
	AOI orb.Geometry
	// Assets holds the rasters of each sensor.
	Assets map[Sensor]Asset
}

// Asset is the raster data of one sensor: either one multi-band file (Href,
// with optional Bands naming its bands in order) or one file per band (Hrefs,
// band name to href).
type Asset struct {
	Href  string            `json:"href,omitempty"`
	Bands []string          `json:"bands,omitempty"`
	Hrefs map[string]string `json:"hrefs,omitempty"`

	// ProcessingBaseline (Sentinel-2 only) is the L2A product's processing
	// baseline, "NN.NN" ("02.14", "05.10"). From baseline 04.00 (products
	// made from 2022-01-25, and the reprocessed archive) ESA adds 1000 to
	// the reflectance DNs; older products do not.
	ProcessingBaseline string `json:"processing_baseline,omitempty"`
	// BOAAddOffset (Sentinel-2 only) is what must be added to the asset's
	// reflectance DNs to get reflectance x 10,000 (ESA's BOA_ADD_OFFSET):
	// -1000 for products of baseline 04.00 or later as ESA distributes
	// them, 0 for older products and for copies that removed the offset
	// already (Earth Search's boa_offset_applied). It wins over
	// ProcessingBaseline. See BOAOffset.
	BOAAddOffset *float64 `json:"boa_add_offset,omitempty"`
	// Units (Sentinel-1 only) is the scale of the backscatter values:
	// S1DB (the default), S1Power (linear power, as RTC products such as
	// Planetary Computer's sentinel-1-rtc give gamma0), S1Amplitude (the
	// square root of power), or S1DN (uncalibrated GRD digital numbers,
	// which ingest refuses to read).
	Units string `json:"units,omitempty"`
}

// Sentinel-1 backscatter scales (Asset.Units).
const (
	S1DB        = "db"        // 10 log10(power)
	S1Power     = "power"     // linear power ("linear" is read as this)
	S1Amplitude = "amplitude" // sqrt(power)
	// S1DN is uncalibrated digital numbers, as ESA's GRD products hold
	// them (in radar geometry): no backscatter a model can read.
	S1DN = "dn"
)

// BaselineOffsetFrom is the first Sentinel-2 processing baseline whose L2A
// DNs carry the +1000 offset, and BOAOffset04 the BOA_ADD_OFFSET that
// takes it away.
const (
	BaselineOffsetFrom = "04.00"
	BOAOffset04        = -1000
)

// BOAOffset returns what must be added to the asset's Sentinel-2 L2A
// reflectance DNs to get reflectance x 10,000: BOAAddOffset when given,
// else -1000 from baseline 04.00 on and 0 before it. known is false when
// the asset says neither: the offset is then assumed to be -1000, which
// every product ESA makes today carries (model cards' Sentinel-2 offsets
// are written for such DNs).
func (a Asset) BOAOffset() (offset float64, known bool) {
	switch {
	case a.BOAAddOffset != nil:
		return *a.BOAAddOffset, true
	case a.ProcessingBaseline != "":
		if a.ProcessingBaseline < BaselineOffsetFrom { // "NN.NN" compares as text
			return 0, true
		}
		return BOAOffset04, true
	}
	return BOAOffset04, false
}

// BackscatterUnits returns the asset's Sentinel-1 scale, S1DB when not given.
func (a Asset) BackscatterUnits() string {
	if a.Units == "" {
		return S1DB
	}
	return a.Units
}

// BandNames returns the asset's band names: Bands for a multi-band file
// (possibly empty: the file decides), the sorted keys of Hrefs otherwise.
func (a Asset) BandNames() []string {
	if a.Href != "" {
		return slices.Clone(a.Bands)
	}
	names := make([]string, 0, len(a.Hrefs))
	for b := range a.Hrefs {
		names = append(names, b)
	}
	sort.Strings(names)
	return names
}

// Sensors returns the scene's sensors in the canonical order.
func (s *Scene) Sensors() []Sensor {
	var out []Sensor
	for _, sn := range Sensors {
		if _, ok := s.Assets[sn]; ok {
			out = append(out, sn)
		}
	}
	return out
}

var (
	sceneIDPattern  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
	baselinePattern = regexp.MustCompile(`^[0-9]{2}\.[0-9]{2}$`)
)

// ValidSceneID reports whether id can name a scene, a NATS subject token
// sequence and a file: 1–128 of [A-Za-z0-9._-], not starting or ending
// with '.', no "..".
func ValidSceneID(id string) bool {
	return sceneIDPattern.MatchString(id) && !strings.HasPrefix(id, ".") && !strings.HasSuffix(id, ".") && !strings.Contains(id, "..")
}

type sceneJSON struct {
	Version  *int                       `json:"version,omitempty"`
	ID       string                     `json:"id"`
	Acquired string                     `json:"acquired,omitempty"`
	AOI      json.RawMessage            `json:"aoi,omitempty"`
	Assets   map[string]json.RawMessage `json:"assets"`
}

// ParseScene decodes and validates a scene message. Every problem found is
// reported in one *ValidationError (marked permanent) whose fields name the
// offending JSON field. Unknown top-level fields are ignored.
func ParseScene(data []byte) (*Scene, error) {
	var raw sceneJSON
	v := &ValidationError{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		v.add(jsonErrorField(err), "%v", err)
		return nil, v.err()
	}
	if dec.More() {
		v.add("(message)", "trailing data after the JSON object")
	}
	sc := &Scene{ID: raw.ID, Assets: map[Sensor]Asset{}}
	if raw.Version != nil && *raw.Version != SceneVersion {
		v.add("version", "unsupported version %d (this build reads %d)", *raw.Version, SceneVersion)
	}
	if raw.ID == "" {
		v.add("id", "required")
	} else if !ValidSceneID(raw.ID) {
		v.add("id", "must be 1–128 characters of A-Z a-z 0-9 . _ -, not starting or ending with '.' nor holding '..', got %q", truncate(raw.ID, 40))
	}
	if raw.Acquired != "" {
		t, err := time.Parse(time.RFC3339Nano, raw.Acquired)
		if err != nil {
			v.add("acquired", "not an RFC 3339 time: %q", truncate(raw.Acquired, 40))
		}
		sc.Acquired = t.UTC()
	}
	if len(raw.AOI) > 0 && string(raw.AOI) != "null" {
		g, err := ParseAOI(raw.AOI)
		if err != nil {
			v.add("aoi", "%v", err)
		}
		sc.AOI = g
	}
	if len(raw.Assets) == 0 {
		v.add("assets", "at least one sensor is required (naip, s2, s1)")
	}
	keys := make([]string, 0, len(raw.Assets))
	for k := range raw.Assets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sn := Sensor(k)
		field := "assets." + k
		if !KnownSensor(sn) {
			v.add(field, "unknown sensor (want naip, s2 or s1)")
			continue
		}
		var a Asset
		if err := json.Unmarshal(raw.Assets[k], &a); err != nil {
			v.add(field, "%v", err)
			continue
		}
		sc.Assets[sn] = a
	}
	validateAssets(sc, v)
	if err := v.err(); err != nil {
		return nil, err
	}
	return sc, nil
}

// Validate checks a scene built in code (for example from a STAC Item) with
// the same rules as ParseScene.
func (s *Scene) Validate() error {
	v := &ValidationError{}
	if !ValidSceneID(s.ID) {
		v.add("id", "must be 1–128 characters of A-Z a-z 0-9 . _ -, not starting or ending with '.' nor holding '..', got %q", truncate(s.ID, 40))
	}
	if len(s.Assets) == 0 {
		v.add("assets", "at least one sensor is required (naip, s2, s1)")
	}
	if s.AOI != nil {
		if err := checkAOI(s.AOI); err != nil {
			v.add("aoi", "%v", err)
		}
	}
	validateAssets(s, v)
	return v.err()
}

// validateAssets checks each asset's shape and band names and rewrites band
// names to their canonical spelling.
func validateAssets(s *Scene, v *ValidationError) {
	for _, sn := range Sensors {
		a, ok := s.Assets[sn]
		if !ok {
			continue
		}
		field := "assets." + string(sn)
		switch {
		case a.Href != "" && len(a.Hrefs) > 0:
			v.add(field, "give either href (one multi-band file) or hrefs (one file per band), not both")
		case a.Href == "" && len(a.Hrefs) == 0:
			v.add(field, "href or hrefs is required")
		case a.Href != "":
			seen := map[string]bool{}
			for i, b := range a.Bands {
				c, err := sn.CanonicalBand(b)
				if err != nil {
					v.add(fmt.Sprintf("%s.bands[%d]", field, i), "%v", err)
					continue
				}
				if seen[c] {
					v.add(fmt.Sprintf("%s.bands[%d]", field, i), "band %s listed twice", c)
				}
				seen[c] = true
				a.Bands[i] = c
			}
		default:
			if len(a.Bands) > 0 {
				v.add(field+".bands", "bands goes with href; with hrefs the keys name the bands")
			}
			canon := make(map[string]string, len(a.Hrefs))
			for _, b := range a.BandNames() {
				c, err := sn.CanonicalBand(b)
				if err != nil {
					v.add(field+".hrefs."+b, "%v", err)
					continue
				}
				if _, dup := canon[c]; dup {
					v.add(field+".hrefs."+b, "band %s given twice", c)
				}
				if a.Hrefs[b] == "" {
					v.add(field+".hrefs."+b, "empty href")
				}
				canon[c] = a.Hrefs[b]
			}
			a.Hrefs = canon
		}
		validateRadiometry(sn, &a, field, v)
		s.Assets[sn] = a
	}
}

// validateRadiometry checks the fields that say how an asset's values are
// scaled, and spells Units canonically.
func validateRadiometry(sn Sensor, a *Asset, field string, v *ValidationError) {
	if a.ProcessingBaseline != "" {
		if sn != Sentinel2 {
			v.add(field+".processing_baseline", "only Sentinel-2 (s2) assets have a processing baseline")
		} else if !baselinePattern.MatchString(a.ProcessingBaseline) {
			v.add(field+".processing_baseline", "want NN.NN such as \"05.10\", got %q", truncate(a.ProcessingBaseline, 20))
		}
	}
	if a.BOAAddOffset != nil {
		o := *a.BOAAddOffset
		switch {
		case sn != Sentinel2:
			v.add(field+".boa_add_offset", "only Sentinel-2 (s2) assets have a BOA offset")
		case math.IsNaN(o) || o > 0 || o < -10000 || o != math.Trunc(o):
			v.add(field+".boa_add_offset", "want what is added to the DNs, a whole number from -10000 to 0 (-1000 from baseline 04.00, else 0), got %v", o)
		}
	}
	if a.Units != "" {
		u := strings.ToLower(a.Units)
		if u == "linear" {
			u = S1Power
		}
		switch {
		case sn != Sentinel1:
			v.add(field+".units", "only Sentinel-1 (s1) assets say their units")
		case u != S1DB && u != S1Power && u != S1Amplitude && u != S1DN:
			v.add(field+".units", "want db, power (linear), amplitude or dn, got %q", truncate(a.Units, 20))
		default:
			a.Units = u
		}
	}
}

// MarshalJSON writes the scene as a version-1 scene message.
func (s Scene) MarshalJSON() ([]byte, error) {
	out := struct {
		Version  int               `json:"version"`
		ID       string            `json:"id"`
		Acquired string            `json:"acquired,omitempty"`
		AOI      *geojson.Geometry `json:"aoi,omitempty"`
		Assets   map[Sensor]Asset  `json:"assets"`
	}{Version: SceneVersion, ID: s.ID, Assets: s.Assets}
	if !s.Acquired.IsZero() {
		out.Acquired = s.Acquired.UTC().Format(time.RFC3339Nano)
	}
	if s.AOI != nil {
		out.AOI = geojson.NewGeometry(s.AOI)
	}
	return json.Marshal(out)
}

// UnmarshalJSON is ParseScene.
func (s *Scene) UnmarshalJSON(data []byte) error {
	sc, err := ParseScene(data)
	if err != nil {
		return err
	}
	*s = *sc
	return nil
}

// ParseAOI reads a GeoJSON Polygon or MultiPolygon (a bare geometry, a
// Feature or a FeatureCollection of them) in WGS84 lon/lat and checks it.
func ParseAOI(data []byte) (orb.Geometry, error) {
	var probe struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("not GeoJSON: %w", err)
	}
	var g orb.Geometry
	switch probe.Type {
	case "Feature":
		f, err := geojson.UnmarshalFeature(data)
		if err != nil {
			return nil, fmt.Errorf("bad Feature: %w", err)
		}
		g = f.Geometry
	case "FeatureCollection":
		fc, err := geojson.UnmarshalFeatureCollection(data)
		if err != nil {
			return nil, fmt.Errorf("bad FeatureCollection: %w", err)
		}
		var mp orb.MultiPolygon
		for i, f := range fc.Features {
			switch fg := f.Geometry.(type) {
			case orb.Polygon:
				mp = append(mp, fg)
			case orb.MultiPolygon:
				mp = append(mp, fg...)
			default:
				return nil, fmt.Errorf("features[%d]: geometry must be Polygon or MultiPolygon, got %s", i, geomType(f.Geometry))
			}
		}
		g = mp
	default:
		gg, err := geojson.UnmarshalGeometry(data)
		if err != nil {
			return nil, fmt.Errorf("bad geometry: %w", err)
		}
		g = gg.Geometry()
	}
	if err := checkAOI(g); err != nil {
		return nil, err
	}
	return g, nil
}

func geomType(g orb.Geometry) string {
	if g == nil {
		return "null"
	}
	return g.GeoJSONType()
}

// checkAOI accepts Polygons and MultiPolygons whose rings are closed, have at
// least four positions and lie in lon [-180,180], lat [-90,90].
func checkAOI(g orb.Geometry) error {
	var polys []orb.Polygon
	switch t := g.(type) {
	case orb.Polygon:
		polys = []orb.Polygon{t}
	case orb.MultiPolygon:
		polys = t
	default:
		return fmt.Errorf("must be a Polygon or MultiPolygon, got %s", geomType(g))
	}
	if len(polys) == 0 {
		return fmt.Errorf("empty MultiPolygon")
	}
	for pi, p := range polys {
		if len(p) == 0 {
			return fmt.Errorf("polygon %d has no rings", pi)
		}
		for ri, r := range p {
			if len(r) < 4 {
				return fmt.Errorf("polygon %d ring %d has %d positions, need at least 4", pi, ri, len(r))
			}
			if r[0] != r[len(r)-1] {
				return fmt.Errorf("polygon %d ring %d is not closed", pi, ri)
			}
			for _, pt := range r {
				if math.IsNaN(pt[0]) || math.IsNaN(pt[1]) || pt[0] < -180 || pt[0] > 180 || pt[1] < -90 || pt[1] > 90 {
					return fmt.Errorf("polygon %d ring %d: position %v is not lon/lat (lon in [-180,180], lat in [-90,90])", pi, ri, pt)
				}
			}
		}
	}
	return nil
}

// jsonErrorField names the field a decoding error is about, when it can.
func jsonErrorField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field
	}
	return "(message)"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
