package ingest

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/airbusgeo/godal"
	mm "github.com/methanemap/methanemap"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// Item is what a satellite feed needs to know of a STAC Item to pair it
// with others: its sensor, where and when, how cloudy, and its asset as a
// scene would hold it.
type Item struct {
	ID         string
	SceneID    string // the id a scene made of this Item gets (ParseSTACItem's)
	Collection string
	Sensor     mm.Sensor
	Footprint  orb.Geometry // WGS84
	Acquired   time.Time
	CloudCover float64 // eo:cloud_cover in percent; NaN when the Item has none
	Asset      mm.Asset
}

// ParseItem reads a STAC Item for pairing. Errors name the Item and field.
func ParseItem(data []byte) (Item, error) {
	sc, err := ParseSTACItem(data)
	if err != nil {
		return Item{}, err
	}
	var it struct {
		ID         string                     `json:"id"`
		Collection string                     `json:"collection"`
		Geometry   json.RawMessage            `json:"geometry"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	json.Unmarshal(data, &it)
	out := Item{ID: it.ID, SceneID: sc.ID, Collection: it.Collection, Acquired: sc.Acquired, CloudCover: math.NaN()}
	for s, a := range sc.Assets {
		out.Sensor, out.Asset = s, a
	}
	if len(it.Geometry) == 0 || string(it.Geometry) == "null" {
		return Item{}, mm.Permanentf("STAC Item %s: geometry: required to pair it with other sensors", it.ID)
	}
	g, err := geojson.UnmarshalGeometry(it.Geometry)
	if err != nil {
		return Item{}, mm.Permanentf("STAC Item %s: geometry: %v", it.ID, err)
	}
	switch g.Geometry().(type) {
	case orb.Polygon, orb.MultiPolygon:
	default:
		return Item{}, mm.Permanentf("STAC Item %s: geometry: want a Polygon or MultiPolygon, got %s", it.ID, g.Geometry().GeoJSONType())
	}
	out.Footprint = g.Geometry()
	if out.Acquired.IsZero() {
		return Item{}, mm.Permanentf("STAC Item %s: properties.datetime: required to pair it with other sensors", it.ID)
	}
	if raw, ok := it.Properties["eo:cloud_cover"]; ok && string(raw) != "null" {
		var c float64
		if json.Unmarshal(raw, &c) == nil {
			out.CloudCover = c
		}
	}
	return out, nil
}

// BuildMosaic writes a VRT at path that mosaics the rasters at hrefs (local
// paths or URLs, read as ingest reads them), later ones on top. The VRT
// is written to a temporary name and renamed into place. GDAL opens every
// href to write the VRT: with an allow list each must pass it and be a
// GeoTIFF, checked before GDAL reads it, and is named in the VRT so that
// only GDAL's GTiff driver opens it; the error is permanent and names the href.
func BuildMosaic(path string, hrefs []string, allow []string) error {
	register()
	srcs := make([]string, len(hrefs))
	for i, h := range hrefs {
		p, err := GDALPath(h)
		if err != nil {
			return err
		}
		srcs[i] = p
		if len(allow) > 0 {
			// a GeoTIFF, named so that only GDAL's GTiff driver opens it:
			// the workers read this VRT later, when the file may be another
			v, err := vetRaster(h, allow, false)
			if err == nil && v.driver != "GTiff" {
				for _, t := range v.temps {
					os.Remove(t)
				}
				err = mm.Permanentf("a mosaic's sources must be GeoTIFFs, this is a %s", v.driver)
			}
			if err != nil {
				return fmt.Errorf("ingest: mosaic %s: %s: %w", filepath.Base(path), describe(h), err)
			}
			srcs[i] = v.source
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp.vrt"
	var ec errCollector
	ds, err := godal.BuildVRT(tmp, srcs, nil, godal.ErrLogger(ec.handler()))
	if err != nil {
		os.Remove(tmp)
		return ec.wrap(fmt.Sprintf("ingest: mosaic %s", filepath.Base(path)), err)
	}
	if err := ds.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ingest: mosaic %s: %w", filepath.Base(path), err)
	}
	return os.Rename(tmp, path)
}
