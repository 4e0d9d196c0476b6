package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/tiles"
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

// openGrid opens the rasters a model card needs (and Sentinel-2 for its
// SCL cloud mask) and lays the chip grid, limited to the scene's AOI and
// the user's (aoi, may be nil). The caller closes the source.
func openGrid(ctx context.Context, sc *mm.Scene, card *model.Card, stride int, aoi orb.Geometry) (*ingest.Source, *tiles.Grid, error) {
	src, err := ingest.Open(ctx, sc, ingest.Options{Sensors: withSCL(sc, card.Chip.Sensors())})
	if err != nil {
		return nil, nil, err
	}
	var aois []orb.Geometry
	for _, a := range []orb.Geometry{sc.AOI, aoi} {
		if a != nil {
			aois = append(aois, a)
		}
	}
	grid, err := tiles.NewGrid(src, tiles.GridOptions{FootprintM: card.Chip.FootprintM, StrideM: stride, AOIs: aois})
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	return src, grid, nil
}
