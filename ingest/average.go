package ingest

import (
	"context"
	"fmt"
	"math"

	"github.com/airbusgeo/godal"
)

// GDAL mask flags (RFC 15) that say a band has no mask band of its own.
const (
	gmfAllValid = 0x01
	gmfAlpha    = 0x04
	gmfNodata   = 0x08
)

// boxAverageOK reports whether an average warp of the raster onto the
// window is a plain area-weighted mean that boxAverage computes: the
// raster is already in the window's CRS, north up, of integer data, and
// has no mask other than its nodata value (or an alpha band, which
// -nosrcalpha makes data).
func (r *Raster) boxAverageOK(w Window, resampling string) bool {
	gt := r.GeoTransform
	return resampling == Average && r.EPSG != 0 && r.EPSG == w.EPSG && r.Projected && !r.masked &&
		gt[2] == 0 && gt[4] == 0 && gt[1] > 0 && gt[5] < 0 &&
		(r.DataType == "Byte" || r.DataType == "UInt16" || r.DataType == "Int16")
}

// maskedBeyondNodata reports whether a band's validity comes from a mask
// band of its own (GDAL's warper would honour it; boxAverage does not).
func maskedBeyondNodata(flags int) bool {
	return flags&(gmfAllValid|gmfNodata) == 0 && flags&gmfAlpha == 0
}

// span is the source pixels one window pixel covers along one axis, and
// the share of each it covers.
type span struct {
	first   int
	weights []float64
	edge    bool // no source pixel covered: the raster's first one taken
}

// spans maps window pixels [0, n) of size px starting at origin (in
// source pixel units: start + i*step) to the source pixels [0, limit).
func spans(start, step float64, n, limit int) []span {
	out := make([]span, n)
	for i := range out {
		a, b := start+float64(i)*step, start+float64(i+1)*step
		lo := max(int(math.Floor(a+1e-10)), 0)
		hi := min(int(math.Ceil(b-1e-10)), limit)
		s := span{first: lo}
		for k := lo; k < hi; k++ {
			s.weights = append(s.weights, math.Min(float64(k+1), b)-math.Max(float64(k), a))
		}
		if lo == hi && hi < limit {
			// GDAL's warper, where a window pixel covers no source pixel
			// but ends on the raster's first one (left or top edge),
			// takes that one, as a whole: so do we (tested)
			s.weights, s.edge = []float64{1}, true
		}
		out[i] = s
	}
	return out
}

// whole reports whether each window pixel covers whole source pixels, all
// of them on the raster or none: the same number of source pixels, each
// entirely (the window's pixels are a whole multiple of the source's and
// aligned on them, and the raster's edges fall between window pixels).
func whole(ss []span) bool {
	n := -1
	for _, s := range ss {
		if len(s.weights) == 0 || s.edge {
			continue // off the raster, or the edge's pixel taken whole
		}
		if n >= 0 && len(s.weights) != n {
			return false
		}
		n = len(s.weights)
		for _, w := range s.weights {
			if w != 1 {
				return false
			}
		}
	}
	return true
}

// boxRows is how many window rows boxAverage reads the source for at a
// time: memory stays a strip, not the window's whole source.
const boxRows = 16

// boxSpans returns the source pixels each window pixel covers, when each
// covers whole ones (see whole); ok is false otherwise.
func (r *Raster) boxSpans(w Window) (cols, rows []span, ok bool) {
	gt := r.GeoTransform
	px := (w.Bounds[2] - w.Bounds[0]) / float64(w.Width)
	py := (w.Bounds[3] - w.Bounds[1]) / float64(w.Height)
	cols = spans((w.Bounds[0]-gt[0])/gt[1], px/gt[1], w.Width, r.Width)
	rows = spans((w.Bounds[3]-gt[3])/gt[5], py/-gt[5], w.Height, r.Height)
	return cols, rows, whole(cols) && whole(rows)
}

// boxAverage is the average warp of a raster already in the window's CRS
// (see boxAverageOK) whose window pixels each cover whole source pixels
// (boxSpans): each is the mean of the source pixels it covers, nodata
// left out, NaN where none has data. That is what GDAL's warper computes
// for -r average, to the bit (tested against gdalwarp), here from plain
// windowed reads of the source, a strip of rows at a time, and integer
// sums. GDAL's general warp kernel costs about 13 times more for it: a
// 432 px window of 1 m NAIP took 546 ms, this 42 ms. Partly covered
// source pixels (0.6 m NAIP onto 10 m, a misaligned origin) are left to
// GDAL: its weights there are not a plain share of area.
func (r *Raster) boxAverage(ctx context.Context, w Window, cols, rows []span, buf []float32) ([]float32, error) {
	n := len(r.Bands) * w.Width * w.Height
	if cap(buf) < n {
		buf = make([]float32, n)
	}
	buf = buf[:n]
	x0, x1 := r.Width, 0
	for _, s := range cols {
		if len(s.weights) > 0 {
			x0, x1 = min(x0, s.first), max(x1, s.first+len(s.weights))
		}
	}
	var err error
	switch r.DataType {
	case "Byte":
		err = boxStrips[uint8](ctx, r, cols, rows, x0, x1, w.Width, buf)
	case "UInt16":
		err = boxStrips[uint16](ctx, r, cols, rows, x0, x1, w.Width, buf)
	case "Int16":
		err = boxStrips[int16](ctx, r, cols, rows, x0, x1, w.Width, buf)
	default:
		err = fmt.Errorf("data type %s", r.DataType)
	}
	if err != nil {
		return nil, err
	}
	return buf, nil
}

func boxStrips[T uint8 | uint16 | int16](ctx context.Context, r *Raster, cols, rows []span, x0, x1, width int, out []float32) error {
	height := len(rows)
	plane := width * height
	// the nodata value as a T: a value no T can take masks nothing
	var nodata T
	hasND := r.HasNodata && r.Nodata == math.Trunc(r.Nodata) && float64(T(r.Nodata)) == r.Nodata
	if hasND {
		nodata = T(r.Nodata)
	}
	var src []T
	for oy0 := 0; oy0 < height; oy0 += boxRows {
		if err := ctx.Err(); err != nil {
			return err
		}
		oy1 := min(height, oy0+boxRows)
		y0, y1 := r.Height, 0
		for _, s := range rows[oy0:oy1] {
			if len(s.weights) > 0 {
				y0, y1 = min(y0, s.first), max(y1, s.first+len(s.weights))
			}
		}
		sw, sh := x1-x0, y1-y0
		if sw <= 0 || sh <= 0 { // the strip is off the raster
			for b := range r.Bands {
				for oy := oy0; oy < oy1; oy++ {
					for ox := range width {
						out[b*plane+oy*width+ox] = float32(math.NaN())
					}
				}
			}
			continue
		}
		if cap(src) < len(r.Bands)*sw*sh {
			src = make([]T, len(r.Bands)*sw*sh)
		}
		src = src[:len(r.Bands)*sw*sh]
		ec := &errCollector{remote: r.remote}
		if err := r.ds.Read(x0, y0, src, sw, sh, godal.BandInterleaved(), godal.ErrLogger(ec.handler())); err != nil {
			return ec.wrap(fmt.Sprintf("ingest: read %s (%s)", r.Field, describe(r.Href)), err)
		}
		for b := range r.Bands {
			band := src[b*sw*sh:]
			for oy := oy0; oy < oy1; oy++ {
				ry := rows[oy]
				dst := out[b*plane+oy*width:]
				for ox, cx := range cols {
					v := float32(math.NaN()) // off the raster
					if len(cx.weights) > 0 && len(ry.weights) > 0 {
						v = meanWhole(band, sw, ry.first-y0, len(ry.weights), cx.first-x0, len(cx.weights), nodata, hasND)
					}
					dst[ox] = v
				}
			}
		}
	}
	return nil
}

// meanWhole is the mean of the valid values of a block of whole pixels.
func meanWhole[T uint8 | uint16 | int16](band []T, stride, y, ny, x, nx int, nodata T, hasND bool) float32 {
	var sum, count int64
	for j := y; j < y+ny; j++ {
		row := band[j*stride+x : j*stride+x+nx]
		if !hasND {
			for _, v := range row {
				sum += int64(v)
			}
			count += int64(nx)
			continue
		}
		for _, v := range row {
			if v != nodata {
				sum += int64(v)
				count++
			}
		}
	}
	if count == 0 {
		return float32(math.NaN())
	}
	return float32(float64(sum) / float64(count))
}
