package oapi

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/paulmach/orb"
)

// CRS84 is the only CRS the API serves (lon/lat, WGS84).
const CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"

// Paging limits. A limit above MaxLimit is served as MaxLimit (the
// standard lets a server lower it); an offset above MaxOffset is refused,
// as no store held in memory has that many features and sums like
// offset+1 must not overflow.
const (
	DefaultLimit = 10
	MaxLimit     = 10000
	MaxOffset    = 1_000_000_000
)

// paramError is a bad query parameter (or header): 400 with its name and why.
type paramError struct{ name, why string }

func (e *paramError) Error() string { return e.name + ": " + e.why }

// quote shows a client's value in an error, cut so that a huge query
// string is not echoed whole.
func quote(s string) string {
	const shown = 64
	if len(s) > shown {
		return fmt.Sprintf("%q…", s[:shown])
	}
	return fmt.Sprintf("%q", s)
}

// parseQuery reads a raw query string as url.ParseQuery does, but fails
// on a malformed pair (a bad %-escape, a ';') naming its key, where
// r.URL.Query() would drop it silently.
func parseQuery(raw string) (url.Values, error) {
	v := url.Values{}
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		k, val, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, &paramError{quote(k), "malformed parameter name: " + err.Error()}
		}
		if strings.Contains(k, ";") {
			return nil, &paramError{key, "';' is not a parameter separator (use '&')"}
		}
		value, err := url.QueryUnescape(val)
		if err != nil {
			return nil, &paramError{key, "malformed value: " + err.Error()}
		}
		if strings.Contains(val, ";") {
			return nil, &paramError{key, "';' is not a parameter separator (use '&'; escape it as %3B in a value)"}
		}
		v[key] = append(v[key], value)
	}
	return v, nil
}

// itemParams are the query parameters /items accepts.
var itemParams = map[string]bool{"f": true, "bbox": true, "bbox-crs": true, "datetime": true, "limit": true,
	"offset": true, "class": true, "scene_id": true, "min_score": true}

const itemParamList = "bbox, bbox-crs, datetime, limit, offset, class, scene_id, min_score, f"

// checkNames refuses parameters not in known and any given twice.
func checkNames(v url.Values, known map[string]bool, list string) error {
	for name := range v {
		if !known[name] {
			shown := name
			if shown == "" {
				shown = `""`
			}
			return &paramError{shown, "unknown parameter (known: " + list + ")"}
		}
		if len(v[name]) > 1 {
			return &paramError{name, "given more than once"}
		}
	}
	return nil
}

// parseItems reads /items query parameters into a Query; its BBoxes hold
// one bound, or two when the box crosses the antimeridian. An empty value
// counts as absent.
func parseItems(v url.Values, col Collection) (q Query, err error) {
	if err := checkNames(v, itemParams, itemParamList); err != nil {
		return q, err
	}
	if q.Limit, q.Offset, err = parsePaging(v); err != nil {
		return q, err
	}
	if s := v.Get("bbox-crs"); s != "" && s != CRS84 {
		return q, &paramError{"bbox-crs", fmt.Sprintf("only %s is supported, got %s", CRS84, quote(s))}
	}
	if s := v.Get("bbox"); s != "" {
		if q.BBoxes, err = parseBBox(s); err != nil {
			return q, err
		}
	}
	if s := v.Get("datetime"); s != "" {
		if col.TimeProperty == "" {
			return q, &paramError{"datetime", fmt.Sprintf("collection %s has no time property", col.ID)}
		}
		if q.Start, q.End, err = parseDatetime(s); err != nil {
			return q, err
		}
		q.HasTime = true
	}
	if s := v.Get("class"); s != "" {
		c, err := mm.ParseClass(s)
		if err != nil {
			return q, &paramError{"class", fmt.Sprintf("unknown class %s (want one of %v)", quote(s), mm.Classes)}
		}
		q.Class = string(c)
	}
	if s := v.Get("scene_id"); s != "" {
		if !mm.ValidSceneID(s) {
			return q, &paramError{"scene_id", fmt.Sprintf("want 1–128 of A-Z a-z 0-9 . _ - (a scene id), got %s", quote(s))}
		}
		q.Scene = s
	}
	if s := v.Get("min_score"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		// !(f >= 0 && f <= 1) also refuses NaN, which every comparison fails
		if err != nil || !(f >= 0 && f <= 1) {
			return q, &paramError{"min_score", fmt.Sprintf("want a number from 0 to 1, got %s", quote(s))}
		}
		q.MinScore = f
	}
	return q, nil
}

// parsePaging reads limit (1.., served at most MaxLimit) and offset
// (0..MaxOffset).
func parsePaging(v url.Values) (limit, offset int, err error) {
	limit = DefaultLimit
	if s := v.Get("limit"); s != "" {
		n, err := strconv.ParseUint(s, 10, 63)
		if (err != nil && !errors.Is(err, strconv.ErrRange)) || n < 1 {
			return 0, 0, &paramError{"limit", fmt.Sprintf("want an integer from 1 to %d, got %s", MaxLimit, quote(s))}
		}
		limit = int(min(n, MaxLimit)) // a range error leaves n at its maximum: served as MaxLimit
	}
	if s := v.Get("offset"); s != "" {
		n, err := strconv.ParseUint(s, 10, 63)
		if err != nil || n > MaxOffset {
			return 0, 0, &paramError{"offset", fmt.Sprintf("want an integer from 0 to %d, got %s", MaxOffset, quote(s))}
		}
		offset = int(n)
	}
	return limit, offset, nil
}

// parseBBox reads minlon,minlat,maxlon,maxlat (or the 6-number form with
// heights). A box whose min longitude exceeds its max crosses the
// antimeridian and becomes two. Every number must be finite.
func parseBBox(s string) ([]orb.Bound, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 && len(parts) != 6 {
		return nil, &paramError{"bbox", fmt.Sprintf("want 4 numbers (minlon,minlat,maxlon,maxlat) or 6, got %d", len(parts))}
	}
	v := make([]float64, len(parts))
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, &paramError{"bbox", fmt.Sprintf("%s is not a finite number", quote(p))}
		}
		v[i] = f
	}
	if len(v) == 6 {
		if v[2] > v[5] {
			return nil, &paramError{"bbox", "min height above max height"}
		}
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
		return time.Time{}, &paramError{"datetime", fmt.Sprintf("%s is not an RFC 3339 date-time or date", quote(p))}
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
