package tiles

import (
	"fmt"
	"math"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/paulmach/orb"
)

// DefaultFootprintM is METER-ML's chip side: 720 m.
const DefaultFootprintM = 720

// Grid is the set of chips of one scene.
type Grid struct {
	EPSG       int
	Why        string // why the grid is in EPSG, for the logs
	FootprintM int
	StrideM    int
	// Coverage is the bounding box, in the grid CRS, of the ground every
	// sensor covers (clipped to the AOIs' bounds).
	Coverage orb.Bound
	// Chips lists the cells that touch every sensor's footprint and the
	// AOIs, north to south, west to east.
	Chips []mm.ChipID

	rings []orb.Ring // each raster's footprint in the grid CRS
}

// GridOptions tune NewGrid.
type GridOptions struct {
	FootprintM int // default DefaultFootprintM
	StrideM    int // default FootprintM
	EPSG       int // force a grid CRS (default: NAIP's if UTM in metres, else UTM of the centre on NAIP's datum)
	// AOIs are WGS84 Polygons or MultiPolygons (the scene's, the user's):
	// a chip must touch every one of them.
	AOIs []orb.Geometry
	// MaxChips bounds the cells a grid may span (default DefaultMaxChips):
	// a scene larger than that is refused before any cell is listed.
	MaxChips int
}

// DefaultMaxChips is GridOptions.MaxChips's default: 250,000 cells of
// 720 m are 130,000 km² (a Sentinel-2 tile is 23,000 at the METER-ML
// stride); a header declaring a continent is refused, not enumerated.
const DefaultMaxChips = 250_000

// NewGrid lays the chip grid over the opened scene. It fails (permanently)
// when the sensors' footprints do not overlap or the AOI misses the scene.
func NewGrid(src *ingest.Source, opts GridOptions) (*Grid, error) {
	if len(src.Rasters) == 0 {
		return nil, mm.Permanentf("tiles: the scene has no rasters")
	}
	g := &Grid{FootprintM: opts.FootprintM, StrideM: opts.StrideM, EPSG: opts.EPSG}
	if g.FootprintM <= 0 {
		g.FootprintM = DefaultFootprintM
	}
	if g.StrideM <= 0 {
		g.StrideM = g.FootprintM
	}
	if g.EPSG == 0 {
		epsg, why, err := gridCRS(src)
		if err != nil {
			return nil, err
		}
		g.EPSG, g.Why = epsg, why
	} else {
		g.Why = fmt.Sprintf("EPSG:%d, as asked", g.EPSG)
	}
	rings := make([]orb.Ring, len(src.Rasters))
	for i, r := range src.Rasters {
		ring, err := r.Footprint(g.EPSG, 32)
		if err != nil {
			return nil, mm.Permanentf("tiles: %s: %w", r.Field, err)
		}
		rings[i] = ring
		if i == 0 {
			g.Coverage = ring.Bound()
			continue
		}
		if !g.Coverage.Intersects(ring.Bound()) || !overlaps(rings[:i], ring) {
			return nil, mm.Permanentf("tiles: sensors do not overlap: %s (%s) shares no ground with %s", r.Field, r.Href, src.Rasters[0].Field)
		}
		g.Coverage = intersect(g.Coverage, ring.Bound())
	}
	var aois [][]orb.Polygon
	sensors := g.Coverage
	for _, a := range opts.AOIs {
		aoi, err := projectAOI(a, g.EPSG)
		if err != nil {
			return nil, err
		}
		ab := aoi[0].Bound()
		for _, p := range aoi[1:] {
			ab = ab.Union(p.Bound())
		}
		if !sensors.Intersects(ab) {
			return nil, mm.Permanentf("aoi: does not overlap the scene's coverage")
		}
		g.Coverage = intersect(g.Coverage, ab)
		aois = append(aois, aoi)
	}
	g.rings = rings
	if err := g.checkSize(opts.MaxChips); err != nil {
		return nil, err
	}
	g.Chips = g.enumerate(rings, aois)
	if len(g.Chips) == 0 && len(aois) > 0 {
		return nil, mm.Permanentf("aoi: no chip of the scene touches every area of interest")
	}
	return g, nil
}

func overlaps(prev []orb.Ring, r orb.Ring) bool {
	b := r.Bound()
	for _, p := range prev {
		if !p.Bound().Intersects(b) {
			return false
		}
	}
	return true
}

func intersect(a, b orb.Bound) orb.Bound {
	return orb.Bound{
		Min: orb.Point{math.Max(a.Min[0], b.Min[0]), math.Max(a.Min[1], b.Min[1])},
		Max: orb.Point{math.Min(a.Max[0], b.Max[0]), math.Min(a.Max[1], b.Max[1])},
	}
}

// cellRange is the columns and rows of the cells touching the coverage box.
func (g *Grid) cellRange() (c0, c1, r0, r1 int) {
	s, f := float64(g.StrideM), float64(g.FootprintM)
	c0 = int(math.Floor((g.Coverage.Min[0]-f)/s)) + 1
	c1 = int(math.Ceil(g.Coverage.Max[0]/s)) - 1
	r0 = int(math.Floor((g.Coverage.Min[1]-f)/s)) + 1
	r1 = int(math.Ceil(g.Coverage.Max[1]/s)) - 1
	return c0, c1, r0, r1
}

// checkSize refuses a grid of more than max cells (0: DefaultMaxChips),
// and a coverage that is not a finite box.
func (g *Grid) checkSize(max int) error {
	if max <= 0 {
		max = DefaultMaxChips
	}
	b := g.Coverage
	for _, v := range []float64{b.Min[0], b.Min[1], b.Max[0], b.Max[1]} {
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e9 {
			return mm.Permanentf("tiles: the scene's coverage %v in EPSG:%d is not a finite box", b, g.EPSG)
		}
	}
	c0, c1, r0, r1 := g.cellRange()
	cells := float64(c1-c0+1) * float64(r1-r0+1)
	if cells > float64(max) {
		return mm.Permanentf("tiles: the scene spans %.0f chip cells (%.0f x %.0f km), more than the limit of %d (tiles.max_chips): give an AOI, or raise the limit",
			cells, (b.Max[0]-b.Min[0])/1000, (b.Max[1]-b.Min[1])/1000, max)
	}
	return nil
}

// enumerate lists the cells touching the coverage box, every footprint and
// the AOI.
func (g *Grid) enumerate(rings []orb.Ring, aois [][]orb.Polygon) []mm.ChipID {
	c0, c1, r0, r1 := g.cellRange()
	var ids []mm.ChipID
	for row := r1; row >= r0; row-- {
		for col := c0; col <= c1; col++ {
			id := mm.ChipID{EPSG: g.EPSG, Footprint: g.FootprintM, Stride: g.StrideM, Col: col, Row: row}
			b := boundOf(id)
			if !touchesAll(b, rings) || !touchesEvery(b, aois) {
				continue
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// Inside is the share of a chip's square (any chip in the grid CRS) that
// lies inside every raster's footprint: no more of its pixels can have
// data, give or take the pixels along the footprints' edges.
func (g *Grid) Inside(id mm.ChipID) float64 {
	b := id.Bounds()
	area := (b[2] - b[0]) * (b[3] - b[1])
	share := 1.0
	for _, r := range g.rings {
		share = math.Min(share, math.Abs(ringArea(clipRing(r, b)))/area)
	}
	return share
}

// clipRing is the part of a ring inside an axis-aligned box (Sutherland-
// Hodgman: exact for the area, the ring may be concave, the box is convex).
func clipRing(r orb.Ring, b [4]float64) orb.Ring {
	pts := []orb.Point(r)
	edges := []struct {
		in  func(p orb.Point) bool
		cut func(a, c orb.Point) orb.Point
	}{
		{func(p orb.Point) bool { return p[0] >= b[0] }, func(a, c orb.Point) orb.Point { return atX(a, c, b[0]) }},
		{func(p orb.Point) bool { return p[0] <= b[2] }, func(a, c orb.Point) orb.Point { return atX(a, c, b[2]) }},
		{func(p orb.Point) bool { return p[1] >= b[1] }, func(a, c orb.Point) orb.Point { return atY(a, c, b[1]) }},
		{func(p orb.Point) bool { return p[1] <= b[3] }, func(a, c orb.Point) orb.Point { return atY(a, c, b[3]) }},
	}
	for _, e := range edges {
		if len(pts) == 0 {
			break
		}
		var out []orb.Point
		prev := pts[len(pts)-1]
		for _, p := range pts {
			switch {
			case e.in(p) && !e.in(prev):
				out = append(out, e.cut(prev, p), p)
			case e.in(p):
				out = append(out, p)
			case e.in(prev):
				out = append(out, e.cut(prev, p))
			}
			prev = p
		}
		pts = out
	}
	return orb.Ring(pts)
}

func atX(a, c orb.Point, x float64) orb.Point {
	t := (x - a[0]) / (c[0] - a[0])
	return orb.Point{x, a[1] + t*(c[1]-a[1])}
}

func atY(a, c orb.Point, y float64) orb.Point {
	t := (y - a[1]) / (c[1] - a[1])
	return orb.Point{a[0] + t*(c[0]-a[0]), y}
}

// ringArea is the signed area of a ring (shoelace), closed or not.
func ringArea(r orb.Ring) float64 {
	a := 0.0
	for i := range r {
		p, q := r[i], r[(i+1)%len(r)]
		a += p[0]*q[1] - q[0]*p[1]
	}
	return a / 2
}

// shrink keeps cells that merely touch a footprint's edge (zero shared area)
// out of the grid.
const shrink = 1e-6

func boundOf(id mm.ChipID) orb.Bound {
	b := id.Bounds()
	return orb.Bound{Min: orb.Point{b[0] + shrink, b[1] + shrink}, Max: orb.Point{b[2] - shrink, b[3] - shrink}}
}

func touchesAll(b orb.Bound, rings []orb.Ring) bool {
	for _, r := range rings {
		if !rectTouchesRing(b, r) {
			return false
		}
	}
	return true
}

func touchesEvery(b orb.Bound, aois [][]orb.Polygon) bool {
	for _, aoi := range aois {
		if !touchesAny(b, aoi) {
			return false
		}
	}
	return true
}

func touchesAny(b orb.Bound, polys []orb.Polygon) bool {
	for _, p := range polys {
		if rectTouchesPolygon(b, p) {
			return true
		}
	}
	return false
}

// gridCRS picks the NAIP's CRS when it is projected and has an EPSG code,
// otherwise the UTM zone of the centre of the sensors' common ground.
func gridCRS(src *ingest.Source) (int, string, error) {
	var common orb.Bound
	for i, r := range src.Rasters {
		ring, err := r.Footprint(4326, 8)
		if err != nil {
			return 0, "", mm.Permanentf("tiles: %s: %w", r.Field, err)
		}
		if i == 0 {
			common = ring.Bound()
		} else {
			common = intersect(common, ring.Bound())
		}
	}
	if common.Min[0] > common.Max[0] || common.Min[1] > common.Max[1] {
		return 0, "", mm.Permanentf("tiles: sensors do not overlap")
	}
	c := common.Center()
	if naip := src.SensorRasters(mm.NAIP); len(naip) > 0 {
		epsg, why, err := naip[0].GridCRS(c[0], c[1])
		if err != nil {
			return 0, "", mm.Permanentf("tiles: %s: %w", naip[0].Field, err)
		}
		return epsg, why, nil
	}
	epsg := ingest.UTMZoneEPSG(c[0], c[1])
	return epsg, fmt.Sprintf("no NAIP: the UTM zone of the scene centre on WGS 84, EPSG:%d", epsg), nil
}

// projectAOI moves the WGS84 AOI into the grid CRS, densifying its edges.
func projectAOI(g orb.Geometry, epsg int) ([]orb.Polygon, error) {
	var polys []orb.Polygon
	switch t := g.(type) {
	case orb.Polygon:
		polys = []orb.Polygon{t}
	case orb.MultiPolygon:
		polys = t
	default:
		return nil, mm.Permanentf("aoi: must be a Polygon or MultiPolygon")
	}
	tr, err := ingest.NewTransformer(4326, epsg)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	out := make([]orb.Polygon, len(polys))
	for i, p := range polys {
		for _, r := range p {
			d := densify(r, 0.001) // ~100 m
			if err := tr.Points(d); err != nil {
				return nil, mm.Permanentf("aoi: %w", err)
			}
			out[i] = append(out[i], d)
		}
	}
	return out, nil
}

// Shares splits the grid's chips among n cutters by whole blocks of
// block x block chips (CutOptions.Block), dealt in turn, so that no two
// cutters warp the same block.
func (g *Grid) Shares(n, block int) [][]mm.ChipID {
	n = max(1, n)
	shares := make([][]mm.ChipID, n)
	if len(g.Chips) == 0 {
		return shares
	}
	b := max(1, block)
	col0, row0 := g.Chips[0].Col, g.Chips[0].Row
	for _, id := range g.Chips {
		col0, row0 = min(col0, id.Col), min(row0, id.Row)
	}
	owner := map[[2]int]int{}
	for _, id := range g.Chips {
		k := [2]int{floorDiv(id.Col-col0, b), floorDiv(id.Row-row0, b)}
		w, ok := owner[k]
		if !ok {
			w = len(owner) % n
			owner[k] = w
		}
		shares[w] = append(shares[w], id)
	}
	return shares
}

// String describes the grid for logs.
func (g *Grid) String() string {
	return fmt.Sprintf("EPSG:%d %dm/%dm %d chips", g.EPSG, g.FootprintM, g.StrideM, len(g.Chips))
}
