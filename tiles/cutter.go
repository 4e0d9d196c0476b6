package tiles

import (
	"context"
	"fmt"
	"math"
	"slices"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/paulmach/orb"
)

// Skip reasons counted when a chip is not scored.
const (
	SkipNodata = "nodata" // valid fraction under CutOptions.MinValid
	SkipCloud  = "cloud"  // cloud fraction over CutOptions.MaxCloud
)

// CutOptions tune chip cutting.
type CutOptions struct {
	// MinValid is the smallest share of pixels with data in every sensor a
	// chip needs (default 0.5).
	MinValid float64
	// MaxCloud is the largest share of cloud, cloud shadow or cirrus
	// (Sentinel-2 SCL 3, 8, 9, 10) a chip may have (default 0.5).
	MaxCloud float64
	// KeepRaw keeps the warped values before normalisation in Tensor.Raw.
	KeepRaw bool
	// Block is how many chips per side one warp covers (0: BlockChips of
	// the input's size; 1: a warp per chip). See Grid.Shares.
	Block int
	// Buffers, when not nil, gives the chips' values from chips already
	// scored (see Buffers); nil: allocated per chip.
	Buffers *Buffers
}

// CloudClasses are the Sentinel-2 SCL codes counted as cloud: cloud shadow
// (3), cloud medium (8) and high (9) probability, thin cirrus (10).
var CloudClasses = []int{3, 8, 9, 10}

// Cutter cuts the chips of one grid from one opened scene. Like the scene's
// rasters it belongs to one goroutine.
type Cutter struct {
	src    *ingest.Source
	grid   *Grid
	spec   mm.ChipSpec
	opts   CutOptions
	inputs []inputPlan
	scl    *ingest.Raster
	sclIdx int
	toLL   *ingest.Transformer
	// positions computed for one raster's exact warp, kept for the
	// others of its CRS on the same window
	positions *ingest.Positions
	// per input size, per block: the lattice cells of the chips it serves
	blockExtents map[int]map[[2]int][4]int
	edge         float64                   // see NewCutter
	blocks       map[blockKey]*warpedBlock // the last window warped per raster, resampling, size and kind
	near         map[mm.ChipID][4]float64  // EachOf's groups of nearby off-lattice chips: the window each shares
	chip         map[blockKey][]float32    // the last chip's values per raster, resampling and size (reused)
	invalid      []bool                    // per pixel of an input: some band has no data (reused)
	db           []float32                 // a Sentinel-1 band turned into dB (reused)
	col0         int                       // the grid's first column and row: blocks count from there
	row0         int
}

// Chips on the grid's lattice are warped a block at a time: one warp of
// up to blockChips x blockChips chips per raster, each chip then sliced
// out of it. A warp costs far more to set up than to run, and neighbouring
// chips read the same source blocks, so this reads each source block once
// per block of chips instead of once per chip (chips too large for blocks,
// such as METER-ML's 720 px, are warped one by one). Chips off the
// lattice (probes shifted by half a chip) handed to EachOf together, such
// as the eight around one detection, share one warp of the ground they
// cover (at most three footprints a side); one alone is warped with the
// ground one footprint around it, for the probes that may follow. Every
// window is Fixed (ingest.Window.Fixed): a pixel does not depend on the
// window, so sliced chips equal chips warped alone.
const (
	// largest block side in pixels: 7 x 7 chips of 72 px. Memory per
	// cutter goes with the block's area (a window per raster); 8 x 8
	// (576 px) cost ~17 MiB more peak on a 20 km scene than this, for no
	// speed measured (10 and 20 km scores, alternated runs)
	blockPixels = 512
)

type blockKey struct {
	raster     *ingest.Raster
	resampling string
	size       int
	probe      bool // a probe's neighbourhood, not a lattice block
}

// warpedBlock is one warped window and its values.
type warpedBlock struct {
	bounds [4]float64 // minX, minY, maxX, maxY in the grid CRS
	pixel  float64    // pixel size
	w, h   int        // pixels
	vals   []float32  // band after band, rows north to south
}

// offset is where a chip's pixels start in the window, when the window
// holds the chip on its own pixel grid.
func (b *warpedBlock) offset(chip [4]float64, pixel float64) (ox, oy int, ok bool) {
	const eps = 1e-6
	if math.Abs(pixel-b.pixel) > eps*pixel || chip[0] < b.bounds[0]-eps || chip[2] > b.bounds[2]+eps ||
		chip[1] < b.bounds[1]-eps || chip[3] > b.bounds[3]+eps {
		return 0, 0, false
	}
	fx, fy := (chip[0]-b.bounds[0])/pixel, (b.bounds[3]-chip[3])/pixel
	ox, oy = int(math.Round(fx)), int(math.Round(fy))
	if math.Abs(fx-float64(ox)) > 1e-6 || math.Abs(fy-float64(oy)) > 1e-6 {
		return 0, 0, false
	}
	return ox, oy, true
}

type inputPlan struct {
	spec  mm.InputSpec // its bands' offsets fitted to the scene (see sceneBand)
	reads []rasterRead
}

// rasterRead is one warp of one raster, feeding some of an input's bands.
type rasterRead struct {
	raster     *ingest.Raster
	resampling string
	toDB       string // Sentinel-1 values to turn into dB after the warp: mm.S1Power or mm.S1Amplitude; "" when in dB
	slots      []bandSlot
}

type bandSlot struct {
	fileBand int // 0-based band in the raster
	channel  int // channel of the input
}

// NewCutter checks that the scene has every band the spec needs and plans
// the warps. Close releases it.
func NewCutter(src *ingest.Source, grid *Grid, spec mm.ChipSpec, opts CutOptions) (*Cutter, error) {
	if opts.MinValid == 0 {
		opts.MinValid = 0.5
	}
	if opts.MaxCloud == 0 {
		opts.MaxCloud = 0.5
	}
	if len(spec.Inputs) == 0 {
		return nil, fmt.Errorf("tiles: the chip spec has no inputs")
	}
	c := &Cutter{src: src, grid: grid, spec: spec, opts: opts, blocks: map[blockKey]*warpedBlock{}, chip: map[blockKey][]float32{}}
	for i, id := range grid.Chips {
		if i == 0 || id.Col < c.col0 {
			c.col0 = id.Col
		}
		if i == 0 || id.Row < c.row0 {
			c.row0 = id.Row
		}
	}
	for i, in := range spec.Inputs {
		plan, err := c.planInput(i, in)
		if err != nil {
			return nil, err
		}
		c.inputs = append(c.inputs, plan)
	}
	if r, idx, ok := src.Band(mm.Sentinel2, "SCL"); ok {
		c.scl, c.sclIdx = r, idx-1
	}
	var err error
	if c.toLL, err = ingest.NewTransformer(grid.EPSG, 4326); err != nil {
		return nil, err
	}
	// the rasters of one CRS share the lattice of a block (or probe
	// group) window; a cutter works on one block at a time, with a
	// lattice per source CRS (~70 kB each for a 504 px block)
	c.positions = ingest.NewPositions(4)
	// Pixels with data lie inside the rasters' footprints, or within a
	// chip pixel of their edges (an average over a pixel the edge
	// crosses): a chip whose share inside (Grid.Inside) is under MinValid
	// by more than such strips along its four sides cannot reach MinValid.
	c.edge = 4 / float64(SmallestInput(spec))
	return c, nil
}

func (c *Cutter) planInput(i int, in mm.InputSpec) (inputPlan, error) {
	if in.Size < 1 {
		return inputPlan{}, fmt.Errorf("tiles: inputs[%d] (%s): size must be positive", i, in.Name)
	}
	plan := inputPlan{spec: in}
	plan.spec.Bands = make([]mm.BandSpec, len(in.Bands)) // not the card's
	for i, b := range in.Bands {
		plan.spec.Bands[i] = c.sceneBand(b)
	}
	target := float64(c.grid.FootprintM) / float64(in.Size)
	for ch, b := range in.Bands {
		r, idx, ok := c.src.Band(b.Sensor, b.Band)
		if !ok {
			return inputPlan{}, mm.Permanentf("assets.%s: band %s missing: the model's input %q needs %s", b.Sensor, b.Band, in.Name, b.Name())
		}
		k := slices.IndexFunc(plan.reads, func(rr rasterRead) bool { return rr.raster == r })
		if k < 0 {
			alg, err := c.resampling(r, b, target)
			if err != nil {
				return inputPlan{}, err
			}
			rr := rasterRead{raster: r, resampling: alg}
			if b.Sensor == mm.Sentinel1 {
				if u := c.src.Scene.Assets[mm.Sentinel1].BackscatterUnits(); u != mm.S1DB {
					rr.toDB = u
				}
			}
			plan.reads = append(plan.reads, rr)
			k = len(plan.reads) - 1
		}
		plan.reads[k].slots = append(plan.reads[k].slots, bandSlot{fileBand: idx - 1, channel: ch})
	}
	return plan, nil
}

// sceneBand is b with its offset fitted to the scene. Model cards'
// Sentinel-2 scale and offset are written for DNs as ESA distributes them
// from processing baseline 04.00 on (reflectance x 10,000 + 1000, a
// BOA_ADD_OFFSET of mm.BOAOffset04): a reflectance band of a scene whose
// DNs lack the +1000 (mm.Asset.BOAOffset 0: older products, harmonised
// copies) gets (its BOA offset - mm.BOAOffset04) x scale added, so a value
// becomes what the card expects of the same reflectance.
func (c *Cutter) sceneBand(b mm.BandSpec) mm.BandSpec {
	if b.Sensor != mm.Sentinel2 || mm.IsClassBand(b.Sensor, b.Band) {
		return b
	}
	boa, _ := c.src.Scene.Assets[mm.Sentinel2].BOAOffset()
	b.Offset += (boa - mm.BOAOffset04) * b.Scale
	return b
}

// resampling picks nearest for class bands, average when the chip's pixels
// are coarser than the raster's, bilinear otherwise.
func (c *Cutter) resampling(r *ingest.Raster, b mm.BandSpec, target float64) (string, error) {
	if mm.IsClassBand(b.Sensor, b.Band) {
		return ingest.Nearest, nil
	}
	res, err := r.ResolutionIn(c.grid.EPSG)
	if err != nil {
		return "", mm.Permanentf("tiles: %s: %w", r.Field, err)
	}
	if target > res*1.01 {
		return ingest.Average, nil
	}
	return ingest.Bilinear, nil
}

// Close releases the cutter (not the scene's rasters).
func (c *Cutter) Close() {
	if c.toLL != nil {
		c.toLL.Close()
	}
	if c.positions != nil {
		c.positions.Close()
	}
	for k, b := range c.blocks {
		unmapFloats(b.vals)
		delete(c.blocks, k)
	}
}

// Window returns the grid window of a chip at the given size: Fixed, so
// the chip is the same sliced from a block or warped alone, and its
// positions within 1e-4 pixel of exact at any size.
func (c *Cutter) Window(id mm.ChipID, size int) ingest.Window {
	return ingest.Window{EPSG: c.grid.EPSG, Bounds: id.Bounds(), Width: size, Height: size, Fixed: true, Shared: c.positions}
}

// Cut warps every input of the chip. skip is "" for a chip to score, or the
// reason it is skipped (SkipNodata, SkipCloud); a skipped chip still carries
// its fractions.
func (c *Cutter) Cut(ctx context.Context, id mm.ChipID) (chip mm.Chip, skip string, err error) {
	chip = mm.Chip{ID: id, SceneID: c.src.Scene.ID, Sensors: c.spec.Sensors(), ValidFraction: 1}
	if chip.Footprint, err = c.footprint(id); err != nil {
		return chip, "", err
	}
	// a chip mostly off the rasters would be skipped: skip it unread
	if inside := c.grid.Inside(id); inside < c.minInside() {
		chip.ValidFraction = inside
		return chip, SkipNodata, nil
	}
	for _, plan := range c.inputs {
		t, valid, err := c.cutInput(ctx, id, plan)
		if err != nil {
			return chip, "", err
		}
		chip.Inputs = append(chip.Inputs, t)
		chip.ValidFraction = math.Min(chip.ValidFraction, valid)
	}
	if c.scl != nil {
		if chip.CloudFraction, err = c.cloudFraction(ctx, id); err != nil {
			return chip, "", err
		}
	}
	switch {
	case chip.ValidFraction < c.opts.MinValid:
		return chip, SkipNodata, nil
	case chip.CloudFraction > c.opts.MaxCloud:
		return chip, SkipCloud, nil
	}
	return chip, "", nil
}

func (c *Cutter) cutInput(ctx context.Context, id mm.ChipID, plan inputPlan) (mm.Tensor, float64, error) {
	in := plan.spec
	n := in.Size * in.Size
	t := mm.Tensor{Name: in.Name, Size: in.Size, Data: c.opts.Buffers.get(len(in.Bands) * n)}
	for _, b := range in.Bands {
		t.Bands = append(t.Bands, b.Name())
	}
	if c.opts.KeepRaw {
		t.Raw = make([]float32, len(in.Bands)*n)
	}
	if cap(c.invalid) < n {
		c.invalid = make([]bool, n)
	}
	invalid := c.invalid[:n]
	clear(invalid)
	for _, rd := range plan.reads {
		vals, err := c.warp(ctx, rd.raster, rd.resampling, id, in.Size)
		if err != nil {
			return mm.Tensor{}, 0, err
		}
		for _, s := range rd.slots {
			src := vals[s.fileBand*n : (s.fileBand+1)*n]
			dst := t.Data[s.channel*n : (s.channel+1)*n]
			if t.Raw != nil { // as the file has them
				copy(t.Raw[s.channel*n:(s.channel+1)*n], src)
			}
			if rd.toDB != "" {
				c.db = toDecibels(rd.toDB, src, c.db)
				src = c.db
			}
			normalize(in.Bands[s.channel], src, dst, invalid)
		}
	}
	validPx := n
	for _, bad := range invalid {
		if bad {
			validPx--
		}
	}
	return t, float64(validPx) / float64(n), nil
}

// cloudFraction warps SCL (nearest) onto the chip's cloud grid (see
// cloudGrid) and counts cloud among the pixels SCL has data for.
func (c *Cutter) cloudFraction(ctx context.Context, id mm.ChipID) (float64, error) {
	size := cloudGrid(c.spec)
	var vals []float32
	var err error
	if slices.ContainsFunc(c.spec.Inputs, func(in mm.InputSpec) bool { return in.Size == size }) { // an input's blocks
		vals, err = c.warp(ctx, c.scl, ingest.Nearest, id, size)
	} else {
		vals, err = c.warpAlone(ctx, c.scl, ingest.Nearest, id, size)
	}
	if err != nil {
		return 0, err
	}
	n := size * size
	band := vals[c.sclIdx*n : (c.sclIdx+1)*n]
	valid, cloud := 0, 0
	for _, v := range band {
		if math.IsNaN(float64(v)) || v == 0 {
			continue
		}
		valid++
		if slices.Contains(CloudClasses, int(v)) {
			cloud++
		}
	}
	if valid == 0 {
		return 0, nil
	}
	return float64(cloud) / float64(valid), nil
}

// cloudGrid is the side in pixels of the grid a chip's cloud fraction is
// counted on: 10 m pixels (SCL's are 20 m, so each is sampled about four
// times), or the first input's grid when that is coarser. It does not
// grow with a model's input: METER-ML's 720 px chips would warp 100 times
// the pixels for the same count (a 720 px nearest warp of SCL was 7 % of
// such a chip's cut).
func cloudGrid(spec mm.ChipSpec) int {
	ten := max(1, int(math.Round(float64(spec.FootprintM)/10)))
	return min(spec.Inputs[0].Size, ten)
}

// warpAlone warps one chip's window, reusing the last chip's buffer of
// the same raster, resampling and size.
func (c *Cutter) warpAlone(ctx context.Context, r *ingest.Raster, alg string, id mm.ChipID, size int) ([]float32, error) {
	key := blockKey{r, alg, size, !c.onLattice(id)}
	vals, err := r.WarpInto(ctx, c.Window(id, size), alg, c.chip[key])
	c.chip[key] = vals
	return vals, err
}

// SmallestInput is the smallest input size of a chip spec: it allows the
// largest blocks, and blocks are ordered and shared by it.
func SmallestInput(spec mm.ChipSpec) int {
	size := 0
	for i, in := range spec.Inputs {
		if i == 0 || in.Size < size {
			size = in.Size
		}
	}
	return size
}

// blockOrder sorts lattice chips by block (stably), off-lattice chips last.
func (c *Cutter) blockOrder(ids []mm.ChipID) []mm.ChipID {
	size := SmallestInput(c.spec)
	if c.block(size) == 1 {
		return ids
	}
	out := slices.Clone(ids)
	key := func(id mm.ChipID) [3]int {
		if !c.onLattice(id) {
			return [3]int{1, 0, 0}
		}
		bc, br := c.BlockOf(id, size)
		return [3]int{0, -br, bc} // blocks north to south, west to east, as the grid
	}
	slices.SortStableFunc(out, func(a, b mm.ChipID) int {
		ka, kb := key(a), key(b)
		for i := range ka {
			if ka[i] != kb[i] {
				return ka[i] - kb[i]
			}
		}
		return 0
	})
	return out
}

// BlockChips is the most chips per side one block warp may cover for an
// input of size pixels (1: chips are warped one by one).
func BlockChips(size int) int { return max(1, min(8, blockPixels/max(size, 1))) }

// BlockFor picks the block side for a grid of chips cut by cutters
// goroutines: as large as BlockChips allows, but small enough that every
// cutter gets about two blocks.
func BlockFor(chips, cutters, size int) int {
	want := int(math.Ceil(math.Sqrt(float64(chips) / float64(2*max(1, cutters)))))
	return max(1, min(BlockChips(size), want))
}

// block is the block side for an input of size pixels.
func (c *Cutter) block(size int) int {
	if c.opts.Block > 0 {
		return min(c.opts.Block, BlockChips(size))
	}
	return BlockChips(size)
}

// onLattice reports whether a chip is one of the grid's own (same
// footprint and stride): only those are cut from blocks.
func (c *Cutter) onLattice(id mm.ChipID) bool {
	return id.EPSG == c.grid.EPSG && id.Footprint == c.grid.FootprintM && id.Stride == c.grid.StrideM && c.grid.StrideM == c.grid.FootprintM
}

// BlockBounds is the window [minX, minY, maxX, maxY] warped for a block
// of lattice chips (see BlockOf) for an input of size pixels: of its
// chips bc·n..bc·n+n-1 west to east and br·n..br·n+n-1 northwards, the
// box around those of the grid that are read (not skipped unread); at a
// grid's edges a block is seldom full (a 5 km scene's 7 x 7 chips in an
// 8 x 8 block: a quarter of the block's pixels, when blocks were 8 x 8).
func (c *Cutter) BlockBounds(bc, br, size int) [4]float64 {
	n := c.block(size)
	g := c.grid
	chip := func(col, row int) [4]float64 {
		return mm.ChipID{EPSG: g.EPSG, Footprint: g.FootprintM, Stride: g.StrideM, Col: col, Row: row}.Bounds()
	}
	e, ok := c.extents(size)[[2]int{bc, br}]
	if !ok { // no chip of the grid read there: the whole block
		e = [4]int{c.col0 + bc*n, c.row0 + br*n, c.col0 + bc*n + n - 1, c.row0 + br*n + n - 1}
	}
	first, last := chip(e[0], e[1]), chip(e[2], e[3])
	return [4]float64{first[0], first[1], last[2], last[3]}
}

// extents maps each block, for an input of size pixels, to the lattice
// cells [minCol, minRow, maxCol, maxRow] of the grid's chips in it that
// are read (computed once per size).
func (c *Cutter) extents(size int) map[[2]int][4]int {
	if m, ok := c.blockExtents[size]; ok {
		return m
	}
	m := map[[2]int][4]int{}
	for _, id := range c.grid.Chips {
		if c.unread(id) {
			continue
		}
		bc, br := c.BlockOf(id, size)
		e, ok := m[[2]int{bc, br}]
		if !ok {
			e = [4]int{id.Col, id.Row, id.Col, id.Row}
		}
		m[[2]int{bc, br}] = [4]int{min(e[0], id.Col), min(e[1], id.Row), max(e[2], id.Col), max(e[3], id.Row)}
	}
	if c.blockExtents == nil {
		c.blockExtents = map[int]map[[2]int][4]int{}
	}
	c.blockExtents[size] = m
	return m
}

// unread reports whether a chip is skipped without being read: its share
// inside the rasters' footprints is under MinValid by more than the
// pixels along its edges could add.
func (c *Cutter) unread(id mm.ChipID) bool {
	return c.grid.Inside(id) < c.minInside()
}

// minInside is the least share inside the rasters' footprints a chip
// needs to be read (see NewCutter's edge).
func (c *Cutter) minInside() float64 { return c.opts.MinValid - c.edge }

// BlockOf is the block a lattice chip falls in, counted from the grid's
// first chip, for an input of size pixels.
func (c *Cutter) BlockOf(id mm.ChipID, size int) (bc, br int) {
	n := c.block(size)
	return floorDiv(id.Col-c.col0, n), floorDiv(id.Row-c.row0, n)
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// warp returns a chip's warped bands (band after band, rows north to
// south), sliced from a window warped for its block (a lattice chip) or
// its neighbourhood (a probe), warped now or kept from an earlier chip.
// The values are good until the next call for the same raster,
// resampling and size.
func (c *Cutter) warp(ctx context.Context, r *ingest.Raster, alg string, id mm.ChipID, size int) ([]float32, error) {
	n := c.block(size)
	if n == 1 {
		return c.warpAlone(ctx, r, alg, id, size)
	}
	key := blockKey{r, alg, size, !c.onLattice(id)}
	b := id.Bounds()
	pixel := (b[2] - b[0]) / float64(size)
	blk := c.blocks[key]
	ox, oy, ok := 0, 0, false
	if blk != nil {
		ox, oy, ok = blk.offset(b, pixel)
	}
	if !ok {
		var win [4]float64
		if g, ok := c.near[id]; ok && c.fits(g, b, pixel) {
			win = g
		} else if c.onLattice(id) {
			bc, br := c.BlockOf(id, size)
			win = c.BlockBounds(bc, br, size)
			// the block's box holds the grid's chips; another chip of the
			// lattice, asked for on its own, widens it
			win = [4]float64{min(win[0], b[0]), min(win[1], b[1]), max(win[2], b[2]), max(win[3], b[3])}
		} else {
			f := b[2] - b[0] // one footprint on every side
			win = [4]float64{b[0] - f, b[1] - f, b[2] + f, b[3] + f}
		}
		// the window warped before gives up its buffer (a window per block
		// would otherwise be garbage, and the heap grow with the scene),
		// mapped outside the Go heap (windows.go)
		var reuse []float32
		if blk != nil {
			reuse = blk.vals[:cap(blk.vals)]
			delete(c.blocks, key)
		}
		iw := c.fixedWindow(win, pixel, c.positions)
		if n := len(r.Bands) * iw.Width * iw.Height; cap(reuse) < n {
			unmapFloats(reuse)
			var err error
			if reuse, err = mapFloats(n); err != nil {
				return nil, err
			}
		}
		vals, err := r.WarpInto(ctx, iw, alg, reuse)
		if err != nil {
			unmapFloats(reuse)
			return nil, err
		}
		blk = &warpedBlock{bounds: win, pixel: pixel, w: iw.Width, h: iw.Height, vals: vals}
		c.blocks[key] = blk
		ox, oy, _ = blk.offset(b, pixel)
	}
	bands := len(blk.vals) / (blk.w * blk.h)
	out := c.chip[key]
	if cap(out) < bands*size*size {
		out = make([]float32, bands*size*size)
	}
	out = out[:bands*size*size]
	c.chip[key] = out
	for band := range bands {
		src := blk.vals[band*blk.w*blk.h:]
		dst := out[band*size*size:]
		for y := range size {
			copy(dst[y*size:(y+1)*size], src[(oy+y)*blk.w+ox:(oy+y)*blk.w+ox+size])
		}
	}
	return out, nil
}

// fixedWindow is the Fixed window over win in pixels of pixel metres,
// sharing lattices with the other rasters warped with shared.
func (c *Cutter) fixedWindow(win [4]float64, pixel float64, shared *ingest.Positions) ingest.Window {
	w, h := int(math.Round((win[2]-win[0])/pixel)), int(math.Round((win[3]-win[1])/pixel))
	return ingest.Window{EPSG: c.grid.EPSG, Bounds: win, Width: w, Height: h, Fixed: true, Shared: shared}
}

// fits reports whether a chip lies in the window on its own pixel grid.
func (c *Cutter) fits(win, chip [4]float64, pixel float64) bool {
	_, _, ok := (&warpedBlock{bounds: win, pixel: pixel}).offset(chip, pixel)
	return ok
}

// nearGroups splits the off-lattice chips of ids, in order, into runs whose
// footprints fit in a square of three footprints a side (the eight probes
// around a detection are one), and maps each chip of a run of two or more
// to the run's bounds: the window its chips share.
func nearGroups(ids []mm.ChipID) map[mm.ChipID][4]float64 {
	out := map[mm.ChipID][4]float64{}
	var run []mm.ChipID
	var box [4]float64
	end := func() {
		if len(run) > 1 {
			for _, id := range run {
				out[id] = box
			}
		}
		run = run[:0]
	}
	for _, id := range ids {
		if id.Stride == id.Footprint { // a lattice chip (the grid's own, or another grid's)
			end()
			continue
		}
		b := id.Bounds()
		if len(run) > 0 {
			u := [4]float64{min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])}
			f := float64(id.Footprint)
			if id.EPSG == run[0].EPSG && id.Footprint == run[0].Footprint && u[2]-u[0] <= 3*f && u[3]-u[1] <= 3*f {
				run, box = append(run, id), u
				continue
			}
			end()
		}
		run, box = append(run, id), b
	}
	end()
	return out
}

// footprint is the chip's square in WGS84, counter-clockwise.
func (c *Cutter) footprint(id mm.ChipID) (orb.Polygon, error) {
	b := id.Bounds()
	ring := orb.Ring{{b[0], b[1]}, {b[2], b[1]}, {b[2], b[3]}, {b[0], b[3]}, {b[0], b[1]}}
	if err := c.toLL.Points(ring); err != nil {
		return nil, fmt.Errorf("tiles: chip %s footprint: %w", id, err)
	}
	return orb.Polygon{ring}, nil
}

// Stats counts what Each did.
type Stats struct {
	Cut     int            // chips handed to fn
	Skipped map[string]int // by reason
}

// Each cuts the grid's chips in order and calls fn with each chip to score.
// It stops at the first error, or when ctx is done (checked between chips:
// GDAL calls cannot be interrupted).
func (c *Cutter) Each(ctx context.Context, fn func(mm.Chip) error) (Stats, error) {
	return c.EachOf(ctx, c.grid.Chips, fn)
}

// EachOf is Each over some of the grid's chips (for example one worker's
// share when several cutters, each on its own opened scene, split a grid).
// Chips come block by block (see BlockChips), in the grid's order within
// a block, so that each block is warped once.
func (c *Cutter) EachOf(ctx context.Context, ids []mm.ChipID, fn func(mm.Chip) error) (Stats, error) {
	st := Stats{Skipped: map[string]int{}}
	c.near = nearGroups(ids)
	defer func() { c.near = nil }()
	for _, id := range c.blockOrder(ids) {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		chip, skip, err := c.Cut(ctx, id)
		if err != nil {
			return st, err
		}
		if skip != "" {
			st.Skipped[skip]++
			if c.opts.Buffers != nil {
				c.opts.Buffers.Put(chip) // nobody sees a skipped chip's values
			}
			continue
		}
		st.Cut++
		if err := fn(chip); err != nil {
			return st, err
		}
	}
	return st, nil
}
