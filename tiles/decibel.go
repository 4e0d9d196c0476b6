package tiles

import (
	"math"

	mm "github.com/methanemap/methanemap"
)

// minDB is the floor of Sentinel-1 backscatter turned into dB: linear
// values at or under 1e-5 power (radar shadow, noise removal's zeros and
// negatives) become -50 dB, under any real signal, rather than -Inf.
const minDB = -50

// toDecibels puts the dB of each value of src, in units (mm.S1Power:
// 10 log10 v; mm.S1Amplitude: 20 log10 v), in dst (grown to len(src)) and
// returns it. NaN (no data) stays NaN. The warp averages and interpolates
// the linear values, as power should be; the dB comes after it.
func toDecibels(units string, src, dst []float32) []float32 {
	if cap(dst) < len(src) {
		dst = make([]float32, len(src))
	}
	dst = dst[:len(src)]
	k := 10.0
	if units == mm.S1Amplitude {
		k = 20
	}
	floor := math.Pow(10, minDB/k)
	for i, v := range src {
		switch x := float64(v); {
		case x != x:
			dst[i] = v
		case x <= floor:
			dst[i] = minDB
		default:
			dst[i] = float32(k * math.Log10(x))
		}
	}
	return dst
}
