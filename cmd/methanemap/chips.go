package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/models"
	"github.com/methanemap/methanemap/pipeline"
	"github.com/methanemap/methanemap/tiles"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

func runChips(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chips", flag.ContinueOnError)
	sceneFile := fs.String("scene", "", "scene message, STAC Item or ItemCollection file, or a directory of them (required)")
	aoiFile := fs.String("aoi", "", "GeoJSON Polygon or MultiPolygon limiting the chips")
	modelDir := fs.String("model", cfg.Model.Dir, "model directory whose card says how chips are cut (default: the built-in demo model)")
	out := fs.String("out", "", "directory to write chips into (required)")
	limit := fs.Int("limit", 0, "stop after N chips per scene (0: all)")
	stride := fs.Int("stride", cfg.Tiles.StrideM, "scan stride in metres (0: the model card's)")
	minValid := fs.Float64("min-valid", cfg.Tiles.MinValid, "skip chips with a smaller share of valid pixels")
	maxCloud := fs.Float64("max-cloud", cfg.Tiles.MaxCloud, "skip chips with a larger share of cloud")
	anyRes := fs.Bool("allow-resolution", false, "accept rasters whose pixel size is implausible for their sensor")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := ingest.Confine(nil); err != nil { // a local user's files: GDAL's HTTP goes out as it is
		return err
	}
	if *sceneFile == "" || *out == "" {
		return usagef("chips: --scene and --out are required")
	}
	scenes, err := loadScenes(*sceneFile)
	if err != nil {
		return err
	}
	card, err := loadCard(*modelDir)
	if err != nil {
		return err
	}
	var aoi orb.Geometry
	if *aoiFile != "" {
		if aoi, err = loadAOI(*aoiFile); err != nil {
			return err
		}
	}
	if *stride == 0 {
		*stride = card.Chip.StrideM
	}
	log := newLogger(cfg.Log, stderr)
	for _, sc := range scenes {
		dir := filepath.Join(*out, sc.ID)
		ex := chipExport{card: card, dir: dir, limit: *limit, stride: *stride, aoi: aoi,
			cut:  tiles.CutOptions{MinValid: *minValid, MaxCloud: *maxCloud, KeepRaw: true},
			grid: pipeline.Options{MaxChips: cfg.Tiles.MaxChips, AnyResolution: *anyRes}}
		n, st, err := ex.run(ctx, sc)
		if err != nil {
			return fmt.Errorf("scene %s: %w", sc.ID, err)
		}
		log.Info("chips written", "scene", sc.ID, "dir", dir, "chips", n, "skipped", st.Skipped)
		fmt.Fprintf(stdout, "%s: %d chips in %s (skipped: %v)\n", sc.ID, n, dir, st.Skipped)
	}
	return nil
}

// chipExport writes one scene's chips as GeoTIFFs plus a chips.geojson
// index of every cell with its fractions and skip reason.
type chipExport struct {
	card   *model.Card
	dir    string
	limit  int
	stride int
	aoi    orb.Geometry // the user's, on top of the scene's own
	cut    tiles.CutOptions
	grid   pipeline.Options // the grid's bound and resolution rule
}

func (ex chipExport) run(ctx context.Context, sc *mm.Scene) (int, tiles.Stats, error) {
	st := tiles.Stats{Skipped: map[string]int{}}
	g := ex.grid
	g.Stride, g.AOI = ex.stride, ex.aoi
	src, grid, err := pipeline.OpenGrid(ctx, sc, ex.card, g)
	if err != nil {
		return 0, st, err
	}
	defer src.Close()
	cutter, err := tiles.NewCutter(src, grid, ex.card.Chip, ex.cut)
	if err != nil {
		return 0, st, err
	}
	defer cutter.Close()
	if err := os.MkdirAll(ex.dir, 0o755); err != nil {
		return 0, st, err
	}
	// how to read each input's raw values: the scene's, the same for
	// every chip
	scaleOffsets := make([][][2]float64, len(ex.card.Chip.Inputs))
	metadata := make([]map[string]string, len(ex.card.Chip.Inputs))
	for i, in := range ex.card.Chip.Inputs {
		scaleOffsets[i], metadata[i] = chipRadiometry(sc, in)
	}
	index := geojson.NewFeatureCollection()
	n := 0
	for _, id := range grid.Chips {
		if ex.limit > 0 && n >= ex.limit {
			break
		}
		if err := ctx.Err(); err != nil {
			return n, st, err
		}
		chip, skip, err := cutter.Cut(ctx, id)
		if err != nil {
			return n, st, err
		}
		f := geojson.NewFeature(chip.Footprint)
		f.ID = id.String()
		f.Properties["chip_id"] = id.String()
		f.Properties["valid_fraction"] = round4(chip.ValidFraction)
		f.Properties["cloud_fraction"] = round4(chip.CloudFraction)
		if skip != "" {
			st.Skipped[skip]++
			f.Properties["skipped"] = skip
			index.Append(f)
			continue
		}
		for i, t := range chip.Inputs {
			path := filepath.Join(ex.dir, chipFileName(id, t.Name, len(chip.Inputs)))
			if err := writeChip(path, grid.EPSG, id, t, scaleOffsets[i], metadata[i]); err != nil {
				return n, st, err
			}
			f.Properties["file"] = filepath.Base(path)
		}
		index.Append(f)
		n++
		st.Cut++
	}
	data, err := index.MarshalJSON()
	if err != nil {
		return n, st, err
	}
	tmp := filepath.Join(ex.dir, ".chips.geojson.partial")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return n, st, err
	}
	return n, st, os.Rename(tmp, filepath.Join(ex.dir, "chips.geojson"))
}

func chipFileName(id mm.ChipID, input string, inputs int) string {
	if inputs == 1 {
		return id.FileName() + ".tif"
	}
	return id.FileName() + "_" + input + ".tif"
}

// writeChip writes a tensor's raw warped values, one band per card band,
// each described "<sensor>:<band>", NaN for nodata, with the bands' scales
// and offsets and the file's metadata that say how to read them
// (chipRadiometry).
func writeChip(path string, epsg int, id mm.ChipID, t mm.Tensor, so [][2]float64, md map[string]string) error {
	b := id.Bounds()
	res := (b[2] - b[0]) / float64(t.Size)
	nan := math.NaN()
	spec := ingest.GeoTIFFSpec{Path: path, EPSG: epsg, GeoTransform: [6]float64{b[0], res, 0, b[3], 0, -res},
		Width: t.Size, Height: t.Size, Bands: len(t.Bands), DataType: "Float32", Nodata: &nan, Descriptions: t.Bands,
		ScaleOffsets: so, Metadata: md}
	return ingest.WriteGeoTIFF(spec, func(y0, rows int, buf []float64) error {
		n := t.Size * t.Size
		for ch := range t.Bands {
			for r := range rows {
				for x := range t.Size {
					buf[ch*rows*t.Size+r*t.Size+x] = float64(t.Raw[ch*n+(y0+r)*t.Size+x])
				}
			}
		}
		return nil
	})
}

// chipRadiometry says how to read an exported chip's raw values, the
// files' own: each Sentinel-2 reflectance band gets GDAL's scale 0.0001
// and offset BOA_ADD_OFFSET / 10,000 (so scaled values are reflectance,
// whichever the baseline), and the file the scene's Sentinel-2
// BOA_ADD_OFFSET (with ASSUMED when the scene does not say) and
// processing baseline, and its Sentinel-1 units, for the sensors the
// input holds.
func chipRadiometry(sc *mm.Scene, in mm.InputSpec) ([][2]float64, map[string]string) {
	so := make([][2]float64, len(in.Bands))
	md := map[string]string{}
	for i, b := range in.Bands {
		switch {
		case b.Sensor == mm.Sentinel2 && !mm.IsClassBand(b.Sensor, b.Band):
			a := sc.Assets[mm.Sentinel2]
			boa, known := a.BOAOffset()
			so[i] = [2]float64{1e-4, boa / 1e4}
			md["S2_BOA_ADD_OFFSET"] = strconv.FormatFloat(boa, 'f', -1, 64)
			if !known {
				md["S2_BOA_ADD_OFFSET"] += " (ASSUMED)"
			}
			if a.ProcessingBaseline != "" {
				md["S2_PROCESSING_BASELINE"] = a.ProcessingBaseline
			}
		case b.Sensor == mm.Sentinel1:
			md["S1_UNITS"] = sc.Assets[mm.Sentinel1].BackscatterUnits()
		}
	}
	return so, md
}

func round4(v float64) float64 { return math.Round(v*1e4) / 1e4 }

// loadCard reads the card of a model directory, or of the built-in demo
// model when dir is empty.
func loadCard(dir string) (*model.Card, error) {
	if dir == "" {
		return model.LoadCardFS(models.Demo, models.DemoDir, "built-in:demo")
	}
	return model.LoadCard(dir)
}
