// Fixed warps: positions from a lattice, shared between rasters, and our
// kernel.

package ingest

/*
#cgo pkg-config: gdal
#include <stdlib.h>
#include <cpl_vsi.h>
#include "positions.h"
*/
import "C"

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/airbusgeo/godal"
)

// Fixed windows (Window.Fixed) need a pixel's position not to depend on
// the window. gdalwarp -et 0 gets that by reprojecting every pixel
// exactly with PROJ (~400 ns a pixel, nearly all of a block warp's
// time, then GDAL's general warp kernel, ~40 ns a sample). Here instead:
//   - positions come from a lattice fixed to the CRS's origin (nodes
//     every 8 window pixels, reprojected exactly, bilinear between them,
//     each cell checked at its centre to within 1e-4 pixel, exact where
//     the check fails), kept per window and source CRS so the rasters of
//     one CRS (a Sentinel-2 scene's 10, 20 and 60 m groups and its SCL)
//     share it, and each raster applies its own geotransform to them
//     with GDAL's arithmetic; a raster in the window's CRS needs no
//     lattice (the two geotransforms, as GDAL applies them);
//   - our kernel (positions.c) makes the nearest and bilinear warps of
//     gdalwarp's recipe, GDAL's arithmetic in GDAL's order, over those
//     positions; other warps run GDAL's warp operation with them.
// The options are gdalwarp's own, taken from the warped VRT it makes with
// the recipe's switches. Between the two UTM datums (and in the window's
// CRS) the values are those of the gdalwarp command to the bit but for a
// float rounding now and then (2 ulps at most, tested); from lon/lat the
// positions are within ~1e-5 pixel of exact (1e-4 at most), and the
// values within what that moves them.

// Positions keeps the lattices of the windows warped with it
// (Window.Shared), for the other rasters of the same CRS warped onto the
// same windows; the least recently used window's are dropped beyond a
// few. A cutter keeps one for its scene. A 504 x 504 block's lattice
// takes ~70 kB. Safe for concurrent use.
type Positions struct {
	mu     sync.Mutex
	byKey  map[tableKey]*positionTable
	lru    *list.List // front: most recently used
	max    int
	closed bool
}

// tableKey names a lattice: a reprojection on a window.
type tableKey struct {
	reproj string
	gt     [6]float64
	w, h   int
}

type positionTable struct {
	key   tableKey
	p     *C.mmPositions
	users int
	elem  *list.Element // nil once dropped
}

// NewPositions keeps the positions of up to windows windows at a time.
func NewPositions(windows int) *Positions {
	return &Positions{byKey: map[tableKey]*positionTable{}, lru: list.New(), max: max(windows, 1)}
}

// Close frees the positions (those of warps under way when they end).
func (ps *Positions) Close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, t := range ps.byKey {
		ps.drop(t)
	}
	ps.closed = true
}

// Exact counts the points that warps with these positions asked for off
// the lattice's good cells, computed exactly (for tests).
func (ps *Positions) Exact() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := 0
	for _, t := range ps.byKey {
		n += int(C.mm_positions_exact(t.p))
	}
	return n
}

// Tables counts the lattices kept, one per window and source CRS (for
// tests).
func (ps *Positions) Tables() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.byKey)
}

// acquire returns the lattice of the reprojection named reproj for the
// w x h window of geotransform gt, made if needed; release it after the
// warp.
func (ps *Positions) acquire(reproj string, gt [6]float64, w, h int) (*positionTable, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return nil, errors.New("positions closed")
	}
	key := tableKey{reproj, gt, w, h}
	if t, ok := ps.byKey[key]; ok {
		t.users++
		ps.lru.MoveToFront(t.elem)
		return t, nil
	}
	ckey := C.CString(reproj)
	defer C.free(unsafe.Pointer(ckey))
	var cerr [512]C.char
	p := C.mm_positions_new(ckey, (*C.double)(unsafe.Pointer(&gt[0])), C.int(w), C.int(h), &cerr[0], C.int(len(cerr)))
	if p == nil {
		return nil, errors.New(C.GoString(&cerr[0]))
	}
	t := &positionTable{key: key, p: p, users: 1}
	t.elem = ps.lru.PushFront(t)
	ps.byKey[key] = t
	for e := ps.lru.Back(); e != nil && ps.lru.Len() > ps.max; {
		prev := e.Prev()
		if old := e.Value.(*positionTable); old.users == 0 {
			ps.drop(old)
		}
		e = prev
	}
	return t, nil
}

// drop takes a table out; it is freed now, or when its last user
// releases it. Called with the lock held.
func (ps *Positions) drop(t *positionTable) {
	if t.elem != nil {
		ps.lru.Remove(t.elem)
		t.elem = nil
	}
	if ps.byKey[t.key] == t {
		delete(ps.byKey, t.key)
	}
	if t.users == 0 && t.p != nil {
		C.mm_positions_free(t.p)
		t.p = nil
	}
}

func (ps *Positions) release(t *positionTable) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	t.users--
	if t.users == 0 && t.elem == nil && t.p != nil { // dropped while in use
		C.mm_positions_free(t.p)
		t.p = nil
	}
}

// datasetHandle is the GDALDatasetH of a godal dataset. godal (v0.0.18,
// pinned in go.mod) keeps it as the first and only word of Dataset and
// does not export it; ok is false when the handle found there is not the
// dataset's (its description and size differ), as a later godal could
// make it.
func datasetHandle(ds *godal.Dataset) (h C.GDALDatasetH, ok bool) {
	h = *(*C.GDALDatasetH)(unsafe.Pointer(ds))
	st := ds.Structure()
	return h, h != nil && C.GoString(C.GDALGetDescription(C.GDALMajorObjectH(h))) == ds.Description() &&
		int(C.GDALGetRasterXSize(h)) == st.SizeX && int(C.GDALGetRasterYSize(h)) == st.SizeY
}

// errNotShareable says a warp cannot use the lattice (an overview, a
// vertical shift, a godal that hides its handle...): it goes to gdalwarp
// -et 0.
var errNotShareable = errors.New("ingest: warp without shared positions")

// warpLattice is warpGDAL for a Fixed window, with the lattice of
// w.Shared and our kernel where it applies.
func (r *Raster) warpLattice(ctx context.Context, w Window, resampling string, buf []float32) ([]float32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pw, err := r.prepared(w, resampling)
	if err != nil {
		return nil, err
	}
	t, err := w.Shared.acquire(pw.key, w.geoTransform(), w.Width, w.Height)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotShareable, err)
	}
	defer w.Shared.release(t)
	n := len(r.Bands) * w.Width * w.Height
	if cap(buf) < n {
		buf = make([]float32, n)
	}
	buf = buf[:n]
	var cerr [512]C.char
	if C.mm_warp_run(pw.wp, t.p, (*C.float)(unsafe.Pointer(&buf[0])), C.int(w.Width), C.int(w.Height), C.int(len(r.Bands)), &cerr[0], C.int(len(cerr))) == 0 {
		return nil, fmt.Errorf("ingest: warp %s (%s): %s", r.Field, describe(r.Href), C.GoString(&cerr[0]))
	}
	releaseFreeMemory(4 * n)
	return buf, nil
}

// preparedWarp is gdalwarp's warp of a raster, with a resampling, onto
// windows of one CRS and pixel size, ready to run on any of them; or why
// it cannot use a lattice.
type preparedWarp struct {
	wp  *C.mmWarp
	key string // the reprojection's name (positions.c)
	err error  // wraps errNotShareable
}

type warpKey struct {
	resampling string
	epsg       int
	gt1, gt5   float64 // the window's pixel size, as its geotransform has it
}

// warpCache keeps a raster's prepared warps: making one (gdalwarp's
// warped VRT, then PROJ's choice of a transformation from its database)
// took several milliseconds, per block and per 720 px chip.
type warpCache struct {
	mu sync.Mutex
	m  map[warpKey]*preparedWarp
}

var warpCachesMu sync.Mutex // makes Raster.warps

// prepared returns the raster's warp onto w's CRS and pixel size, made
// (from the warped VRT gdalwarp makes with the recipe's switches) the
// first time it is asked for. An error wrapping errNotShareable says the
// warp goes to gdalwarp itself. Nothing of the VRT's options depends on
// the window but one thing: gdalwarp picks an overview to read from a
// sample of the window, and a warp that would read one is refused here on
// the first window only (our chips never shrink a source that much).
func (r *Raster) prepared(w Window, resampling string) (*preparedWarp, error) {
	warpCachesMu.Lock()
	if r.warps == nil {
		r.warps = &warpCache{m: map[warpKey]*preparedWarp{}}
	}
	wc := r.warps
	warpCachesMu.Unlock()
	gt := w.geoTransform()
	k := warpKey{resampling, w.EPSG, gt[1], gt[5]}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if pw, ok := wc.m[k]; ok {
		return pw, pw.err
	}
	ec := &errCollector{remote: r.remote}
	sw := append([]string{"-of", "VRT"}, w.WarpSwitches(resampling)...)
	vrt, err := r.ds.Warp("", sw, godal.ErrLogger(ec.handler()))
	if err != nil { // not kept: it may not happen again
		return nil, ec.wrap(fmt.Sprintf("ingest: warp %s (%s)", r.Field, describe(r.Href)), err)
	}
	defer vrt.Close()
	pw := &preparedWarp{}
	wc.m[k] = pw
	hsrc, ok1 := datasetHandle(r.ds)
	hvrt, ok2 := datasetHandle(vrt)
	if !ok1 || !ok2 {
		pw.err = fmt.Errorf("%w: godal's dataset handle is not where it was", errNotShareable)
		return pw, pw.err
	}
	if nb := vrt.Structure().NBands; nb != len(r.Bands) || nb == 0 {
		pw.err = fmt.Errorf("%w: gdalwarp made %d bands of %s's %d", errNotShareable, nb, r.Field, len(r.Bands))
		return pw, pw.err
	}
	var cerr [512]C.char
	var ckey *C.char
	pw.wp = C.mm_warp_prepare(hsrc, hvrt, C.double(warpMemoryMB<<20), &ckey, &cerr[0], C.int(len(cerr)))
	if pw.wp == nil {
		pw.err = fmt.Errorf("%w: %s", errNotShareable, C.GoString(&cerr[0]))
		return pw, pw.err
	}
	pw.key = C.GoString(ckey)
	C.VSIFree(unsafe.Pointer(ckey))
	return pw, nil
}

// freeWarps frees the raster's prepared warps when it closes: as for its
// dataset, no warp of it may be under way.
func (r *Raster) freeWarps() {
	warpCachesMu.Lock()
	wc := r.warps
	r.warps = nil
	warpCachesMu.Unlock()
	if wc == nil {
		return
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	for k, pw := range wc.m {
		if pw.wp != nil {
			C.mm_warp_free(pw.wp)
		}
		delete(wc.m, k)
	}
}

// latticeStep is the lattice's spacing in window pixels for a window pixel
// of the given size.
func latticeStep(pixel float64) int { return int(C.mm_lattice_step(C.double(pixel))) }

// kernelRuns counts the warps made with our kernel rather than GDAL's
// (for tests).
func kernelRuns() int { return int(C.mm_kernel_runs()) }

// setKernelRuns turns our kernel's runs of pixels (valued together, two at
// a time) on or off, and runPixels counts the pixels valued in runs: for
// tests, with no warp under way.
func setKernelRuns(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.mm_kernel_set_runs(v)
}

func runPixels() int { return int(C.mm_kernel_run_pixels()) }
