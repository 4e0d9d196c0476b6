// Package pipeline scores one scene: it opens the rasters (ingest), lays
// the chip grid and cuts chips (tiles) on several goroutines, scores them
// in batches (model) and keeps the detections, plus probe chips that place
// sites. Offline scoring and the daemon's workers run the same chain.
package pipeline

import (
	"context"
	"sync"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/publisher"
	"github.com/methanemap/methanemap/tiles"
	"github.com/paulmach/orb"
)

// Options tune a run.
type Options struct {
	Stride    int              // scan stride in metres (0: the card's)
	Threshold float64          // one threshold for every class (0: the card's per-class ones)
	Cutters   int              // chip-cutting goroutines, each with its own opened rasters (default 1)
	NoProbes  bool             // do not score half-shifted chips around detections to place sites
	Cut       tiles.CutOptions // skip rules
	AOI       orb.Geometry     // the user's area of interest, on top of the scene's own
	Allow     []string         // where hrefs may point (none: anywhere); see ingest.Allowed
	Progress  Progress         // may be nil
}

// Progress hears how many chips a scene has and how many are done.
type Progress interface {
	Add(chips int)
	Tick(chips int)
}

// Result is what a scene gave.
type Result struct {
	Detections []mm.Detection
	Probes     []publisher.Probe
	Scored     int            // chips scored (probes not counted)
	Skipped    map[string]int // chips skipped, by reason
	Stages     Stages         // where the time went
}

// Stages is the time a scene spent in each stage. Cutting and inference
// overlap, so Cut and Infer may add up to more than Total; Cut sums the
// cutters' busy time (not the time they waited for the scorer).
type Stages struct {
	Open  time.Duration // opening and validating the rasters, laying the grid
	Cut   time.Duration // building chips (all cutters)
	Infer time.Duration // the scorer, grid chips and probes
	Probe time.Duration // the probe stage, cutting and scoring (wall)
	Total time.Duration // the whole scene (wall)
}

// Sites merges the scene's detections into sites, placed with its probes.
func (r Result) Sites() []mm.Site { return publisher.Sites(r.Detections, r.Probes...) }

type noProgress struct{}

func (noProgress) Add(int)  {}
func (noProgress) Tick(int) {}

// run is one scene's state.
type run struct {
	sc       *mm.Scene
	scorer   *model.Scorer
	card     *model.Card
	opts     Options
	res      Result
	progress Progress
}

// Run scores a scene. Its errors are the stages' (permanent ones marked).
func Run(ctx context.Context, sc *mm.Scene, scorer *model.Scorer, opts Options) (Result, error) {
	if opts.Cutters < 1 {
		opts.Cutters = 1
	}
	if opts.Stride == 0 {
		opts.Stride = scorer.Model.Card.Chip.StrideM
	}
	r := &run{sc: sc, scorer: scorer, card: scorer.Model.Card, opts: opts, progress: opts.Progress,
		res: Result{Skipped: map[string]int{}}}
	if r.progress == nil {
		r.progress = noProgress{}
	}
	t0 := time.Now()
	err := r.scene(ctx)
	r.res.Stages.Total = time.Since(t0)
	return r.res, err
}

// OpenGrid opens the rasters a model card needs (and Sentinel-2 for its
// SCL cloud mask) and lays the chip grid, limited to the scene's AOI and
// aoi (may be nil); hrefs must lie in allow when it is not empty. The
// caller closes the source.
func OpenGrid(ctx context.Context, sc *mm.Scene, card *model.Card, stride int, aoi orb.Geometry, allow []string) (*ingest.Source, *tiles.Grid, error) {
	src, err := ingest.Open(ctx, sc, ingest.Options{Sensors: Sensors(sc, card), Allow: allow})
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

// Sensors are the sensors to open for a card: the card's, plus Sentinel-2
// when the scene has an SCL band, so chips carry their cloud fraction.
func Sensors(sc *mm.Scene, card *model.Card) []mm.Sensor {
	sensors := card.Chip.Sensors()
	a, ok := sc.Assets[mm.Sentinel2]
	if !ok {
		return sensors
	}
	hasSCL := a.Hrefs["SCL"] != ""
	for _, b := range a.Bands {
		hasSCL = hasSCL || b == "SCL"
	}
	for _, s := range sensors {
		if s == mm.Sentinel2 {
			return sensors
		}
	}
	if hasSCL {
		return append(sensors, mm.Sentinel2)
	}
	return sensors
}

// scene cuts a scene's chips on several goroutines (each with its own
// opened rasters: GDAL datasets belong to one goroutine) while the scorer
// works through batches on another.
func (r *run) scene(ctx context.Context) error {
	sc, card := r.sc, r.card
	sensors := Sensors(sc, card)
	t0 := time.Now()
	src, grid, err := OpenGrid(ctx, sc, card, r.opts.Stride, r.opts.AOI, r.opts.Allow)
	if err != nil {
		return err
	}
	r.res.Stages.Open = time.Since(t0)
	defer src.Close()
	r.progress.Add(len(grid.Chips))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(1, min(r.opts.Cutters, len(grid.Chips)))
	// whole blocks of chips per cutter: each block is warped once
	cut := r.opts.Cut
	if cut.Block == 0 {
		cut.Block = tiles.BlockFor(len(grid.Chips), workers, tiles.SmallestInput(card.Chip))
	}
	shares := grid.Shares(workers, cut.Block)
	chips := make(chan mm.Chip, 2*r.scorer.BatchSize())
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range workers {
		share := shares[w]
		wsrc := src
		if w > 0 {
			if wsrc, err = ingest.Open(ctx, sc, ingest.Options{Sensors: sensors, Allow: r.opts.Allow}); err != nil {
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
			errs <- r.cutShare(ctx, wsrc, grid, share, cut, chips, &mu)
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
		t0 := time.Now()
		scores, err := r.scorer.Score(ctx, batch)
		if err != nil {
			return err
		}
		r.res.Stages.Infer += time.Since(t0)
		r.detect(batch, scores)
		r.res.Scored += len(batch)
		r.progress.Tick(len(batch))
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
	t0 = time.Now()
	err = r.probe(ctx, src, grid)
	r.res.Stages.Probe = time.Since(t0)
	return err
}

// probe places this scene's sites better: around each chip detected here
// it scores the eight chips shifted by half a footprint, and keeps those
// at or above the class's threshold as probes of that detection.
func (r *run) probe(ctx context.Context, src *ingest.Source, grid *tiles.Grid) error {
	sc := r.sc
	if r.opts.NoProbes || grid.StrideM*2 <= grid.FootprintM {
		return nil // chips already overlap by half: nothing finer to add
	}
	half := grid.FootprintM / 2
	type want struct {
		parent string
		class  mm.Class
	}
	wanted := map[mm.ChipID][]want{}
	var ids []mm.ChipID
	for _, d := range r.res.Detections {
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
	cutter, err := tiles.NewCutter(src, grid, r.card.Chip, r.opts.Cut)
	if err != nil {
		return err
	}
	defer cutter.Close()
	var chips []mm.Chip
	if _, err := cutter.EachOf(ctx, ids, func(c mm.Chip) error { chips = append(chips, c); return nil }); err != nil {
		return err
	}
	t0 := time.Now()
	scores, err := r.scorer.Score(ctx, chips)
	if err != nil {
		return err
	}
	r.res.Stages.Infer += time.Since(t0)
	for i, c := range chips {
		for _, w := range wanted[c.ID] {
			k := w.class.Index()
			if s := scores[i][k]; s >= r.thresholdOf(w.class) {
				r.res.Probes = append(r.res.Probes, publisher.Probe{Parent: w.parent, Detection: mm.Detection{
					Class: w.class, Score: s, SceneID: sc.ID, ChipID: c.ID, Footprint: c.Footprint}})
			}
		}
	}
	return nil
}

func (r *run) thresholdOf(c mm.Class) float64 {
	if r.opts.Threshold > 0 {
		return r.opts.Threshold
	}
	return r.card.Threshold(c)
}

// cutShare is one cutting worker: it cuts its share of the grid from its own
// opened scene and sends the chips to score.
func (r *run) cutShare(ctx context.Context, src *ingest.Source, grid *tiles.Grid, ids []mm.ChipID, cut tiles.CutOptions, out chan<- mm.Chip, mu *sync.Mutex) error {
	cutter, err := tiles.NewCutter(src, grid, r.card.Chip, cut)
	if err != nil {
		return err
	}
	defer cutter.Close()
	var waited time.Duration // blocked on the scorer, not cutting
	t0 := time.Now()
	st, err := cutter.EachOf(ctx, ids, func(c mm.Chip) error {
		w0 := time.Now()
		defer func() { waited += time.Since(w0) }()
		select {
		case out <- c:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	busy := time.Since(t0) - waited
	mu.Lock()
	r.res.Stages.Cut += busy
	for k, v := range st.Skipped {
		r.res.Skipped[k] += v
	}
	mu.Unlock()
	for _, v := range st.Skipped {
		r.progress.Tick(v)
	}
	return err
}

// detect keeps, for each chip, every class scoring at or above its threshold.
func (r *run) detect(chips []mm.Chip, scores []mm.Scores) {
	sc := r.sc
	now := time.Now().UTC()
	for i, c := range chips {
		for k, class := range mm.Classes {
			if s := scores[i][k]; s >= r.thresholdOf(class) && hasClass(r.card, class) {
				r.res.Detections = append(r.res.Detections, mm.Detection{
					ID: mm.DetectionID(sc.ID, c.ID, class), Class: class, Score: s, Scores: scores[i],
					SceneID: sc.ID, ChipID: c.ID, Acquired: sc.Acquired, Model: r.card.ID(),
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
