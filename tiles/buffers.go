package tiles

import (
	"sync"

	mm "github.com/methanemap/methanemap"
)

// Buffers keeps the values of chips already scored for the cutters to cut
// new chips into. A 720 px chip of 18 bands is 37 MB: allocating it for
// every chip makes garbage at the rate chips are cut, and the collector
// that runs for it takes CPU beside inference, whose threads then wait on
// the one it slowed (measured: DenseNet batches 30-40 % slower while it
// ran). The cutters of a pipeline share one; safe for concurrent use.
type Buffers struct {
	mu   sync.Mutex
	free [][]float32
	max  int
}

// NewBuffers keeps at most max chip tensors' values.
func NewBuffers(max int) *Buffers { return &Buffers{max: max} }

// get returns n values, kept from an earlier chip or new. Kept values are
// not cleared: the cutter writes every one.
func (b *Buffers) get(n int) []float32 {
	if b != nil {
		b.mu.Lock()
		for i, f := range b.free {
			if cap(f) >= n {
				b.free[i] = b.free[len(b.free)-1]
				b.free = b.free[:len(b.free)-1]
				b.mu.Unlock()
				return f[:n]
			}
		}
		b.mu.Unlock()
	}
	return make([]float32, n)
}

// Put gives back the values of a chip's inputs (not its Raw values). The
// chip's tensors must not be read after: their values will be another
// chip's.
func (b *Buffers) Put(c mm.Chip) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range c.Inputs {
		if len(b.free) >= b.max || t.Data == nil {
			return
		}
		b.free = append(b.free, t.Data)
	}
}
