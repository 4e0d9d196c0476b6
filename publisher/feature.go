package publisher

import (
	"sort"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/planar"
)

// Feature is a detection as an RFC 7946 Feature: the chip footprint as a
// counter-clockwise, closed lon/lat Polygon with the design's properties.
func Feature(d mm.Detection) *geojson.Feature {
	f := geojson.NewFeature(ccw(d.Footprint))
	f.ID = d.ID
	sensors := make([]string, len(d.Sensors))
	for i, s := range d.Sensors {
		sensors[i] = string(s)
	}
	scores := map[string]float64{}
	for c, v := range d.Scores.Map() {
		scores[string(c)] = round(v)
	}
	f.Properties = geojson.Properties{
		"class":          string(d.Class),
		"score":          round(d.Score),
		"scores":         scores,
		"scene_id":       d.SceneID,
		"chip_id":        d.ChipID.String(),
		"acquired":       timeOrNil(d.Acquired),
		"model":          d.Model,
		"sensors":        sensors,
		"valid_fraction": round(d.ValidFraction),
		"cloud_fraction": round(d.CloudFraction),
		"detected_at":    d.DetectedAt.UTC().Format(time.RFC3339),
	}
	return f
}

// SiteFeature is a site as a Point Feature with its bbox.
func SiteFeature(s mm.Site) *geojson.Feature {
	f := geojson.NewFeature(s.Center)
	f.ID = s.ID
	f.BBox = geojson.NewBBox(s.Bound)
	f.Properties = geojson.Properties{
		"class":     string(s.Class),
		"max_score": round(s.MaxScore),
		"chips":     s.Chips,
		"scene_ids": s.Scenes,
		"n_chips":   len(s.Chips),
	}
	return f
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

// round keeps 4 decimals: scores and fractions need no more.
func round(v float64) float64 { return float64(int64(v*1e4+0.5)) / 1e4 }

// ccw returns the polygon with a closed, counter-clockwise exterior ring
// and clockwise holes, as RFC 7946 asks.
func ccw(p orb.Polygon) orb.Polygon {
	out := make(orb.Polygon, len(p))
	for i, r := range p {
		r = append(orb.Ring(nil), r...)
		if len(r) > 0 && r[0] != r[len(r)-1] {
			r = append(r, r[0])
		}
		if a := planar.Area(r); (i == 0 && a < 0) || (i > 0 && a > 0) {
			r.Reverse()
		}
		out[i] = r
	}
	return out
}

// Probe is a chip scored only to place a site better: shifted from a
// detection's chip, it joins that detection's site for the site's centre
// but is not a detection itself.
type Probe struct {
	Parent    string // the detection's id
	Detection mm.Detection
}

// Sites merges the detections of each class whose footprints overlap or
// touch into sites, in a stable order (class, then first chip id). A
// site's centre is the score-weighted centre of its chips and of the
// positive probes of its detections.
func Sites(dets []mm.Detection, probes ...Probe) []mm.Site {
	byParent := map[string][]mm.Detection{}
	for _, p := range probes {
		byParent[p.Parent] = append(byParent[p.Parent], p.Detection)
	}
	byClass := map[mm.Class][]mm.Detection{}
	for _, d := range dets {
		byClass[d.Class] = append(byClass[d.Class], d)
	}
	var sites []mm.Site
	for _, c := range mm.Classes {
		ds := byClass[c]
		parent := make([]int, len(ds))
		for i := range parent {
			parent[i] = i
		}
		var find func(int) int
		find = func(i int) int {
			for parent[i] != i {
				parent[i] = parent[parent[i]]
				i = parent[i]
			}
			return i
		}
		bounds := make([]orb.Bound, len(ds))
		for i, d := range ds {
			bounds[i] = d.Footprint.Bound().Pad(1e-9) // touching edges count
		}
		for i := range ds {
			for j := i + 1; j < len(ds); j++ {
				if bounds[i].Intersects(bounds[j]) {
					parent[find(i)] = find(j)
				}
			}
		}
		groups := map[int][]mm.Detection{}
		for i, d := range ds {
			groups[find(i)] = append(groups[find(i)], d)
		}
		for _, g := range groups {
			var extra []mm.Detection
			for _, d := range g {
				extra = append(extra, byParent[d.ID]...)
			}
			sites = append(sites, site(c, g, extra))
		}
	}
	sort.Slice(sites, func(i, j int) bool { return sites[i].ID < sites[j].ID })
	return sites
}

func site(c mm.Class, g, probes []mm.Detection) mm.Site {
	s := mm.Site{Class: c}
	var wx, wy, w float64
	for _, p := range probes {
		ctr := p.Footprint.Bound().Center()
		wx += p.Score * ctr[0]
		wy += p.Score * ctr[1]
		w += p.Score
	}
	chips, scenes := map[string]bool{}, map[string]bool{}
	for i, d := range g {
		b := d.Footprint.Bound()
		if i == 0 {
			s.Bound = b
		} else {
			s.Bound = s.Bound.Union(b)
		}
		ctr := b.Center()
		wx += d.Score * ctr[0]
		wy += d.Score * ctr[1]
		w += d.Score
		s.MaxScore = max(s.MaxScore, d.Score)
		chips[d.ChipID.String()] = true
		scenes[d.SceneID] = true
	}
	s.Center = orb.Point{wx / w, wy / w}
	for k := range chips {
		s.Chips = append(s.Chips, k)
	}
	for k := range scenes {
		s.Scenes = append(s.Scenes, k)
	}
	sort.Strings(s.Chips)
	sort.Strings(s.Scenes)
	s.ID = string(c) + "/" + s.Chips[0]
	return s
}
