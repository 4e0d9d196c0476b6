package oapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/paulmach/orb"
)

// CRS84 is the only CRS the API serves (lon/lat, WGS84).
const CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"

// Paging limits.
const (
	DefaultLimit = 10
	MaxLimit     = 10000
)

// paramError is a bad query parameter: 400 with its name and why.
type paramError struct{ name, why string }

func (e *paramError) Error() string { return e.name + ": " + e.why }

// itemParams are the query parameters /items accepts.
var itemParams = map[string]bool{"f": true, "bbox": true, "bbox-crs": true, "datetime": true, "limit": true,
	"offset": true, "class": true, "scene_id": true, "min_score": true}

// parseItems reads /items query parameters into a Query; bboxes holds one
// bound, or two when the box crosses the antimeridian.
func parseItems(v url.Values, col Collection) (q Query, bboxes []orb.Bound, err error) {
	for name := range v {
		if !itemParams[name] {
			return q, nil, &paramError{name, "unknown parameter (known: bbox, bbox-crs, datetime, limit, offset, class, scene_id, min_score, f)"}
		}
		if len(v[name]) > 1 {
			return q, nil, &paramError{name, "given more than once"}
		}
	}
	q.Limit = DefaultLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return q, nil, &paramError{"limit", fmt.Sprintf("want an integer from 1 to %d, got %q", MaxLimit, s)}
		}
		q.Limit = min(n, MaxLimit)
	}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, nil, &paramError{"offset", fmt.Sprintf("want an integer >= 0, got %q", s)}
		}
		q.Offset = n
	}
	if s := v.Get("bbox-crs"); s != "" && s != CRS84 {
		return q, nil, &paramError{"bbox-crs", fmt.Sprintf("only %s is supported, got %q", CRS84, s)}
	}
	if s := v.Get("bbox"); s != "" {
		if bboxes, err = parseBBox(s); err != nil {
			return q, nil, err
		}
	}
	if s := v.Get("datetime"); s != "" {
		if col.TimeProperty == "" {
			return q, nil, &paramError{"datetime", fmt.Sprintf("collection %s has no time property", col.ID)}
		}
		if q.Start, q.End, err = parseDatetime(s); err != nil {
			return q, nil, err
		}
		q.HasTime = true
	}
	if s := v.Get("class"); s != "" {
		c, err := mm.ParseClass(s)
		if err != nil {
			return q, nil, &paramError{"class", err.Error()}
		}
		q.Class = string(c)
	}
	q.Scene = v.Get("scene_id")
	if s := v.Get("min_score"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			return q, nil, &paramError{"min_score", fmt.Sprintf("want a number from 0 to 1, got %q", s)}
		}
		q.MinScore = f
	}
	return q, bboxes, nil
}

// parseBBox reads minlon,minlat,maxlon,maxlat (or the 6-number form with
// heights). A box whose min longitude exceeds its max crosses the
// antimeridian and becomes two.
func parseBBox(s string) ([]orb.Bound, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 && len(parts) != 6 {
		return nil, &paramError{"bbox", fmt.Sprintf("want 4 numbers (minlon,minlat,maxlon,maxlat) or 6, got %d", len(parts))}
	}
	v := make([]float64, len(parts))
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, &paramError{"bbox", fmt.Sprintf("%q is not a number", p)}
		}
		v[i] = f
	}
	if len(v) == 6 {
		v = []float64{v[0], v[1], v[3], v[4]}
	}
	minx, miny, maxx, maxy := v[0], v[1], v[2], v[3]
	switch {
	case minx < -180 || minx > 180 || maxx < -180 || maxx > 180:
		return nil, &paramError{"bbox", "longitudes must lie in [-180, 180] (lon/lat order, CRS84)"}
	case miny < -90 || miny > 90 || maxy < -90 || maxy > 90:
		return nil, &paramError{"bbox", "latitudes must lie in [-90, 90] (lon/lat order, CRS84)"}
	case miny > maxy:
		return nil, &paramError{"bbox", "min latitude above max latitude"}
	}
	if minx > maxx {
		return []orb.Bound{
			{Min: orb.Point{minx, miny}, Max: orb.Point{180, maxy}},
			{Min: orb.Point{-180, miny}, Max: orb.Point{maxx, maxy}},
		}, nil
	}
	return []orb.Bound{{Min: orb.Point{minx, miny}, Max: orb.Point{maxx, maxy}}}, nil
}

// parseDatetime reads an instant or an interval START/END with ".." or ""
// for an open end. A date alone means the whole (UTC) day.
func parseDatetime(s string) (start, end time.Time, err error) {
	one := func(p string, isEnd bool) (time.Time, error) {
		if p == "" || p == ".." {
			return time.Time{}, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, p); err == nil {
			return t, nil
		}
		if d, err := time.Parse("2006-01-02", p); err == nil {
			if isEnd {
				return d.Add(24*time.Hour - time.Nanosecond), nil
			}
			return d, nil
		}
		return time.Time{}, &paramError{"datetime", fmt.Sprintf("%q is not an RFC 3339 date-time or date", p)}
	}
	a, b, interval := strings.Cut(s, "/")
	if !interval {
		if start, err = one(a, false); err != nil {
			return
		}
		if a == ".." || a == "" {
			return start, end, &paramError{"datetime", "an instant cannot be open"}
		}
		if end, err = one(a, true); err != nil {
			return
		}
		return start, end, nil
	}
	if (a == "" || a == "..") && (b == "" || b == "..") {
		return start, end, &paramError{"datetime", "an interval needs at least one end"}
	}
	if start, err = one(a, false); err != nil {
		return
	}
	if end, err = one(b, true); err != nil {
		return
	}
	if !start.IsZero() && !end.IsZero() && end.Before(start) {
		return start, end, &paramError{"datetime", "the interval ends before it starts"}
	}
	return start, end, nil
}
