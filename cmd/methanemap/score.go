package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/pipeline"
	"github.com/methanemap/methanemap/publisher"
	"github.com/methanemap/methanemap/tiles"
	"github.com/paulmach/orb"
)

func runScore(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) (retErr error) {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	var sceneFiles stringList
	fs.Var(&sceneFiles, "scene", "scene message, STAC Item or ItemCollection file, or a directory of them (repeatable)")
	aoiFile := fs.String("aoi", "", "GeoJSON Polygon or MultiPolygon limiting the chips")
	modelDir := fs.String("model", cfg.Model.Dir, "model directory (default: the built-in demo model)")
	backend := fs.String("backend", cfg.Model.Backend, "auto, onnxruntime or onnxgo")
	batch := fs.Int("batch", cfg.Model.BatchSize, "chips per inference call")
	stride := fs.Int("stride", cfg.Tiles.StrideM, "scan stride in metres (0: the model card's)")
	threshold := fs.Float64("threshold", 0, "score threshold for every class (0: the card's per-class thresholds)")
	out := fs.String("o", "", "detections output: .geojson, .geojsonl, .gpkg or .fgb (required)")
	sitesOut := fs.String("sites", "", "sites output (merged detections), same formats")
	force := fs.Bool("force", false, "overwrite existing outputs")
	keepGoing := fs.Bool("keep-going", false, "skip unreadable scenes (reported in the summary) instead of stopping")
	quiet := fs.Bool("quiet", false, "no progress output")
	cutters := fs.Int("cutters", runtime.NumCPU(), "chip-cutting goroutines per scene, each with its own opened rasters")
	noProbes := fs.Bool("no-probes", false, "do not re-score half-shifted chips around detections to place sites")
	var prof profiles
	prof.flags(fs)
	anyRes := fs.Bool("allow-resolution", false, "accept rasters whose pixel size is implausible for their sensor (NAIP 0.05-10 m, Sentinel-2 and -1 5-100 m)")
	var allow stringList
	fs.Var(&allow, "allow", "directory or URL prefix scene hrefs, and what GDAL opens for them, must lie in (repeatable; default: ingest.allow, else anywhere)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(allow) == 0 {
		allow = cfg.Ingest.Allow
	}
	if err := ingest.ValidateAllow(allow); err != nil {
		return usagef("score: --allow: %v", err)
	}
	if err := ingest.Confine(allow); err != nil { // GDAL's HTTP too, redirects included
		return err
	}
	if len(sceneFiles) == 0 || *out == "" {
		return usagef("score: --scene and -o are required")
	}
	if *cutters < 1 {
		return usagef("score: --cutters must be at least 1")
	}
	if *threshold < 0 || *threshold > 1 {
		return usagef("score: --threshold must be in [0, 1]")
	}
	// refuse before any work: outputs that exist, formats we cannot write
	for _, p := range []string{*out, *sitesOut} {
		if p == "" {
			continue
		}
		if _, err := publisher.FormatOf(p); err != nil {
			return mm.Permanent(err)
		}
		if _, err := os.Stat(p); err == nil && !*force {
			return mm.Permanentf("%s exists (use --force to overwrite)", p)
		}
	}
	if err := prof.check(*force, *out, *sitesOut); err != nil {
		return err
	}
	var aoi orb.Geometry
	var err error
	if *aoiFile != "" {
		if aoi, err = loadAOI(*aoiFile); err != nil {
			return err
		}
	}
	var scenes []*mm.Scene
	for _, f := range sceneFiles {
		s, err := loadScenes(f)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		scenes = append(scenes, s...)
	}
	// from the model's loading to the outputs' writing
	if err := prof.start(); err != nil {
		return err
	}
	defer func() {
		if err := prof.stop(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	log := newLogger(cfg.Log, stderr)
	scorer, err := newScorer(cfg, *modelDir, *backend, *batch, log)
	if err != nil {
		return err
	}
	defer scorer.Close()
	m := scorer.Model
	log.Info("scoring", "scenes", len(scenes))
	if *stride == 0 {
		*stride = m.Card.Chip.StrideM
	}
	prog := newProgress(stderr, *quiet)
	run := &scoreRun{model: m, started: time.Now(), skipped: map[string]int{}, stride: *stride}
	opts := pipeline.Options{Stride: *stride, Threshold: *threshold, Cutters: *cutters, NoProbes: *noProbes, AOI: aoi, Allow: allow, MaxChips: cfg.Tiles.MaxChips, AnyResolution: *anyRes,
		Cut: tiles.CutOptions{MinValid: cfg.Tiles.MinValid, MaxCloud: cfg.Tiles.MaxCloud}, Progress: prog}
	for _, sc := range scenes {
		for _, note := range pipeline.Assumptions(sc, m.Card) {
			log.Warn(note, "scene", sc.ID)
		}
		res, err := pipeline.Run(ctx, sc, scorer, opts)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if *keepGoing && mm.IsPermanent(err) {
				run.failed = append(run.failed, fmt.Sprintf("%s: %v", sc.ID, err))
				log.Warn("scene skipped", "scene", sc.ID, "err", err)
				continue
			}
			return fmt.Errorf("scene %s: %w", sc.ID, err)
		}
		log.Info("chip grid", "scene", sc.ID, "epsg", res.GridEPSG, "why", res.GridWhy)
		run.add(res)
	}
	prog.done()
	sites := publisher.Sites(run.dets, run.probes...)
	if err := publisher.WriteFiles(*out, *sitesOut, run.dets, sites); err != nil {
		return err
	}
	run.summary(stdout, len(scenes), sites, *out, *sitesOut)
	return nil
}

// scoreRun gathers what the scenes gave, for the outputs and the summary.
type scoreRun struct {
	model   *model.Model
	stride  int
	started time.Time
	dets    []mm.Detection
	probes  []publisher.Probe
	scored  int
	skipped map[string]int
	failed  []string
}

func (r *scoreRun) add(res pipeline.Result) {
	r.dets = append(r.dets, res.Detections...)
	r.probes = append(r.probes, res.Probes...)
	r.scored += res.Scored
	for k, v := range res.Skipped {
		r.skipped[k] += v
	}
}

func (r *scoreRun) summary(w io.Writer, nScenes int, sites []mm.Site, out, sitesOut string) {
	wall := time.Since(r.started)
	fp := float64(r.model.Card.Chip.FootprintM)
	cell := float64(r.stride) * float64(r.stride)
	if r.stride <= 0 || float64(r.stride) > fp {
		cell = fp * fp
	}
	fmt.Fprintf(w, "scenes %d (%d skipped), chips scored %d, skipped %s, %.1f km², %s (%.1f chips/s)\n",
		nScenes, len(r.failed), r.scored, fmtCounts(r.skipped), float64(r.scored)*cell/1e6, wall.Round(time.Millisecond),
		float64(r.scored)/max(wall.Seconds(), 1e-9))
	dets, nsites := map[mm.Class]int{}, map[mm.Class]int{}
	for _, d := range r.dets {
		dets[d.Class]++
	}
	for _, s := range sites {
		nsites[s.Class]++
	}
	fmt.Fprintf(w, "%-34s %10s %6s\n", "class", "detections", "sites")
	for _, c := range mm.Classes {
		fmt.Fprintf(w, "%-34s %10d %6d\n", c, dets[c], nsites[c])
	}
	for _, f := range r.failed {
		fmt.Fprintf(w, "failed: %s\n", f)
	}
	fmt.Fprintf(w, "detections: %s\n", out)
	if sitesOut != "" {
		fmt.Fprintf(w, "sites: %s\n", sitesOut)
	}
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
