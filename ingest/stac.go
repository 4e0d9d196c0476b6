package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	mm "github.com/methanemap/methanemap"
)

// stacItem is the part of a STAC Item methanemap reads.
type stacItem struct {
	StacVersion string                     `json:"stac_version"`
	Type        string                     `json:"type"`
	ID          string                     `json:"id"`
	Collection  string                     `json:"collection"`
	Properties  map[string]json.RawMessage `json:"properties"`
	Assets      map[string]stacAsset       `json:"assets"`
}

type stacAsset struct {
	Href    string   `json:"href"`
	Type    string   `json:"type"`
	Roles   []string `json:"roles"`
	EOBands []struct {
		Name       string `json:"name"`
		CommonName string `json:"common_name"`
	} `json:"eo:bands"`
}

// s2CommonNames maps Earth Search v1 asset keys to Sentinel-2 band ids.
var s2CommonNames = map[string]string{
	"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04",
	"rededge1": "B05", "rededge2": "B06", "rededge3": "B07", "nir": "B08",
	"nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11", "swir22": "B12", "scl": "SCL",
}

// ParseMessage reads a scene message, a STAC Item or a STAC ItemCollection
// and returns its scenes. For an ItemCollection, the scenes of the good
// Items are returned together with an error naming each bad one
// ("features[3] (id): …"), so callers can keep the rest.
func ParseMessage(data []byte) ([]*mm.Scene, error) {
	var probe struct {
		Type        string            `json:"type"`
		StacVersion string            `json:"stac_version"`
		Features    []json.RawMessage `json:"features"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, mm.Permanentf("not a JSON object: %v", err)
	}
	switch {
	case probe.Type == "FeatureCollection":
		if len(probe.Features) == 0 {
			return nil, mm.Permanentf("features: the ItemCollection holds no Items")
		}
		var scenes []*mm.Scene
		var errs []error
		for i, f := range probe.Features {
			sc, err := ParseSTACItem(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("features[%d]: %w", i, err))
				continue
			}
			scenes = append(scenes, sc)
		}
		return scenes, joinPermanent(errs)
	case probe.Type == "Feature" || probe.StacVersion != "":
		sc, err := ParseSTACItem(data)
		if err != nil {
			return nil, err
		}
		return []*mm.Scene{sc}, nil
	}
	sc, err := mm.ParseScene(data)
	if err != nil {
		return nil, err
	}
	return []*mm.Scene{sc}, nil
}

func joinPermanent(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return mm.Permanent(errors.Join(errs...))
}

var (
	unsafeIDChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)
	dotRuns       = regexp.MustCompile(`\.{2,}`)
)

// SceneIDOf maps a STAC Item id to a scene id (mm.ValidSceneID): an id
// that is one already stays as it is; another has its characters outside
// [A-Za-z0-9._-] and its runs of dots replaced by '_' and, so that distinct
// ids stay distinct (tile/1, tile:1 and "tile 1" all read tile_1), a
// suffix of 12 hex digits of the original's SHA-256.
func SceneIDOf(itemID string) string {
	if mm.ValidSceneID(itemID) {
		return itemID
	}
	id := unsafeIDChars.ReplaceAllString(itemID, "_")
	id = strings.Trim(dotRuns.ReplaceAllString(id, "_"), ".") // no empty NATS subject tokens, no ".."
	sum := sha256.Sum256([]byte(itemID))
	suffix := "-" + hex.EncodeToString(sum[:6])
	if len(id) > 128-len(suffix) {
		id = strings.TrimRight(id[:128-len(suffix)], ".")
	}
	if id == "" {
		id = "item"
	}
	return id + suffix
}

// ParseSTACItem maps a STAC Item to a scene: NAIP Items by their `image`
// asset, Sentinel-2 L2A by band-id keys (B02…B12, B8A, SCL) or common-name
// keys (blue…swir22, scl), Sentinel-1 RTC/GRD by their vv/vh/hh/hv assets.
// COG assets are preferred to their -jp2 twins. The scene id is the Item id
// as SceneIDOf makes it.
func ParseSTACItem(data []byte) (*mm.Scene, error) {
	var it stacItem
	if err := json.Unmarshal(data, &it); err != nil {
		return nil, mm.Permanentf("STAC Item: %v", err)
	}
	v := &mm.ValidationError{Source: "STAC Item " + it.ID}
	if it.Type != "Feature" {
		v.Problems = append(v.Problems, mm.FieldError{Field: "type", Msg: fmt.Sprintf("want \"Feature\", got %q", it.Type)})
	}
	if it.ID == "" {
		v.Problems = append(v.Problems, mm.FieldError{Field: "id", Msg: "required"})
	}
	if len(it.Assets) == 0 {
		v.Problems = append(v.Problems, mm.FieldError{Field: "assets", Msg: "the Item has no assets"})
	}
	if len(v.Problems) > 0 {
		return nil, mm.Permanent(v)
	}
	id := SceneIDOf(it.ID)
	sc := &mm.Scene{ID: id, Assets: map[mm.Sensor]mm.Asset{}}
	sc.Acquired = it.acquired()
	sn := it.sensor()
	var a mm.Asset
	var err error
	switch sn {
	case mm.NAIP:
		a, err = it.naipAsset()
	case mm.Sentinel2:
		a, err = it.s2Asset()
	case mm.Sentinel1:
		a, err = it.s1Asset()
	default:
		err = fmt.Errorf("collection %q: not imagery methanemap reads (NAIP, Sentinel-2 L2A, Sentinel-1)", it.Collection)
	}
	if err != nil {
		return nil, mm.Permanentf("STAC Item %s: %w", it.ID, err)
	}
	sc.Assets[sn] = a
	if err := sc.Validate(); err != nil {
		return nil, mm.Permanentf("STAC Item %s: %w", it.ID, err)
	}
	return sc, nil
}

func (it *stacItem) prop(key string) string {
	var s string
	if raw, ok := it.Properties[key]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	return s
}

func (it *stacItem) acquired() time.Time {
	for _, k := range []string{"datetime", "start_datetime"} {
		if t, err := time.Parse(time.RFC3339Nano, it.prop(k)); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// sensor decides what the Item is from its collection, constellation,
// platform and asset keys.
func (it *stacItem) sensor() mm.Sensor {
	hint := strings.ToLower(it.Collection + " " + it.prop("constellation") + " " + it.prop("platform"))
	hint = strings.ReplaceAll(hint, " ", "-")
	switch {
	case strings.Contains(hint, "naip"):
		return mm.NAIP
	case strings.Contains(hint, "landsat"):
		return ""
	case strings.Contains(hint, "sentinel-2") || strings.Contains(hint, "sentinel-s2"):
		return mm.Sentinel2
	case strings.Contains(hint, "sentinel-1") || strings.Contains(hint, "sentinel-s1"):
		return mm.Sentinel1
	}
	if _, ok := it.Assets["image"]; ok {
		return mm.NAIP
	}
	for _, k := range []string{"vv", "vh", "hh", "hv"} {
		if _, ok := it.Assets[k]; ok {
			return mm.Sentinel1
		}
	}
	return ""
}

func (it *stacItem) naipAsset() (mm.Asset, error) {
	img, ok := it.Assets["image"]
	if !ok || img.Href == "" {
		return mm.Asset{}, errors.New("assets.image: a NAIP Item needs its image asset")
	}
	a := mm.Asset{Href: img.Href}
	for _, b := range img.EOBands {
		name := b.CommonName
		if name == "" {
			name = b.Name
		}
		c, err := mm.NAIP.CanonicalBand(name)
		if err != nil {
			return mm.Asset{}, fmt.Errorf("assets.image.eo:bands: %w", err)
		}
		a.Bands = append(a.Bands, c)
	}
	return a, nil
}

func (it *stacItem) s2Asset() (mm.Asset, error) {
	a := mm.Asset{Hrefs: map[string]string{}}
	keys := make([]string, 0, len(it.Assets))
	for k := range it.Assets {
		keys = append(keys, k)
	}
	sort.Strings(keys) // "B04" before "B04-jp2": COGs win
	for _, k := range keys {
		ast := it.Assets[k]
		base, jp2 := strings.CutSuffix(k, "-jp2")
		band, ok := s2CommonNames[strings.ToLower(base)]
		if !ok {
			c, err := mm.Sentinel2.CanonicalBand(base)
			if err != nil {
				continue // aot, wvp, visual, metadata…
			}
			band = c
		}
		if _, have := a.Hrefs[band]; have && jp2 {
			continue
		}
		if ast.Href == "" {
			return mm.Asset{}, fmt.Errorf("assets.%s: empty href", k)
		}
		a.Hrefs[band] = ast.Href
	}
	if len(a.Hrefs) == 0 {
		return mm.Asset{}, errors.New("assets: no Sentinel-2 band assets (B02… or blue…)")
	}
	a.ProcessingBaseline = it.s2Baseline()
	// Earth Search removed the +1000 of baseline 04.00 from the COGs it
	// made (its raster:bands offset of -0.1 notwithstanding); false says
	// nothing more than the baseline does
	for _, k := range []string{"earthsearch:boa_offset_applied", "sentinel:boa_offset_applied"} {
		if applied, ok := it.propBool(k); ok && applied {
			zero := 0.0
			a.BOAAddOffset = &zero
		}
	}
	return a, nil
}

var (
	// the baseline in a product name (…_N0214_…) or a granule or
	// datatake id (…_N05.10)
	productBaseline = regexp.MustCompile(`_N([0-9]{2})\.?([0-9]{2})(?:_|$)`)
	itemBaseline    = regexp.MustCompile(`^[0-9]{2}\.[0-9]{2}$`)
)

// s2Baseline is the Item's processing baseline ("NN.NN"): from
// s2:processing_baseline (Planetary Computer, Earth Search v1) or
// sentinel:processing_baseline (Earth Search v0), else from the product or
// granule name it gives; "" when nothing says.
func (it *stacItem) s2Baseline() string {
	for _, k := range []string{"s2:processing_baseline", "sentinel:processing_baseline"} {
		if b := it.prop(k); itemBaseline.MatchString(b) {
			return b
		}
	}
	for _, k := range []string{"s2:product_uri", "sentinel:product_id", "s2:granule_id", "s2:datatake_id", "s2:tile_id"} {
		if m := productBaseline.FindStringSubmatch(it.prop(k)); m != nil {
			return m[1] + "." + m[2]
		}
	}
	return ""
}

func (it *stacItem) propBool(key string) (v, ok bool) {
	raw, have := it.Properties[key]
	if !have {
		return false, false
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return false, false
	}
	return v, true
}

func (it *stacItem) s1Asset() (mm.Asset, error) {
	a := mm.Asset{Hrefs: map[string]string{}}
	for _, k := range []string{"vv", "vh", "hh", "hv"} {
		if ast, ok := it.Assets[k]; ok && ast.Href != "" {
			a.Hrefs[strings.ToUpper(k)] = ast.Href
		}
	}
	if len(a.Hrefs) == 0 {
		return mm.Asset{}, errors.New("assets: no Sentinel-1 polarisation assets (vv, vh, hh, hv)")
	}
	// radiometrically terrain-corrected products (Planetary Computer's
	// sentinel-1-rtc) hold gamma0 as linear power; GRD collections
	// (Earth Search's and Planetary Computer's sentinel-1-grd) ESA's
	// uncalibrated digital numbers in radar geometry
	switch c := strings.ToLower(it.Collection); {
	case strings.Contains(c, "rtc"):
		a.Units = mm.S1Power
	case strings.Contains(c, "grd"):
		a.Units = mm.S1DN
	}
	return a, nil
}
