package ingest

import (
	"fmt"
	mm "github.com/methanemap/methanemap"
	"math"

	"github.com/airbusgeo/godal"
	"github.com/paulmach/orb"
)

// Transformer converts coordinates between two CRSs with GDAL/OSR.
// Geographic CRSs take longitude first. It is not safe for concurrent use.
type Transformer struct {
	trn      *godal.Transform
	src, dst *godal.SpatialRef
}

// NewTransformer converts from EPSG code from to EPSG code to.
func NewTransformer(from, to int) (*Transformer, error) {
	register()
	src, err := godal.NewSpatialRefFromEPSG(from)
	if err != nil {
		return nil, fmt.Errorf("ingest: EPSG:%d: %w", from, err)
	}
	return newTransformer(src, to)
}

func newTransformer(src *godal.SpatialRef, to int) (*Transformer, error) {
	dst, err := godal.NewSpatialRefFromEPSG(to)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("ingest: EPSG:%d: %w", to, err)
	}
	trn, err := godal.NewTransform(src, dst)
	if err != nil {
		src.Close()
		dst.Close()
		return nil, fmt.Errorf("ingest: transform to EPSG:%d: %w", to, err)
	}
	return &Transformer{trn: trn, src: src, dst: dst}, nil
}

// Points transforms points in place.
func (t *Transformer) Points(pts []orb.Point) error {
	if len(pts) == 0 {
		return nil
	}
	xs, ys := make([]float64, len(pts)), make([]float64, len(pts))
	for i, p := range pts {
		xs[i], ys[i] = p[0], p[1]
	}
	ok := make([]bool, len(pts))
	if err := t.trn.TransformEx(xs, ys, nil, ok); err != nil {
		return fmt.Errorf("ingest: transform: %w", err)
	}
	for i := range pts {
		if !ok[i] || math.IsInf(xs[i], 0) || math.IsNaN(xs[i]) {
			return fmt.Errorf("ingest: point %v cannot be transformed", pts[i])
		}
		pts[i] = orb.Point{xs[i], ys[i]}
	}
	return nil
}

// Point transforms one point.
func (t *Transformer) Point(p orb.Point) (orb.Point, error) {
	pts := []orb.Point{p}
	err := t.Points(pts)
	return pts[0], err
}

// Close releases the OSR objects.
func (t *Transformer) Close() {
	t.trn.Close()
	t.src.Close()
	t.dst.Close()
}

// UTMZoneEPSG returns the EPSG code of the WGS84 UTM zone holding lon/lat
// (326zz north of the equator, 327zz south). Norway's and Svalbard's zone
// exceptions are not applied: the grid only needs a zone that is valid there.
func UTMZoneEPSG(lon, lat float64) int {
	zone := int(math.Floor((lon+180)/6)) + 1
	zone = max(1, min(60, zone))
	if lat < 0 {
		return 32700 + zone
	}
	return 32600 + zone
}

// transformerFrom builds a Transformer from the raster's own CRS.
func (r *Raster) transformerTo(epsg int) (*Transformer, error) {
	register()
	src, err := godal.NewSpatialRefFromWKT(r.wkt)
	if err != nil {
		return nil, fmt.Errorf("ingest: %s: CRS: %w", describe(r.Href), err)
	}
	return newTransformer(src, epsg)
}

// Footprint returns the raster's outline in EPSG:epsg as a closed ring, with
// each side densified to n segments so curved outlines stay close.
func (r *Raster) Footprint(epsg, n int) (orb.Ring, error) {
	t, err := r.transformerTo(epsg)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	n = max(n, 1)
	w, h := float64(r.Width), float64(r.Height)
	var ring orb.Ring
	corners := [][2]float64{{0, 0}, {w, 0}, {w, h}, {0, h}}
	for c := range 4 {
		a, b := corners[c], corners[(c+1)%4]
		for i := range n {
			f := float64(i) / float64(n)
			ring = append(ring, r.pixelToCRS(a[0]+f*(b[0]-a[0]), a[1]+f*(b[1]-a[1])))
		}
	}
	ring = append(ring, ring[0])
	if err := t.Points(ring); err != nil {
		return nil, fmt.Errorf("%s: footprint: %w", describe(r.Href), err)
	}
	return ring, nil
}

func (r *Raster) pixelToCRS(px, py float64) orb.Point {
	gt := r.GeoTransform
	return orb.Point{gt[0] + px*gt[1] + py*gt[2], gt[3] + px*gt[4] + py*gt[5]}
}

// ResolutionIn returns the raster's pixel size, in units of EPSG:epsg
// (metres for a projected grid), measured at the raster's centre.
func (r *Raster) ResolutionIn(epsg int) (float64, error) {
	t, err := r.transformerTo(epsg)
	if err != nil {
		return 0, err
	}
	defer t.Close()
	cx, cy := float64(r.Width)/2, float64(r.Height)/2
	pts := []orb.Point{r.pixelToCRS(cx, cy), r.pixelToCRS(cx+1, cy), r.pixelToCRS(cx, cy+1)}
	if err := t.Points(pts); err != nil {
		return 0, err
	}
	dx := math.Hypot(pts[1][0]-pts[0][0], pts[1][1]-pts[0][1])
	dy := math.Hypot(pts[2][0]-pts[0][0], pts[2][1]-pts[0][1])
	return math.Sqrt(dx * dy), nil
}

// GroundResolution returns the raster's pixel size in metres on the ground,
// measured at its centre in the UTM zone there.
func (r *Raster) GroundResolution() (float64, error) {
	t, err := r.transformerTo(4326)
	if err != nil {
		return 0, err
	}
	c, err := t.Point(r.pixelToCRS(float64(r.Width)/2, float64(r.Height)/2))
	t.Close()
	if err != nil {
		return 0, err
	}
	if math.IsNaN(c[0]) || math.IsNaN(c[1]) || math.Abs(c[1]) > 90 {
		return 0, fmt.Errorf("centre %v is not on the Earth", c)
	}
	return r.ResolutionIn(UTMZoneEPSG(c[0], c[1]))
}

// checkResolution refuses a raster whose pixels are far from its sensor's
// (mm.Sensor.PlausibleResolution).
func (r *Raster) checkResolution(any bool) error {
	res, err := r.GroundResolution()
	if err != nil {
		return mm.Permanentf("%s: %s: pixel size: %v", r.Field, describe(r.Href), err)
	}
	r.groundRes = res
	if any {
		return nil
	}
	lo, hi := r.Sensor.PlausibleResolution()
	if !(res >= lo && res <= hi) {
		return mm.Permanentf("%s: %s: pixels of %.3g m are implausible for %s (its products have %g to %g m): another product declared as %s?",
			r.Field, describe(r.Href), res, r.Sensor, lo, hi, r.Sensor)
	}
	return nil
}
