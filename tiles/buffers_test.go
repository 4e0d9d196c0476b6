package tiles

import (
	"context"
	"math"
	"testing"

	mm "github.com/methanemap/methanemap"
)

// TestBuffersGiveTheSameChips cuts the grid twice with one Buffers, the
// chips of the first cut given back with their values spoiled (NaN, as a
// scored chip's could be anything): the second cut's chips live in those
// values and equal a cut without Buffers.
func TestBuffersGiveTheSameChips(t *testing.T) {
	_, card, src, grid := fixtureGrid(t)
	cut := func(opts CutOptions) []mm.Chip {
		c, err := NewCutter(src, grid, card.Chip, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var out []mm.Chip
		if _, err := c.EachOf(context.Background(), grid.Chips, func(ch mm.Chip) error { out = append(out, ch); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := cut(CutOptions{})
	bufs := NewBuffers(len(grid.Chips))
	first := cut(CutOptions{Buffers: bufs})
	kept := map[*float32]bool{}
	for _, ch := range first {
		for _, in := range ch.Inputs {
			for i := range in.Data {
				in.Data[i] = float32(math.NaN())
			}
			kept[&in.Data[0]] = true
		}
		bufs.Put(ch)
	}
	second := cut(CutOptions{Buffers: bufs})
	if len(second) != len(want) || len(want) == 0 {
		t.Fatalf("%d chips with buffers, %d without", len(second), len(want))
	}
	reused := 0
	for k, ch := range second {
		for i, in := range ch.Inputs {
			if kept[&in.Data[0]] {
				reused++
			}
			if diff, ok := sameValues(in.Data, want[k].Inputs[i].Data, 0); !ok {
				t.Errorf("chip %s input %d, cut into given-back values: %s", ch.ID, i, diff)
			}
		}
	}
	if reused != len(second) {
		t.Errorf("%d of %d chips were cut into given-back values", reused, len(second))
	}
}
