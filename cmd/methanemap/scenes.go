package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/paulmach/orb"
)

// loadScenes reads scene messages, STAC Items or ItemCollections from a
// file, or from every .json file of a directory. Relative hrefs are resolved
// against the file's directory.
func loadScenes(path string) ([]*mm.Scene, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, mm.Permanentf("--scene: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, mm.Permanentf("--scene: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, mm.Permanentf("--scene: %s holds no .json scene files", path)
		}
	}
	var out []*mm.Scene
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, mm.Permanentf("--scene: %w", err)
		}
		scenes, err := ingest.ParseMessage(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		abs, err := filepath.Abs(filepath.Dir(f))
		if err != nil {
			return nil, err
		}
		for _, sc := range scenes {
			ingest.ResolveHrefs(sc, abs)
		}
		out = append(out, scenes...)
	}
	return out, nil
}

// loadAOI reads a GeoJSON Polygon or MultiPolygon (geometry, Feature or
// FeatureCollection) in WGS84.
func loadAOI(path string) (orb.Geometry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, mm.Permanentf("--aoi: %w", err)
	}
	g, err := mm.ParseAOI(data)
	if err != nil {
		return nil, mm.Permanentf("--aoi %s: %w", path, err)
	}
	return g, nil
}
