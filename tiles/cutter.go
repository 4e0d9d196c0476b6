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
}

type inputPlan struct {
	spec  mm.InputSpec
	reads []rasterRead
}

// rasterRead is one warp of one raster, feeding some of an input's bands.
type rasterRead struct {
	raster     *ingest.Raster
	resampling string
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
	c := &Cutter{src: src, grid: grid, spec: spec, opts: opts}
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
	return c, nil
}

func (c *Cutter) planInput(i int, in mm.InputSpec) (inputPlan, error) {
	if in.Size < 1 {
		return inputPlan{}, fmt.Errorf("tiles: inputs[%d] (%s): size must be positive", i, in.Name)
	}
	plan := inputPlan{spec: in}
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
			plan.reads = append(plan.reads, rasterRead{raster: r, resampling: alg})
			k = len(plan.reads) - 1
		}
		plan.reads[k].slots = append(plan.reads[k].slots, bandSlot{fileBand: idx - 1, channel: ch})
	}
	return plan, nil
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
}

// Window returns the grid window of a chip at the given size.
func (c *Cutter) Window(id mm.ChipID, size int) ingest.Window {
	return ingest.Window{EPSG: c.grid.EPSG, Bounds: id.Bounds(), Width: size, Height: size}
}

// Cut warps every input of the chip. skip is "" for a chip to score, or the
// reason it is skipped (SkipNodata, SkipCloud); a skipped chip still carries
// its fractions.
func (c *Cutter) Cut(ctx context.Context, id mm.ChipID) (chip mm.Chip, skip string, err error) {
	chip = mm.Chip{ID: id, SceneID: c.src.Scene.ID, Sensors: c.spec.Sensors(), ValidFraction: 1}
	if chip.Footprint, err = c.footprint(id); err != nil {
		return chip, "", err
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
	raw := make([]float32, len(in.Bands)*n)
	for _, rd := range plan.reads {
		vals, err := rd.raster.Warp(ctx, c.Window(id, in.Size), rd.resampling)
		if err != nil {
			return mm.Tensor{}, 0, err
		}
		for _, s := range rd.slots {
			copy(raw[s.channel*n:(s.channel+1)*n], vals[s.fileBand*n:(s.fileBand+1)*n])
		}
	}
	t := mm.Tensor{Name: in.Name, Size: in.Size, Data: make([]float32, len(raw))}
	for _, b := range in.Bands {
		t.Bands = append(t.Bands, b.Name())
	}
	validPx := 0
	for p := range n {
		ok := true
		for ch, b := range in.Bands {
			v := raw[ch*n+p]
			if math.IsNaN(float64(v)) {
				ok = false
				t.Data[ch*n+p] = float32(b.Fill)
				continue
			}
			t.Data[ch*n+p] = float32(b.Normalize(float64(v)))
		}
		if ok {
			validPx++
		}
	}
	if c.opts.KeepRaw {
		t.Raw = raw
	}
	return t, float64(validPx) / float64(n), nil
}

// cloudFraction warps SCL (nearest) onto the first input's grid and counts
// cloud among the pixels SCL has data for.
func (c *Cutter) cloudFraction(ctx context.Context, id mm.ChipID) (float64, error) {
	size := c.spec.Inputs[0].Size
	vals, err := c.scl.Warp(ctx, c.Window(id, size), ingest.Nearest)
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
func (c *Cutter) EachOf(ctx context.Context, ids []mm.ChipID, fn func(mm.Chip) error) (Stats, error) {
	st := Stats{Skipped: map[string]int{}}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		chip, skip, err := c.Cut(ctx, id)
		if err != nil {
			return st, err
		}
		if skip != "" {
			st.Skipped[skip]++
			continue
		}
		st.Cut++
		if err := fn(chip); err != nil {
			return st, err
		}
	}
	return st, nil
}
