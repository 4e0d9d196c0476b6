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
	"sync"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/publisher"
	"github.com/methanemap/methanemap/tiles"
	"github.com/paulmach/orb"
)

func runScore(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
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
	if err := parseFlags(fs, args); err != nil {
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
	log := newLogger(stderr)
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
	run := &scoreRun{model: m, scorer: scorer, aoi: aoi, stride: *stride, threshold: *threshold, cutters: *cutters, noProbes: *noProbes,
		cut:      tiles.CutOptions{MinValid: cfg.Tiles.MinValid, MaxCloud: cfg.Tiles.MaxCloud},
		progress: newProgress(stderr, *quiet), started: time.Now(), skipped: map[string]int{}}
	for _, sc := range scenes {
		if err := run.scene(ctx, sc); err != nil {
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
	}
	run.progress.done()
	sites := publisher.Sites(run.dets, run.probes...)
	if err := writeOutputs(*out, *sitesOut, run.dets, sites); err != nil {
		return err
	}
	run.summary(stdout, len(scenes), sites, *out, *sitesOut)
	return nil
}

// scoreRun holds what scoring has found so far.
type scoreRun struct {
	model     *model.Model
	scorer    *model.Scorer
	aoi       orb.Geometry
	stride    int
	threshold float64
	cutters   int // chip-cutting goroutines per scene
	cut       tiles.CutOptions
	progress  *progress
	started   time.Time

	dets     []mm.Detection
	probes   []publisher.Probe
	noProbes bool
	scored   int
	skipped  map[string]int
	failed   []string
}

// scene cuts a scene's chips on several goroutines (each with its own
// opened rasters: GDAL datasets belong to one goroutine) while the scorer
// works through batches on another.
func (r *scoreRun) scene(ctx context.Context, sc *mm.Scene) error {
	card := r.model.Card
	sensors := withSCL(sc, card.Chip.Sensors())
	src, grid, err := openGrid(ctx, sc, card, r.stride, r.aoi)
	if err != nil {
		return err
	}
	defer src.Close()
	r.progress.add(len(grid.Chips))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(1, min(r.cutters, len(grid.Chips)))
	chips := make(chan mm.Chip, 2*r.scorer.BatchSize())
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range workers {
		var share []mm.ChipID
		for i := w; i < len(grid.Chips); i += workers {
			share = append(share, grid.Chips[i])
		}
		wsrc := src
		if w > 0 {
			if wsrc, err = ingest.Open(ctx, sc, ingest.Options{Sensors: sensors}); err != nil {
				cancel()
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w > 0 {
				defer wsrc.Close()
			}
			errs <- r.cutShare(ctx, wsrc, grid, share, chips, &mu)
		}()
	}
	go func() {
		wg.Wait()
		close(chips)
	}()
	if err != nil { // a worker's scene did not open
		for range chips {
		}
		return err
	}
	batch := make([]mm.Chip, 0, r.scorer.BatchSize())
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		scores, err := r.scorer.Score(ctx, batch)
		if err != nil {
			return err
		}
		r.detect(sc, batch, scores)
		r.scored += len(batch)
		r.progress.tick(len(batch))
		batch = batch[:0]
		return nil
	}
	var scoreErr error
	for c := range chips {
		if scoreErr != nil {
			continue // drain: the cutters stop on the cancelled context
		}
		batch = append(batch, c)
		if len(batch) == cap(batch) {
			if scoreErr = flush(); scoreErr != nil {
				cancel()
			}
		}
	}
	if scoreErr != nil {
		return scoreErr
	}
	for range workers {
		if err := <-errs; err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return r.probe(ctx, src, grid, sc)
}

// probe places this scene's sites better: around each chip detected here
// it scores the eight chips shifted by half a footprint, and keeps those
// at or above the class's threshold as probes of that detection.
func (r *scoreRun) probe(ctx context.Context, src *ingest.Source, grid *tiles.Grid, sc *mm.Scene) error {
	if r.noProbes || grid.StrideM*2 <= grid.FootprintM {
		return nil // chips already overlap by half: nothing finer to add
	}
	half := grid.FootprintM / 2
	type want struct {
		parent string
		class  mm.Class
	}
	wanted := map[mm.ChipID][]want{}
	var ids []mm.ChipID
	for _, d := range r.dets {
		if d.SceneID != sc.ID {
			continue
		}
		b := d.ChipID.Bounds()
		for dx := -1; dx <= 1; dx++ {
			for dy := -1; dy <= 1; dy++ {
				if dx == 0 && dy == 0 {
					continue
				}
				id := mm.ChipID{EPSG: d.ChipID.EPSG, Footprint: grid.FootprintM, Stride: half,
					Col: int(b[0])/half + dx, Row: int(b[1])/half + dy}
				if _, ok := wanted[id]; !ok {
					ids = append(ids, id)
				}
				wanted[id] = append(wanted[id], want{d.ID, d.Class})
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	cutter, err := tiles.NewCutter(src, grid, r.model.Card.Chip, r.cut)
	if err != nil {
		return err
	}
	defer cutter.Close()
	var chips []mm.Chip
	if _, err := cutter.EachOf(ctx, ids, func(c mm.Chip) error { chips = append(chips, c); return nil }); err != nil {
		return err
	}
	scores, err := r.scorer.Score(ctx, chips)
	if err != nil {
		return err
	}
	for i, c := range chips {
		for _, w := range wanted[c.ID] {
			k := classIndexOf(w.class)
			if s := scores[i][k]; s >= r.thresholdOf(w.class) {
				r.probes = append(r.probes, publisher.Probe{Parent: w.parent, Detection: mm.Detection{
					Class: w.class, Score: s, SceneID: sc.ID, ChipID: c.ID, Footprint: c.Footprint}})
			}
		}
	}
	return nil
}

func (r *scoreRun) thresholdOf(c mm.Class) float64 {
	if r.threshold > 0 {
		return r.threshold
	}
	return r.model.Card.Threshold(c)
}

// cutShare is one cutting worker: it cuts its share of the grid from its own
// opened scene and sends the chips to score.
func (r *scoreRun) cutShare(ctx context.Context, src *ingest.Source, grid *tiles.Grid, ids []mm.ChipID, out chan<- mm.Chip, mu *sync.Mutex) error {
	cutter, err := tiles.NewCutter(src, grid, r.model.Card.Chip, r.cut)
	if err != nil {
		return err
	}
	defer cutter.Close()
	st, err := cutter.EachOf(ctx, ids, func(c mm.Chip) error {
		select {
		case out <- c:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	mu.Lock()
	for k, v := range st.Skipped {
		r.skipped[k] += v
	}
	mu.Unlock()
	for _, v := range st.Skipped {
		r.progress.tick(v)
	}
	return err
}

// detect keeps, for each chip, every class scoring at or above its threshold.
func (r *scoreRun) detect(sc *mm.Scene, chips []mm.Chip, scores []mm.Scores) {
	now := time.Now().UTC()
	for i, c := range chips {
		for k, class := range mm.Classes {
			if s := scores[i][k]; s >= r.thresholdOf(class) && hasClass(r.model.Card, class) {
				r.dets = append(r.dets, mm.Detection{
					ID: mm.DetectionID(sc.ID, c.ID, class), Class: class, Score: s, Scores: scores[i],
					SceneID: sc.ID, ChipID: c.ID, Acquired: sc.Acquired, Model: r.model.Card.ID(),
					Sensors: c.Sensors, ValidFraction: c.ValidFraction, CloudFraction: c.CloudFraction,
					DetectedAt: now, Footprint: c.Footprint,
				})
			}
		}
	}
}

func hasClass(card *model.Card, c mm.Class) bool {
	for _, k := range card.Classes {
		if k == c {
			return true
		}
	}
	return false
}

// writeOutputs writes detections and sites, each all or nothing.
func writeOutputs(out, sitesOut string, dets []mm.Detection, sites []mm.Site) error {
	sort.Slice(dets, func(i, j int) bool { return dets[i].ID < dets[j].ID })
	sink, err := publisher.NewFileSink(out, "detections")
	if err != nil {
		return err
	}
	for _, d := range dets {
		if err := sink.Write(publisher.Feature(d)); err != nil {
			sink.Abort()
			return err
		}
	}
	if err := sink.Commit(); err != nil {
		return err
	}
	if sitesOut == "" {
		return nil
	}
	ss, err := publisher.NewFileSink(sitesOut, "sites")
	if err != nil {
		return err
	}
	for _, s := range sites {
		if err := ss.Write(publisher.SiteFeature(s)); err != nil {
			ss.Abort()
			return err
		}
	}
	return ss.Commit()
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
