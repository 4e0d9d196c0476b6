// Package oapi serves detections and sites over OGC API - Features, Part 1
// Core with GeoJSON (and HTML for browsers): a landing page, conformance,
// an OpenAPI document, the collections, and their items with bbox,
// datetime, limit/offset paging and property filters.
//
// Features come from a Store that the daemon fills from the detections
// stream; the package sees only GeoJSON bytes, never the broker.
package oapi

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/planar"
)

// Collection describes one collection of a Store.
type Collection struct {
	ID          string
	Title       string
	Description string
	// TimeProperty is the feature property (RFC 3339) that datetime
	// queries and the temporal extent use; "" for none.
	TimeProperty string
	// ScoreProperty is the property min_score filters on.
	ScoreProperty string
	// Properties is the JSON Schema of the features' properties, served
	// at /collections/{id}/schema so that clients type their fields.
	Properties map[string]any
}

func str(format string) map[string]any {
	if format == "" {
		return map[string]any{"type": "string"}
	}
	return map[string]any{"type": "string", "format": format}
}

var (
	num     = map[string]any{"type": "number"}
	strList = map[string]any{"type": "array", "items": map[string]any{"type": "string"}}
)

// Collections of the daemon: detections (chip footprints) and sites.
var (
	Detections = Collection{ID: "detections", Title: "Detections",
		Description:  "Chips scored at or above their class's threshold: the 720 m chip footprint as a polygon, with all six class scores.",
		TimeProperty: "acquired", ScoreProperty: "score",
		Properties: map[string]any{
			"class": str(""), "score": num, "scene_id": str(""), "chip_id": str(""), "acquired": str("date-time"),
			"model": str(""), "sensors": strList, "valid_fraction": num, "cloud_fraction": num, "detected_at": str("date-time"),
			"scores": map[string]any{"type": "object", "description": "all six class scores by class id"},
		}}
	Sites = Collection{ID: "sites", Title: "Sites",
		Description:   "Facilities: overlapping or touching positive chips of one class merged, at their score-weighted centre.",
		ScoreProperty: "max_score",
		Properties: map[string]any{
			"class": str(""), "max_score": num, "chips": strList, "scene_ids": strList, "n_chips": map[string]any{"type": "integer"},
		}}
)

// entry is one stored feature and what queries look at.
type entry struct {
	id    string
	raw   json.RawMessage // the feature as it arrived
	geom  orb.Geometry
	bound orb.Bound
	t     time.Time // zero when the feature has no time
	class string
	scene []string // scene_id, or a site's scene_ids
	score float64
	at    time.Time // when it was published (Expire drops by it)
}

// collection holds one collection's features in arrival order, with an
// index by id and a grid index by place.
type collection struct {
	meta  Collection
	items []*entry
	byID  map[string]int
	grid  map[cell][]int
	wide  []int // features over more than wideCells cells: looked at by every bbox query
	bound orb.Bound
	hasB  bool
	tmin  time.Time
	tmax  time.Time
}

// The grid index covers the world in cellDeg cells. Coordinates beyond it
// are clamped to its edge (NaN to the far edge), so a cell range never
// holds more than the world's (1441 x 721) cells whatever the bound, from
// a query or from a feature.
const (
	cellDeg  = 0.25
	maxCellX = 180.0
	maxCellY = 90.0
	// wideCells bounds the cells one feature is indexed in: a larger one
	// goes in collection.wide, so a huge geometry costs one entry, not a
	// million.
	wideCells = 4096
)

type cell struct{ x, y int }

// cellRange is the cells from (x0, y0) to (x1, y1), inclusive.
type cellRange struct{ x0, y0, x1, y1 int }

func rangeOf(b orb.Bound) cellRange {
	return cellRange{cellIndex(b.Min[0], maxCellX, -maxCellX), cellIndex(b.Min[1], maxCellY, -maxCellY),
		cellIndex(b.Max[0], maxCellX, maxCellX), cellIndex(b.Max[1], maxCellY, maxCellY)}
}

// cellIndex is the cell holding v, clamped to [-limit, limit]; NaN counts
// as ifNaN (min and max builtins would pass NaN on, and int(NaN) is
// anything).
func cellIndex(v, limit, ifNaN float64) int {
	if math.IsNaN(v) {
		v = ifNaN
	}
	return int(math.Floor(max(-limit, min(limit, v)) / cellDeg))
}

func (r cellRange) count() int {
	if r.x1 < r.x0 || r.y1 < r.y0 {
		return 0
	}
	return (r.x1 - r.x0 + 1) * (r.y1 - r.y0 + 1)
}

func (r cellRange) has(k cell) bool {
	return r.x0 <= k.x && k.x <= r.x1 && r.y0 <= k.y && k.y <= r.y1
}

func (r cellRange) each(f func(cell)) {
	for x := r.x0; x <= r.x1; x++ {
		for y := r.y0; y <= r.y1; y++ {
			f(cell{x, y})
		}
	}
}

// Store is an in-memory, spatially indexed set of features per collection,
// safe for concurrent use. Subscribers hear every feature added.
type Store struct {
	mu    sync.RWMutex
	cols  map[string]*collection
	order []string
	subs  map[chan Update]struct{}
}

// Update is a feature added to (or replaced in) a collection.
type Update struct {
	Collection string
	Feature    json.RawMessage
}

// NewStore makes a store with these collections.
func NewStore(cols ...Collection) *Store {
	s := &Store{cols: map[string]*collection{}, subs: map[chan Update]struct{}{}}
	for _, c := range cols {
		s.cols[c.ID] = &collection{meta: c, byID: map[string]int{}, grid: map[cell][]int{}}
		s.order = append(s.order, c.ID)
	}
	return s
}

// Add stores a GeoJSON Feature in a collection, published now.
func (s *Store) Add(col string, feature []byte) error { return s.AddAt(col, feature, time.Now()) }

// AddAt stores a GeoJSON Feature published at the given time; a feature
// with the id of one already there replaces it in place.
func (s *Store) AddAt(col string, feature []byte, at time.Time) error {
	f, err := geojson.UnmarshalFeature(feature)
	if err != nil {
		return fmt.Errorf("oapi: %s: not a GeoJSON feature: %w", col, err)
	}
	id := fmt.Sprint(f.ID)
	if f.ID == nil || id == "" {
		return fmt.Errorf("oapi: %s: feature without an id", col)
	}
	if f.Geometry == nil {
		return fmt.Errorf("oapi: %s: feature %s without geometry", col, id)
	}
	s.mu.Lock()
	c, ok := s.cols[col]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("oapi: no collection %q", col)
	}
	e := &entry{id: id, raw: append(json.RawMessage(nil), feature...), geom: f.Geometry, bound: f.Geometry.Bound(), at: at}
	e.class, _ = f.Properties["class"].(string)
	if v, ok := f.Properties[c.meta.ScoreProperty].(float64); ok {
		e.score = v
	}
	switch v := f.Properties["scene_id"].(type) {
	case string:
		e.scene = []string{v}
	}
	if v, ok := f.Properties["scene_ids"].([]any); ok {
		for _, x := range v {
			if s, ok := x.(string); ok {
				e.scene = append(e.scene, s)
			}
		}
	}
	if c.meta.TimeProperty != "" {
		if v, ok := f.Properties[c.meta.TimeProperty].(string); ok {
			e.t, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	if i, ok := c.byID[id]; ok {
		c.unindex(i, c.items[i])
		c.items[i] = e
		c.index(i, e)
	} else {
		c.insert(e)
	}
	c.extend(e)
	subs := make([]chan Update, 0, len(s.subs))
	for ch := range s.subs {
		subs = append(subs, ch)
	}
	s.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- Update{Collection: col, Feature: e.raw}:
		default: // a subscriber that does not keep up misses updates, never blocks the store
		}
	}
	return nil
}

// insert appends an entry and indexes it.
func (c *collection) insert(e *entry) {
	i := len(c.items)
	c.items = append(c.items, e)
	c.byID[e.id] = i
	c.index(i, e)
}

// index puts item i in the cells of its bound, or in wide.
func (c *collection) index(i int, e *entry) {
	r := rangeOf(e.bound)
	if r.count() > wideCells {
		c.wide = append(c.wide, i)
		return
	}
	r.each(func(k cell) { c.grid[k] = append(c.grid[k], i) })
}

// unindex undoes index.
func (c *collection) unindex(i int, e *entry) {
	r := rangeOf(e.bound)
	if r.count() > wideCells {
		c.wide = remove(c.wide, i)
		return
	}
	r.each(func(k cell) {
		if c.grid[k] = remove(c.grid[k], i); len(c.grid[k]) == 0 {
			delete(c.grid, k)
		}
	})
}

// extend grows the collection's extents by an entry.
func (c *collection) extend(e *entry) {
	if c.hasB {
		c.bound = c.bound.Union(e.bound)
	} else {
		c.bound, c.hasB = e.bound, true
	}
	if !e.t.IsZero() {
		if c.tmin.IsZero() || e.t.Before(c.tmin) {
			c.tmin = e.t
		}
		if e.t.After(c.tmax) {
			c.tmax = e.t
		}
	}
}

// Expire drops the features published before the given time (the stream
// ages them out too), keeping the others in order, and returns how many
// it dropped.
func (s *Store) Expire(before time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	dropped := 0
	for _, c := range s.cols {
		keep := c.items[:0:0]
		for _, e := range c.items {
			if e.at.Before(before) {
				dropped++
				continue
			}
			keep = append(keep, e)
		}
		if len(keep) == len(c.items) {
			continue
		}
		*c = collection{meta: c.meta, byID: map[string]int{}, grid: map[cell][]int{}}
		for _, e := range keep {
			c.insert(e)
			c.extend(e)
		}
	}
	return dropped
}

func remove(s []int, v int) []int {
	for k, x := range s {
		if x == v {
			return append(s[:k], s[k+1:]...)
		}
	}
	return s
}

// Subscribe returns a channel of updates (buffered; a slow reader misses
// some) and a function that ends the subscription.
func (s *Store) Subscribe() (<-chan Update, func()) {
	ch := make(chan Update, 256)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}
}

// Query selects features of a collection.
type Query struct {
	BBoxes   []orb.Bound // features intersecting any of them (lon/lat); none: anywhere
	Start    time.Time   // zero: open
	End      time.Time   // zero: open
	HasTime  bool        // a datetime was given
	Class    string
	Scene    string
	MinScore float64
	Limit    int
	Offset   int
}

// Page is what a query found: the features of this page and how many
// match in all.
type Page struct {
	Matched  int
	Features []json.RawMessage
}

// Info is a collection's description and its data's extents.
type Info struct {
	Collection
	Count     int
	Bound     orb.Bound // valid when Count > 0
	TMin      time.Time // zero when no feature has a time
	TMax      time.Time
	Populated bool
}

// Collections lists the collections in order.
func (s *Store) Collections() []Info {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Info, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.info(s.cols[id]))
	}
	return out
}

// Collection describes one collection.
func (s *Store) Collection(id string) (Info, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cols[id]
	if !ok {
		return Info{}, false
	}
	return s.info(c), true
}

func (s *Store) info(c *collection) Info {
	return Info{Collection: c.meta, Count: len(c.items), Bound: c.bound, TMin: c.tmin, TMax: c.tmax, Populated: c.hasB}
}

// Feature returns one feature by id.
func (s *Store) Feature(col, id string) (json.RawMessage, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cols[col]
	if !ok {
		return nil, false
	}
	i, ok := c.byID[id]
	if !ok {
		return nil, false
	}
	return c.items[i].raw, true
}

// Query runs q on a collection, in arrival order (so offsets stay valid
// while features are added).
func (s *Store) Query(col string, q Query) (Page, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cols[col]
	if !ok {
		return Page{}, fmt.Errorf("oapi: no collection %q", col)
	}
	for _, b := range q.BBoxes {
		// every comparison with NaN fails, so such a box would match everything
		if math.IsNaN(b.Min[0]) || math.IsNaN(b.Min[1]) || math.IsNaN(b.Max[0]) || math.IsNaN(b.Max[1]) {
			return Page{}, fmt.Errorf("oapi: query %s: bbox %v holds NaN", col, b)
		}
	}
	candidates := c.candidates(q.BBoxes)
	var p Page
	for _, i := range candidates {
		e := c.items[i]
		if !q.match(e) {
			continue
		}
		if p.Matched >= q.Offset && len(p.Features) < q.Limit {
			p.Features = append(p.Features, e.raw)
		}
		p.Matched++
	}
	return p, nil
}

// candidates are the items, in order, that may meet one of the boxes: from
// the grid index when the boxes cover fewer cells than there are items,
// else all. The walk is bounded by the world's cells (rangeOf clamps) and
// by the occupied ones: a box with more cells than the index holds walks
// the index instead.
func (c *collection) candidates(boxes []orb.Bound) []int {
	ranges := make([]cellRange, len(boxes))
	cells := 0
	for k, b := range boxes {
		ranges[k] = rangeOf(b)
		cells += ranges[k].count()
	}
	if len(boxes) == 0 || cells >= len(c.items) {
		all := make([]int, len(c.items))
		for i := range all {
			all[i] = i
		}
		return all
	}
	var out []int
	seen := map[int]bool{}
	add := func(is []int) {
		for _, i := range is {
			if !seen[i] {
				seen[i] = true
				out = append(out, i)
			}
		}
	}
	for _, r := range ranges {
		if r.count() > len(c.grid) {
			for k, is := range c.grid {
				if r.has(k) {
					add(is)
				}
			}
			continue
		}
		r.each(func(k cell) { add(c.grid[k]) })
	}
	add(c.wide)
	sort.Ints(out)
	return out
}

func (q Query) match(e *entry) bool {
	if len(q.BBoxes) > 0 {
		hit := false
		for _, b := range q.BBoxes {
			hit = hit || (b.Intersects(e.bound) && intersects(e.geom, b))
		}
		if !hit {
			return false
		}
	}
	if q.HasTime {
		if e.t.IsZero() || (!q.Start.IsZero() && e.t.Before(q.Start)) || (!q.End.IsZero() && e.t.After(q.End)) {
			return false
		}
	}
	if q.Class != "" && e.class != q.Class {
		return false
	}
	if q.Scene != "" {
		found := false
		for _, s := range e.scene {
			found = found || s == q.Scene
		}
		if !found {
			return false
		}
	}
	return e.score >= q.MinScore
}

// intersects reports whether a geometry and a box share any point (the
// box's edges included), exactly: a polygon's footprint is not its bounds.
func intersects(g orb.Geometry, b orb.Bound) bool {
	switch g := g.(type) {
	case orb.Point:
		return b.Contains(g)
	case orb.MultiPoint:
		for _, p := range g {
			if b.Contains(p) {
				return true
			}
		}
		return false
	case orb.LineString:
		return lineHits(g, b)
	case orb.Polygon:
		return polygonHits(g, b)
	case orb.MultiPolygon:
		for _, p := range g {
			if polygonHits(p, b) {
				return true
			}
		}
		return false
	}
	return b.Intersects(g.Bound()) // other types: by their bounds
}

func polygonHits(p orb.Polygon, b orb.Bound) bool {
	if len(p) == 0 {
		return false
	}
	for _, r := range p {
		if lineHits(orb.LineString(r), b) {
			return true // a vertex inside, or an edge crossing the box
		}
	}
	// no boundary meets the box: it is wholly inside the polygon, or out
	return planar.PolygonContains(p, b.Min)
}

// lineHits: a vertex in the box, or a segment crossing one of its edges.
func lineHits(l orb.LineString, b orb.Bound) bool {
	for _, pt := range l {
		if b.Contains(pt) {
			return true
		}
	}
	corners := [4]orb.Point{b.Min, {b.Max[0], b.Min[1]}, b.Max, {b.Min[0], b.Max[1]}}
	for i := 1; i < len(l); i++ {
		for k := range 4 {
			if segmentsCross(l[i-1], l[i], corners[k], corners[(k+1)%4]) {
				return true
			}
		}
	}
	return false
}

// segmentsCross reports whether segments ab and cd share a point.
func segmentsCross(a, b, c, d orb.Point) bool {
	o := func(p, q, r orb.Point) float64 { return (q[0]-p[0])*(r[1]-p[1]) - (q[1]-p[1])*(r[0]-p[0]) }
	on := func(p, q, r orb.Point) bool { // r on segment pq, given collinear
		return min(p[0], q[0]) <= r[0] && r[0] <= max(p[0], q[0]) && min(p[1], q[1]) <= r[1] && r[1] <= max(p[1], q[1])
	}
	d1, d2, d3, d4 := o(c, d, a), o(c, d, b), o(a, b, c), o(a, b, d)
	if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
		return true
	}
	return (d1 == 0 && on(c, d, a)) || (d2 == 0 && on(c, d, b)) || (d3 == 0 && on(a, b, c)) || (d4 == 0 && on(a, b, d))
}
