package tiles

import (
	"fmt"
	"syscall"
	"unsafe"
)

// Warped windows live outside the Go heap, in anonymous mappings of their
// own, unmapped when the cutter lets them go. A cutter's windows (a 504 px
// block of every raster: ~19 MB) are its largest live memory; on the Go
// heap they also set how much garbage the collector lets pile up before
// it runs (GOGC: as much again), so each cutter cost about twice their
// size.

// mapFloats returns n float32s in a mapping of their own, zeroed.
func mapFloats(n int) ([]float32, error) {
	if n <= 0 {
		return nil, nil
	}
	b, err := syscall.Mmap(-1, 0, n*4, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("tiles: map a window of %d values: %w", n, err)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n), nil
}

// unmapFloats gives back a slice from mapFloats (nil does nothing). The
// slice must not be used afterwards.
func unmapFloats(f []float32) {
	if cap(f) == 0 {
		return
	}
	f = f[:cap(f)]
	syscall.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), len(f)*4))
}
