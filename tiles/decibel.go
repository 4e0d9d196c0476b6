package tiles

/*
#cgo LDFLAGS: -lm
#include <math.h>
#include <stddef.h>

// mm_decibels puts k log10(v) of each value in dst: NaN stays NaN, values
// at or under least become lo.
static void mm_decibels(const float *src, float *dst, size_t n, float k, float least, float lo) {
	for (size_t i = 0; i < n; i++) {
		const float v = src[i];
		dst[i] = v != v ? v : v <= least ? lo : k * log10f(v);
	}
}
*/
import "C"

import (
	"math"
	"unsafe"

	mm "github.com/methanemap/methanemap"
)

// minDB is the floor of Sentinel-1 backscatter turned into dB: linear
// values at or under 1e-5 power (radar shadow, noise removal's zeros and
// negatives) become -50 dB, under any real signal, rather than -Inf.
const minDB = -50

// toDecibels puts the dB of each value of src, in units (mm.S1Power:
// 10 log10 v; mm.S1Amplitude: 20 log10 v), in dst (grown to len(src)) and
// returns it. NaN (no data) stays NaN. The warp averages and interpolates
// the linear values; the dB comes after it. In C, in floats: Go's
// math.Log10 took 5.5 ms a 720 x 720 band.
func toDecibels(units string, src, dst []float32) []float32 {
	if cap(dst) < len(src) {
		dst = make([]float32, len(src))
	}
	dst = dst[:len(src)]
	if len(src) == 0 {
		return dst
	}
	k := 10.0
	if units == mm.S1Amplitude {
		k = 20
	}
	floor := math.Pow(10, minDB/k)
	C.mm_decibels((*C.float)(unsafe.Pointer(&src[0])), (*C.float)(unsafe.Pointer(&dst[0])), C.size_t(len(src)),
		C.float(k), C.float(floor), C.float(minDB))
	return dst
}
