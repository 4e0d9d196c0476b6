package tiles

import (
	"math"
	"math/rand/v2"
	"testing"

	mm "github.com/methanemap/methanemap"
)

// TestNormalizeEqualsBandSpec checks our band normalisation (four values
// at a time in C) against BandSpec.Normalize value by value, to the bit:
// the demo card's bands and awkward ones, over values of every kind
// (NaN, infinities, zeros, denormals, integers, random floats), at every
// length around the four-value steps.
func TestNormalizeEqualsBandSpec(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bands := append([]mm.BandSpec(nil), demoCard(t).Chip.Inputs[0].Bands...)
	bands = append(bands,
		mm.BandSpec{Scale: 1e-4, Offset: -0.1, Mean: 0.3, Std: 0.07, Fill: -1},
		mm.BandSpec{Scale: -3, Offset: 1e6, Mean: -2e5, Std: 1e-3, Fill: float64(math.MaxFloat32)},
		mm.BandSpec{Scale: 1, Offset: 0, Mean: 0, Std: 3, Fill: 0},
		// offset and mean that cancel at 1e8, where a double's rounding
		// (1.5e-8) shows in floats near 1: another order of the
		// operations gives other floats
		mm.BandSpec{Scale: 1, Offset: 1e8, Mean: 1e8 + 0.1, Std: 1, Fill: 0})
	special := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)),
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32, 1, 255, 10000, -32768, 65535}
	for _, n := range []int{0, 1, 3, 4, 5, 7, 8, 9, 1023, 5000} {
		src := make([]float32, n)
		for i := range src {
			switch rng.IntN(5) {
			case 0:
				src[i] = special[rng.IntN(len(special))]
			case 1:
				src[i] = float32(rng.IntN(70000) - 5000)
			case 2:
				src[i] = math.Float32frombits(rng.Uint32()) // any bits: NaNs of every payload too
			case 3:
				src[i] = float32(rng.NormFloat64() * 3000)
			default:
				src[i] = float32(rng.Float64() * 4)
			}
		}
		for _, b := range bands {
			dst := make([]float32, n)
			invalid := make([]bool, n)
			for i := range dst {
				dst[i] = float32(math.NaN()) // spoiled: every value must be written
			}
			normalize(b, src, dst, invalid)
			for i, v := range src {
				want, wantInvalid := float32(b.Normalize(float64(v))), false
				if v != v {
					want, wantInvalid = float32(b.Fill), true
				}
				if math.Float32bits(dst[i]) != math.Float32bits(want) && !(dst[i] != dst[i] && want != want) || invalid[i] != wantInvalid {
					t.Fatalf("band %+v, n %d, value %d (%g, bits %#x): got %g (invalid %v), want %g (invalid %v)",
						b, n, i, v, math.Float32bits(v), dst[i], invalid[i], want, wantInvalid)
				}
			}
		}
	}
}
