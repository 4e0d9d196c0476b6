package feed

import (
	"math"
	"sort"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"
)

// Pairing rules: which Items of the other sensors go with a primary Item.
type Pairing struct {
	Window   time.Duration // Sentinel-2 within this of the primary's date (default 30 days)
	S1Window time.Duration // Sentinel-1 within this (default 30 days)
	MaxCloud float64       // Sentinel-2 Items cloudier than this (percent) are not used; 0: no limit
}

func (p Pairing) window(s mm.Sensor) time.Duration {
	w := p.Window
	if s == mm.Sentinel1 {
		w = p.S1Window
	}
	if w <= 0 {
		w = 30 * 24 * time.Hour
	}
	return w
}

// Reasons a primary Item is not paired, as counted and logged.
const (
	ReasonNoCandidates = "no_items_in_window"    // none of that sensor near enough in time and place
	ReasonNotCovered   = "footprint_not_covered" // together they leave part of the footprint uncovered
)

// samples are points spread over a footprint: a pairing covers the
// footprint when every sample lies in some chosen Item.
func samples(g orb.Geometry) []orb.Point {
	b := g.Bound()
	const n = 9
	var pts []orb.Point
	for i := range n {
		for j := range n {
			p := orb.Point{b.Min[0] + (float64(i)+0.5)/n*(b.Max[0]-b.Min[0]), b.Min[1] + (float64(j)+0.5)/n*(b.Max[1]-b.Min[1])}
			if contains(g, p) {
				pts = append(pts, p)
			}
		}
	}
	if len(pts) == 0 {
		pts = append(pts, b.Center())
	}
	return pts
}

func contains(g orb.Geometry, p orb.Point) bool {
	switch g := g.(type) {
	case orb.Polygon:
		return planar.PolygonContains(g, p)
	case orb.MultiPolygon:
		return planar.MultiPolygonContains(g, p)
	}
	return g.Bound().Contains(p)
}

// choose picks Items of one sensor for a primary footprint: those within
// the time window that touch it, best first (least cloud, then nearest in
// time, for Sentinel-2; nearest in time for Sentinel-1); the best alone if
// it covers the footprint, else as few as cover it together. The result is
// ordered best last, so a mosaic draws the best on top.
func choose(primary ingest.Item, cands []ingest.Item, s mm.Sensor, p Pairing) ([]ingest.Item, string) {
	pts := samples(primary.Footprint)
	w := p.window(s)
	type cand struct {
		it   ingest.Item
		dt   time.Duration
		hits []bool
	}
	var cs []cand
	for _, it := range cands {
		dt := it.Acquired.Sub(primary.Acquired).Abs()
		if dt > w || !it.Footprint.Bound().Intersects(primary.Footprint.Bound()) {
			continue
		}
		if s == mm.Sentinel2 && p.MaxCloud > 0 && !math.IsNaN(it.CloudCover) && it.CloudCover > p.MaxCloud {
			continue
		}
		c := cand{it: it, dt: dt, hits: make([]bool, len(pts))}
		any := false
		for i, pt := range pts {
			c.hits[i] = contains(it.Footprint, pt)
			any = any || c.hits[i]
		}
		if any {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil, ReasonNoCandidates
	}
	cloud := func(c cand) float64 {
		if math.IsNaN(c.it.CloudCover) {
			return 50 // unknown: neither clear nor cloudy
		}
		return c.it.CloudCover
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if s == mm.Sentinel2 && cloud(cs[i]) != cloud(cs[j]) {
			return cloud(cs[i]) < cloud(cs[j])
		}
		if cs[i].dt != cs[j].dt {
			return cs[i].dt < cs[j].dt
		}
		return cs[i].it.ID < cs[j].it.ID
	})
	covered := make([]bool, len(pts))
	var chosen []ingest.Item
	for _, c := range cs {
		adds := false
		for i, h := range c.hits {
			if h && !covered[i] {
				adds = true
			}
		}
		if !adds {
			continue
		}
		chosen = append(chosen, c.it)
		for i, h := range c.hits {
			covered[i] = covered[i] || h
		}
		done := true
		for _, v := range covered {
			done = done && v
		}
		if done {
			for i, j := 0, len(chosen)-1; i < j; i, j = i+1, j-1 { // best last
				chosen[i], chosen[j] = chosen[j], chosen[i]
			}
			return chosen, ""
		}
	}
	return nil, ReasonNotCovered
}
