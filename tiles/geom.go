package tiles

import (
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"
)

// rectTouchesRing reports whether the closed rectangle b and the closed
// area of ring r share at least one point.
func rectTouchesRing(b orb.Bound, r orb.Ring) bool {
	if !b.Intersects(r.Bound()) {
		return false
	}
	for _, p := range r {
		if b.Contains(p) {
			return true
		}
	}
	for _, c := range []orb.Point{b.Min, {b.Max[0], b.Min[1]}, b.Max, {b.Min[0], b.Max[1]}} {
		if planar.RingContains(r, c) {
			return true
		}
	}
	return rectTouchesRingEdges(b, r)
}

// rectInsideRing reports whether b lies wholly inside r without touching its
// boundary.
func rectInsideRing(b orb.Bound, r orb.Ring) bool {
	for _, p := range r {
		if b.Contains(p) {
			return false
		}
	}
	for _, c := range []orb.Point{b.Min, {b.Max[0], b.Min[1]}, b.Max, {b.Min[0], b.Max[1]}} {
		if !planar.RingContains(r, c) {
			return false
		}
	}
	return !rectTouchesRingEdges(b, r)
}

func rectTouchesRingEdges(b orb.Bound, r orb.Ring) bool {
	edges := [4][2]orb.Point{
		{b.Min, {b.Max[0], b.Min[1]}}, {{b.Max[0], b.Min[1]}, b.Max},
		{b.Max, {b.Min[0], b.Max[1]}}, {{b.Min[0], b.Max[1]}, b.Min},
	}
	for i := 0; i+1 < len(r); i++ {
		for _, e := range edges {
			if segmentsIntersect(r[i], r[i+1], e[0], e[1]) {
				return true
			}
		}
	}
	return false
}

// rectTouchesPolygon honours holes: a rectangle wholly inside a hole does
// not touch the polygon.
func rectTouchesPolygon(b orb.Bound, p orb.Polygon) bool {
	if len(p) == 0 || !rectTouchesRing(b, p[0]) {
		return false
	}
	for _, hole := range p[1:] {
		if rectInsideRing(b, hole) {
			return false
		}
	}
	return true
}

func cross(o, a, b orb.Point) float64 {
	return (a[0]-o[0])*(b[1]-o[1]) - (a[1]-o[1])*(b[0]-o[0])
}

func onSegment(p, q, r orb.Point) bool {
	return min(p[0], r[0]) <= q[0] && q[0] <= max(p[0], r[0]) &&
		min(p[1], r[1]) <= q[1] && q[1] <= max(p[1], r[1])
}

// segmentsIntersect reports whether closed segments p1p2 and q1q2 meet.
func segmentsIntersect(p1, p2, q1, q2 orb.Point) bool {
	d1, d2 := cross(q1, q2, p1), cross(q1, q2, p2)
	d3, d4 := cross(p1, p2, q1), cross(p1, p2, q2)
	if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
		return true
	}
	return (d1 == 0 && onSegment(q1, p1, q2)) || (d2 == 0 && onSegment(q1, p2, q2)) ||
		(d3 == 0 && onSegment(p1, q1, p2)) || (d4 == 0 && onSegment(p1, q2, p2))
}

// densify inserts points so no segment of the ring is longer than 1/n of
// the ring's bounding-box diagonal in degrees, so its projection stays close.
func densify(r orb.Ring, step float64) orb.Ring {
	out := orb.Ring{}
	for i := 0; i+1 < len(r); i++ {
		a, b := r[i], r[i+1]
		d := planar.Distance(a, b)
		n := max(1, int(d/step))
		for k := range n {
			f := float64(k) / float64(n)
			out = append(out, orb.Point{a[0] + f*(b[0]-a[0]), a[1] + f*(b[1]-a[1])})
		}
	}
	return append(out, r[len(r)-1])
}
