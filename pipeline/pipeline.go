// Package pipeline scores one scene: it opens the rasters (ingest), lays
// the chip grid and cuts chips (tiles) on several goroutines, scores them
// in batches (model) and keeps the detections, plus probe chips that place
// sites. Offline scoring and the daemon's workers run the same chain.
package pipeline

import (
	"context"
	"runtime"
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
	MaxChips  int              // the most chip cells a scene may span (0: tiles.DefaultMaxChips)
	// AnyResolution accepts rasters whose pixels are far from their
	// sensor's (mm.Sensor.PlausibleResolution): --allow-resolution.
	AnyResolution bool
	Progress      Progress // may be nil
}

// ingest is how the scene's rasters are opened.
func (o Options) ingest(sensors []mm.Sensor) ingest.Options {
	return ingest.Options{Sensors: sensors, Allow: o.Allow, AnyResolution: o.AnyResolution}
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
	GridEPSG   int            // the chip grid's CRS,
	GridWhy    string         // and why it is that one
}

// Stages is the time a scene spent in each stage. Cutting and inference
// overlap, so Cut and Infer may add up to more than Total; Cut sums the
// cutters' busy time (not the time they waited for the scorer).
type Stages struct {
	Open  time.Duration // opening and validating the rasters, laying the grid
	Cut   time.Duration // building chips (all cutters)
	Infer time.Duration // the scorer, grid chips and probes
	Probe time.Duration // cutting probe chips (all cutters; their scoring is in Infer)
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
// opts.AOI, at opts.Stride (0: the card's), with opts' allow list, chip
// bound and resolution rule. The caller closes the source.
func OpenGrid(ctx context.Context, sc *mm.Scene, card *model.Card, opts Options) (*ingest.Source, *tiles.Grid, error) {
	src, err := ingest.Open(ctx, sc, opts.ingest(Sensors(sc, card)))
	if err != nil {
		return nil, nil, err
	}
	aoi, stride, maxChips := opts.AOI, opts.Stride, opts.MaxChips
	var aois []orb.Geometry
	for _, a := range []orb.Geometry{sc.AOI, aoi} {
		if a != nil {
			aois = append(aois, a)
		}
	}
	grid, err := tiles.NewGrid(src, tiles.GridOptions{FootprintM: card.Chip.FootprintM, StrideM: stride, AOIs: aois, MaxChips: maxChips})
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

// Assumptions says what the scene leaves unsaid that the card's chips
// depend on, and what is assumed for it: today, whether its Sentinel-2
// DNs carry the +1000 of processing baseline 04.00.
func Assumptions(sc *mm.Scene, card *model.Card) []string {
	a, ok := sc.Assets[mm.Sentinel2]
	if !ok {
		return nil
	}
	if _, known := a.BOAOffset(); known {
		return nil
	}
	for _, in := range card.Chip.Inputs {
		for _, b := range in.Bands {
			if b.Sensor == mm.Sentinel2 && !mm.IsClassBand(b.Sensor, b.Band) {
				return []string{"assets.s2 gives neither processing_baseline nor boa_add_offset: its DNs are taken to " +
					"carry the +1000 of processing baseline 04.00 (give processing_baseline for older products)"}
			}
		}
	}
	return nil
}

// item is a chip on its way to the scorer, or a cutter's word that its
// share of the grid is cut.
type item struct {
	chip      mm.Chip
	probe     bool // an off-lattice chip around a detection
	shareDone bool
}

// scene cuts a scene's chips on several goroutines (each with its own
// opened rasters: GDAL datasets belong to one goroutine) while the scorer
// works through batches on another. Probes are cut by the same goroutines:
// each detection's probes are queued as soon as it is found, and a cutter
// whose share of the grid is done cuts them while the others finish theirs.
func (r *run) scene(ctx context.Context) error {
	sc, card := r.sc, r.card
	sensors := Sensors(sc, card)
	t0 := time.Now()
	src, grid, err := OpenGrid(ctx, sc, card, r.opts)
	if err != nil {
		return err
	}
	r.res.Stages.Open = time.Since(t0)
	r.res.GridEPSG, r.res.GridWhy = grid.EPSG, grid.Why
	defer src.Close()
	r.progress.Add(len(grid.Chips))
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// the first failure is the scene's: the others it causes (the cutters
	// and the scorer stopped by its cancel) say only "context canceled"
	var failOnce sync.Once
	var firstErr error
	fail := func(err error) {
		failOnce.Do(func() { firstErr = err })
		cancel()
	}
	workers := max(1, min(r.opts.Cutters, len(grid.Chips)))
	// whole blocks of chips per cutter: each block is warped once
	cut := r.opts.Cut
	if cut.Block == 0 {
		cut.Block = tiles.BlockFor(len(grid.Chips), workers, tiles.SmallestInput(card.Chip))
	}
	shares := grid.Shares(workers, cut.Block)
	// chips go back to the cutters once scored: as many as can be in
	// flight (the queue, a batch being scored, one per cutter). The queue
	// holds one batch: while a batch is scored the cutters cut the next.
	// Two batches' queue kept 4 more 37 MB chips of 720 px (DenseNet-121,
	// 3 km, 3 runs alternated: peak RSS 2.10 -> 1.95 GB, 8.28-8.43 s ->
	// 8.17-8.23 s); when cutting is the slower stage it seldom fills.
	cut.Buffers = tiles.NewBuffers(2*r.scorer.BatchSize() + workers)
	probes := newProbes(ctx, !r.opts.NoProbes && grid.StrideM*2 > grid.FootprintM)
	items := make(chan item, r.scorer.BatchSize())
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range workers {
		share := shares[w]
		wsrc := src
		if w > 0 {
			if wsrc, err = ingest.Open(ctx, sc, r.opts.ingest(sensors)); err != nil {
				fail(err)
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w > 0 {
				defer wsrc.Close()
			}
			err := r.cutShare(ctx, wsrc, grid, share, cut, probes, items, &mu)
			if err != nil {
				fail(err) // the scorer and the other cutters stop too
			}
			errs <- err
		}()
	}
	go func() {
		wg.Wait()
		close(items)
	}()
	if err != nil { // a worker's scene did not open
		for range items {
		}
		return firstOf(parent, firstErr)
	}
	batch := make([]item, 0, r.scorer.BatchSize())
	chips := make([]mm.Chip, 0, r.scorer.BatchSize())
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		chips = chips[:0]
		for _, it := range batch {
			chips = append(chips, it.chip)
		}
		t0 := time.Now()
		scores, err := r.scorer.Score(ctx, chips)
		if err != nil {
			return err
		}
		r.res.Stages.Infer += time.Since(t0)
		for _, it := range batch {
			cut.Buffers.Put(it.chip) // what follows reads the chips' ids, not their values
		}
		lattice := 0
		for i, it := range batch {
			if it.probe {
				probes.scored(it.chip, scores[i])
				continue
			}
			for _, d := range r.detect(it.chip, scores[i]) {
				probes.around(d)
			}
			lattice++
		}
		r.res.Scored += lattice
		r.progress.Tick(lattice)
		batch = batch[:0]
		return nil
	}
	var scoreErr error
	done := 0 // cutters whose share is cut
	// The first chips are scored as soon as the cutters have no more yet,
	// rather than after a whole batch is cut, only when the cutters leave
	// a core idle for it. When they take every core, inference started
	// early only takes CPU from them, and that partial batch is one more
	// (slower per chip) call: DenseNet-121 on the 3 km fixture, 2 cutters,
	// 3 runs alternated: 8.3-9.0 s with it, 7.8-8.2 s without; 1 cutter:
	// no difference.
	first := workers < runtime.GOMAXPROCS(0)
	for it := range items {
		if scoreErr != nil {
			continue // drain: the cutters stop on the cancelled context
		}
		if it.shareDone {
			if done++; done == workers {
				// every grid chip is here: once they are scored, every
				// probe wanted is known
				if scoreErr = flush(); scoreErr == nil {
					probes.close()
				}
			}
		} else if batch = append(batch, it); len(batch) == cap(batch) || (first && len(items) == 0) {
			// a full batch; or the first chips, with a core to score them
			// while the cutters go on
			first = false
			scoreErr = flush()
		}
		if scoreErr != nil {
			fail(scoreErr)
		}
	}
	for range workers {
		<-errs
	}
	if firstErr != nil {
		return firstOf(parent, firstErr)
	}
	if err := flush(); err != nil {
		return err
	}
	r.res.Probes = probes.result(sc.ID, r.thresholdOf)
	return nil
}

// firstOf is the error a scene ends with: the caller's cancellation when
// that is what stopped it, else the first failure.
func firstOf(parent context.Context, first error) error {
	if err := parent.Err(); err != nil {
		return err
	}
	return first
}

// probes tracks, for one scene, the chips shifted by half a footprint
// around each detection: which are wanted by which detections, the queue
// of those still to cut, and their scores. Only the scorer's goroutine
// calls around, scored and result; cutters call next.
type probes struct {
	on     bool
	wanted map[mm.ChipID][]want
	order  []mm.ChipID // in the order first wanted
	scores map[mm.ChipID]probeScore

	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]mm.ChipID // a detection's new probes per entry
	closed bool          // nothing more will be queued
}

type want struct {
	parent string
	class  mm.Class
}

type probeScore struct {
	scores    mm.Scores
	footprint orb.Polygon
}

func newProbes(ctx context.Context, on bool) *probes {
	p := &probes{on: on,
		wanted: map[mm.ChipID][]want{}, scores: map[mm.ChipID]probeScore{}}
	p.cond = sync.NewCond(&p.mu)
	if !on {
		p.closed = true
	}
	context.AfterFunc(ctx, p.close) // a cancelled run wakes waiting cutters
	return p
}

// around queues the eight chips shifted by half a footprint around a
// detection (those no other detection wanted already).
func (p *probes) around(d mm.Detection) {
	if !p.on {
		return
	}
	var fresh []mm.ChipID
	for _, id := range probesAround(d.ChipID) {
		if _, ok := p.wanted[id]; !ok {
			fresh = append(fresh, id)
			p.order = append(p.order, id)
		}
		p.wanted[id] = append(p.wanted[id], want{d.ID, d.Class})
	}
	if len(fresh) > 0 {
		p.mu.Lock()
		p.queue = append(p.queue, fresh)
		p.mu.Unlock()
		p.cond.Signal()
	}
}

// ProbeGroups is the probes a run queues for these detections, in its
// order: for each detection, those of probesAround that no detection
// before it wanted.
func ProbeGroups(ds []mm.Detection) [][]mm.ChipID {
	p := newProbes(context.Background(), true)
	for _, d := range ds {
		p.around(d)
	}
	return p.queue
}

// probesAround is the eight chips of a chip's footprint shifted by half a
// footprint around it: the probes that place a detection's site.
func probesAround(id mm.ChipID) []mm.ChipID {
	half := id.Footprint / 2
	b := id.Bounds()
	out := make([]mm.ChipID, 0, 8)
	for dx := -1; dx <= 1; dx++ {
		for dy := -1; dy <= 1; dy++ {
			if dx != 0 || dy != 0 {
				out = append(out, mm.ChipID{EPSG: id.EPSG, Footprint: id.Footprint, Stride: half,
					Col: int(b[0])/half + dx, Row: int(b[1])/half + dy})
			}
		}
	}
	return out
}

// close says no more probes will be queued.
func (p *probes) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
}

// next waits for a detection's probes to cut; false when there will be
// no more.
func (p *probes) next() ([]mm.ChipID, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.queue) == 0 {
		return nil, false
	}
	ids := p.queue[0]
	p.queue = p.queue[1:]
	return ids, true
}

func (p *probes) scored(c mm.Chip, s mm.Scores) {
	p.scores[c.ID] = probeScore{s, c.Footprint}
}

// result is every probe scoring at or above its detection's class
// threshold, in the order the probes were first wanted.
func (p *probes) result(scene string, threshold func(mm.Class) float64) []publisher.Probe {
	var out []publisher.Probe
	for _, id := range p.order {
		ps, ok := p.scores[id]
		if !ok {
			continue // skipped (no data, cloud)
		}
		for _, w := range p.wanted[id] {
			if s := ps.scores[w.class.Index()]; s >= threshold(w.class) {
				out = append(out, publisher.Probe{Parent: w.parent, Detection: mm.Detection{
					Class: w.class, Score: s, SceneID: scene, ChipID: id, Footprint: ps.footprint}})
			}
		}
	}
	return out
}

func (r *run) thresholdOf(c mm.Class) float64 {
	if r.opts.Threshold > 0 {
		return r.opts.Threshold
	}
	return r.card.Threshold(c)
}

// cutShare is one cutting worker: it cuts its share of the grid from its
// own opened scene and sends the chips to score, then cuts probes until
// there are no more.
func (r *run) cutShare(ctx context.Context, src *ingest.Source, grid *tiles.Grid, ids []mm.ChipID, cut tiles.CutOptions, probes *probes, out chan<- item, mu *sync.Mutex) error {
	cutter, err := tiles.NewCutter(src, grid, r.card.Chip, cut)
	if err != nil {
		return err
	}
	defer cutter.Close()
	var waited time.Duration // blocked on the scorer, not cutting
	send := func(it item) error {
		w0 := time.Now()
		defer func() { waited += time.Since(w0) }()
		select {
		case out <- it:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t0 := time.Now()
	st, err := cutter.EachOf(ctx, ids, func(c mm.Chip) error { return send(item{chip: c}) })
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
	if err == nil {
		err = send(item{shareDone: true})
	}
	if err != nil {
		return err
	}
	// probes; a skipped probe is not counted
	waited, t0 = 0, time.Now()
	defer func() {
		mu.Lock()
		r.res.Stages.Probe += time.Since(t0) - waited
		mu.Unlock()
	}()
	for {
		w0 := time.Now()
		group, ok := probes.next()
		waited += time.Since(w0)
		if !ok {
			return ctx.Err()
		}
		if _, err := cutter.EachOf(ctx, group, func(c mm.Chip) error { return send(item{chip: c, probe: true}) }); err != nil {
			return err
		}
	}
}

// detect keeps every class of a chip scoring at or above its threshold,
// and returns the chip's new detections.
func (r *run) detect(c mm.Chip, scores mm.Scores) []mm.Detection {
	sc := r.sc
	n := len(r.res.Detections)
	for k, class := range mm.Classes {
		if s := scores[k]; s >= r.thresholdOf(class) && hasClass(r.card, class) {
			r.res.Detections = append(r.res.Detections, mm.Detection{
				ID: mm.DetectionID(sc.ID, c.ID, class), Class: class, Score: s, Scores: scores,
				SceneID: sc.ID, ChipID: c.ID, Acquired: sc.Acquired, Model: r.card.ID(),
				Sensors: c.Sensors, ValidFraction: c.ValidFraction, CloudFraction: c.CloudFraction,
				DetectedAt: time.Now().UTC(), Footprint: c.Footprint,
			})
		}
	}
	return r.res.Detections[n:]
}

func hasClass(card *model.Card, c mm.Class) bool {
	for _, k := range card.Classes {
		if k == c {
			return true
		}
	}
	return false
}
