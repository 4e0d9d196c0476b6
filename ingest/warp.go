package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/airbusgeo/godal"
	mm "github.com/methanemap/methanemap"
)

// Resampling algorithms, named as gdalwarp's -r takes them.
const (
	Nearest  = "near"
	Bilinear = "bilinear"
	Average  = "average"
)

// Window is a target grid: Width×Height pixels covering Bounds
// [minX, minY, maxX, maxY] of EPSG:EPSG, north up.
type Window struct {
	EPSG          int
	Bounds        [4]float64
	Width, Height int
	// Fixed makes a pixel's value independent of the window it is warped
	// in, so a chip sliced from a larger window equals the chip warped
	// alone. A reprojected raster's positions then come from a lattice
	// fixed to the CRS's origin: exact reprojections every few pixels,
	// interpolated between them within 1e-4 of a pixel (checked cell by
	// cell; see positions.c); those that cannot (an overview, a vertical
	// shift) transform every pixel exactly (gdalwarp -et 0). Not Fixed,
	// GDAL interpolates positions within 0.125 pixel per warp chunk (its
	// default), which depends on the window.
	Fixed bool
	// Shared, for a Fixed window, keeps the lattice computed for one
	// raster for the others of the same CRS on the same window (see
	// Positions). Nil: one made for the warp.
	Shared *Positions
}

// WarpSwitches returns the gdalwarp switches that put a raster on the
// window; the same switches on the command line reproduce a chip.
func (w Window) WarpSwitches(resampling string) []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	sw := []string{
		"-t_srs", "EPSG:" + strconv.Itoa(w.EPSG),
		"-te", f(w.Bounds[0]), f(w.Bounds[1]), f(w.Bounds[2]), f(w.Bounds[3]),
		"-ts", strconv.Itoa(w.Width), strconv.Itoa(w.Height),
		"-r", resampling,
		"-ot", "Float32",
		"-dstnodata", "nan",
		// a band GDAL calls alpha (NAIP's NIR often is) is data, not a mask
		"-nosrcalpha",
		// from full resolution, whatever overviews the file has: gdalwarp's
		// default (-ovr AUTO) warps a coarse window from an overview, so a
		// chip would depend on how (and whether) the file's overviews were
		// built (3.5 DN on average, measured on a NAIP with a mask band);
		// the fast average path reads full resolution too
		"-ovr", "NONE",
		// chunks of warpMemoryMB; where GDAL approximates positions, it
		// interpolates them per chunk, so this is part of the recipe
		"-wm", strconv.Itoa(warpMemoryMB),
	}
	if w.Fixed {
		sw = append(sw, "-et", "0")
	}
	return sw
}

// geoTransform is the window's geotransform as gdalwarp computes it from
// -te and -ts.
func (w Window) geoTransform() [6]float64 {
	return [6]float64{w.Bounds[0], (w.Bounds[2] - w.Bounds[0]) / float64(w.Width), 0, w.Bounds[3], 0, -((w.Bounds[3] - w.Bounds[1]) / float64(w.Height))}
}

// warpMemoryMB is the most memory (MiB) one warp chunk's buffers take
// (gdalwarp -wm; GDAL's default is 64): how GDAL splits a large window
// into chunks (which changes values where GDAL approximates positions,
// see Window.Fixed, and which of its kernels' formulas it picks). Kept under glibc's
// largest mmap threshold (32 MiB), freed chunk buffers are reused by the
// next warp instead of being unmapped and their pages faulted in anew:
// on a 20 km scene, 7.1 s of the cut's 29 s was the kernel clearing
// pages at 64; at 16 that fell to 0.6 s and the peak memory by ~75 MiB.
const warpMemoryMB = 16

// MaxDownsampling is how many times finer than a window's pixels a
// raster's may be (per axis): 0.05 m NAIP onto 10 m chips is 200.
const MaxDownsampling = 256

// Warp reprojects and resamples every band of the raster onto the window and
// returns the values band after band (channels first, rows north to south).
// Pixels without data (the source's nodata or outside the raster) are NaN.
func (r *Raster) Warp(ctx context.Context, w Window, resampling string) ([]float32, error) {
	return r.WarpInto(ctx, w, resampling, nil)
}

// WarpInto is Warp writing into buf when it has the capacity (else into a
// new slice); it returns the values.
func (r *Raster) WarpInto(ctx context.Context, w Window, resampling string, buf []float32) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if w.Width < 1 || w.Height < 1 {
		return nil, fmt.Errorf("ingest: warp %s: empty window %dx%d", describe(r.Href), w.Width, w.Height)
	}
	if px := (w.Bounds[2] - w.Bounds[0]) / float64(w.Width); r.groundRes > 0 && px/r.groundRes > MaxDownsampling {
		// each window pixel would read more than MaxDownsampling² source
		// pixels: a raster declaring tiny pixels costs time without bound
		return nil, mm.Permanentf("%s: %s: pixels of %.3g m are %.0f times finer than the chip's %.3g m (at most %d)",
			r.Field, describe(r.Href), r.groundRes, px/r.groundRes, px, MaxDownsampling)
	}
	if r.boxAverageOK(w, resampling) {
		if cols, rows, ok := r.boxSpans(w); ok && r.stripRows(cols, rows) > 0 {
			return r.boxAverage(ctx, w, cols, rows, buf)
		}
	}
	if w.Fixed {
		if w.Shared == nil {
			w.Shared = NewPositions(1)
			defer w.Shared.Close()
		}
		out, err := r.warpLattice(ctx, w, resampling, buf)
		if !errors.Is(err, errNotShareable) {
			return out, err
		}
	}
	return r.warpGDAL(ctx, w, resampling, buf)
}

// warpGDAL is WarpInto by GDAL's warper.
func (r *Raster) warpGDAL(ctx context.Context, w Window, resampling string, buf []float32) ([]float32, error) {
	ec := &errCollector{remote: r.remote}
	sw := append([]string{"-of", "MEM"}, w.WarpSwitches(resampling)...)
	out, err := r.ds.Warp("", sw, godal.ErrLogger(ec.handler()))
	if err != nil {
		return nil, ec.wrap(fmt.Sprintf("ingest: warp %s (%s)", r.Field, describe(r.Href)), err)
	}
	n := len(r.Bands) * w.Width * w.Height
	defer func() {
		out.Close()
		releaseFreeMemory(4 * n)
	}()
	if cap(buf) < n {
		buf = make([]float32, n)
	}
	buf = buf[:n]
	if err := out.Read(0, 0, buf, w.Width, w.Height, godal.BandInterleaved(), godal.ErrLogger(ec.handler())); err != nil {
		return nil, ec.wrap(fmt.Sprintf("ingest: read warped %s", describe(r.Href)), err)
	}
	return buf, nil
}
