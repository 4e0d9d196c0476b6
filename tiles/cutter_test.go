package tiles

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/testenv"
)

// expectedAlg is the resampling the design asks for, decided from what the
// fixture writes: NAIP 1 m is shrunk to 10 m (average), Sentinel-2 and
// Sentinel-1 are at 10 m or coarser (bilinear), SCL holds classes (nearest).
func expectedAlg(b mm.BandSpec) string {
	switch {
	case b.Sensor == mm.NAIP:
		return ingest.Average
	case b.Band == "SCL":
		return ingest.Nearest
	}
	return ingest.Bilinear
}

// TestChipsMatchGDAL cuts chips of the fixture scene and checks every band
// of every sensor against what the gdalwarp tool makes of the same source
// and window.
func TestChipsMatchGDAL(t *testing.T) {
	res, card, src, grid := fixtureGrid(t)
	if grid.EPSG != res.NAIPEPSG {
		t.Errorf("grid CRS EPSG:%d, want the NAIP's EPSG:%d", grid.EPSG, res.NAIPEPSG)
	}
	// MinValid low: edge chips are cut (not skipped unread) and compared too
	c, err := NewCutter(src, grid, card.Chip, CutOptions{KeepRaw: true, MinValid: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// the first chip (north-west, partly outside the Sentinel-2 swath when
	// the cut corner is there), one in the middle and the last one
	ids := []mm.ChipID{grid.Chips[0], grid.Chips[len(grid.Chips)/2], grid.Chips[len(grid.Chips)-1]}
	in := card.Chip.Inputs[0]
	for _, id := range ids {
		chip, _, err := c.Cut(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		raw := chip.Inputs[0].Raw
		n := in.Size * in.Size
		w := c.Window(id, in.Size)
		for ch, b := range in.Bands {
			r, idx, ok := src.Band(b.Sensor, b.Band)
			if !ok {
				t.Fatalf("band %s missing", b.Name())
			}
			want := gdalwarpChip(t, r.Path, idx, w, expectedAlg(b))
			if diff, ok := nearValues(raw[ch*n:(ch+1)*n], want, in.Size, 1e-4); !ok {
				t.Errorf("chip %s band %s differs from gdalwarp -r %s: %s", id, b.Name(), expectedAlg(b), diff)
			}
		}
		// normalisation: data = (raw*scale+offset-mean)/std, fill for nodata
		for ch, b := range in.Bands {
			for p := 0; p < n; p += 97 {
				v, got := float64(raw[ch*n+p]), float64(chip.Inputs[0].Data[ch*n+p])
				want := b.Fill
				if !math.IsNaN(v) {
					want = (v*b.Scale + b.Offset - b.Mean) / b.Std
				}
				if math.Abs(got-want) > 1e-4*math.Max(1, math.Abs(want)) {
					t.Fatalf("chip %s band %s pixel %d normalised to %v, want %v", id, b.Name(), p, got, want)
				}
			}
		}
	}
}

// TestRealFilesMatchGDAL cuts chips from each real raster and compares them
// with gdalwarp.
func TestRealFilesMatchGDAL(t *testing.T) {
	rd := func(name string) string { return testenv.RealData(t, filepath.Join("rasters", name)) }
	spec := func(sensor mm.Sensor, size int, bands ...string) mm.ChipSpec {
		in := mm.InputSpec{Name: "x", Size: size}
		for _, b := range bands {
			in.Bands = append(in.Bands, mm.BandSpec{Sensor: sensor, Band: b, Scale: 1, Std: 1})
		}
		return mm.ChipSpec{FootprintM: 720, Inputs: []mm.InputSpec{in}}
	}
	tests := []struct {
		name string
		sc   *mm.Scene
		spec mm.ChipSpec
		alg  string
		epsg int
	}{
		{"naip 5 m to 10 m", scene(mm.NAIP, mm.Asset{Href: rd("naip_m_4709963_se_14_20190904_5m.tif")}),
			spec(mm.NAIP, 72, "red", "green", "blue", "nir"), ingest.Average, 26914},
		{"naip 5 m to 1 m", scene(mm.NAIP, mm.Asset{Href: rd("naip_m_4709963_se_14_20190904_5m.tif")}),
			spec(mm.NAIP, 720, "nir", "red"), ingest.Bilinear, 26914},
		{"s2 EPSG:4326 to UTM", scene(mm.Sentinel2, mm.Asset{Href: rd("s2like_4band_10m_epsg4326.tif"), Bands: []string{"B02", "B03", "B04", "B08"}}),
			// 0.0000898° pixels are 10 m north-south but 6 m east-west at 53.4°N:
			// a 10 m chip grid shrinks them, so they are averaged
			spec(mm.Sentinel2, 72, "B04", "B03", "B02", "B08"), ingest.Average, 0},
		{"s2 EPSG:4326 to UTM at 1 m, 720 px chips (no blocks)",
			scene(mm.Sentinel2, mm.Asset{Href: rd("s2like_4band_10m_epsg4326.tif"), Bands: []string{"B02", "B03", "B04", "B08"}}),
			spec(mm.Sentinel2, 720, "B08", "B04"), ingest.Bilinear, 0},
		{"s2 60 m bands at 600 m", scene(mm.Sentinel2, mm.Asset{Hrefs: map[string]string{"B01": rd("s2_t34_B01_600m.tif"), "B09": rd("s2_t34_B09_600m.tif")}}),
			spec(mm.Sentinel2, 12, "B01", "B09"), ingest.Bilinear, 32634},
		{"s2 200 m tile", scene(mm.Sentinel2, mm.Asset{Hrefs: map[string]string{"B02": rd("s2_t29_band1_200m.tif"), "B03": rd("s2_t29_band2_200m.tif")}}),
			spec(mm.Sentinel2, 2, "B03", "B02"), ingest.Average, 32629},
		{"s1 dB 20 m to 10 m", scene(mm.Sentinel1, mm.Asset{Href: rd("s1a_iw_grd_20150309_vv_db_20m.tif")}),
			spec(mm.Sentinel1, 72, "VV"), ingest.Bilinear, 32631},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := openScene(t, tt.sc)
			grid, err := NewGrid(src, GridOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.epsg != 0 && grid.EPSG != tt.epsg {
				t.Errorf("grid EPSG:%d, want %d", grid.EPSG, tt.epsg)
			}
			if len(grid.Chips) == 0 {
				t.Fatal("no chips")
			}
			c, err := NewCutter(src, grid, tt.spec, CutOptions{KeepRaw: true, MinValid: 0.01})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			in := tt.spec.Inputs[0]
			checked := 0
			for i, id := range grid.Chips {
				if i%max(1, len(grid.Chips)/4) != 0 && i != len(grid.Chips)-1 {
					continue // a sample: first, every quarter, last
				}
				chip, _, err := c.Cut(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				n := in.Size * in.Size
				for ch, b := range in.Bands {
					r, idx, _ := src.Band(b.Sensor, b.Band)
					w := c.Window(id, in.Size)
					want := gdalwarpChip(t, r.Path, idx, w, tt.alg)
					diff, ok := sameValues(chip.Inputs[0].Raw[ch*n:(ch+1)*n], want, 1e-6)
					if w.Fixed {
						diff, ok = nearValues(chip.Inputs[0].Raw[ch*n:(ch+1)*n], want, in.Size, 1e-4)
					}
					if !ok {
						t.Errorf("chip %s band %s: %s", id, b.Name(), diff)
					}
				}
				checked++
			}
			t.Logf("%d chips in grid EPSG:%d, %d checked against gdalwarp", len(grid.Chips), grid.EPSG, checked)
		})
	}
}

func scene(sn mm.Sensor, a mm.Asset) *mm.Scene {
	return &mm.Scene{ID: "real", Assets: map[mm.Sensor]mm.Asset{sn: a}}
}

func TestCutterNeedsTheCardsBands(t *testing.T) {
	res := fixtureScene(t)
	sc := &mm.Scene{ID: "x", Assets: map[mm.Sensor]mm.Asset{mm.NAIP: res.Scene.Assets[mm.NAIP]}}
	src := openScene(t, sc)
	grid, err := NewGrid(src, GridOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewCutter(src, grid, demoCard(t).Chip, CutOptions{})
	if err == nil || !mm.IsPermanent(err) || !strings.Contains(err.Error(), "assets.s2: band B04 missing") {
		t.Fatalf("error %v: want a permanent error naming assets.s2 band B04", err)
	}
}

// TestBlockCutsEqualSingleCuts cuts every chip of the fixture grid one warp
// TestBlockBoundsHoldReadChips: each block window is the box around the
// grid's chips in the block that are read: every such chip lies inside,
// each edge of the box is some chip's edge, and chips skipped unread do
// not widen it. The fixture grid's edge blocks are not full.
func TestBlockBoundsHoldReadChips(t *testing.T) {
	_, card, src, grid := fixtureGrid(t)
	c, err := NewCutter(src, grid, card.Chip, CutOptions{Block: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	size := SmallestInput(card.Chip)
	type box struct {
		b     [4]float64
		edges [4]bool
	}
	blocks := map[[2]int]*box{}
	partial, unread := 0, 0
	for _, id := range grid.Chips {
		if c.grid.Inside(id) < 0.5-4/float64(size) { // the default MinValid, the cutter's edge strips
			unread++
			continue
		}
		bc, br := c.BlockOf(id, size)
		bx := blocks[[2]int{bc, br}]
		if bx == nil {
			bx = &box{b: c.BlockBounds(bc, br, size)}
			blocks[[2]int{bc, br}] = bx
		}
		cb := id.Bounds()
		if cb[0] < bx.b[0] || cb[1] < bx.b[1] || cb[2] > bx.b[2] || cb[3] > bx.b[3] {
			t.Errorf("chip %s %v outside its block's window %v", id, cb, bx.b)
		}
		for k := range 4 {
			bx.edges[k] = bx.edges[k] || cb[k] == bx.b[k]
		}
	}
	full := 4 * float64(grid.StrideM)
	for key, bx := range blocks {
		if bx.edges != [4]bool{true, true, true, true} {
			t.Errorf("block %v window %v: edges touching a read chip %v, want all four", key, bx.b, bx.edges)
		}
		if bx.b[2]-bx.b[0] < full || bx.b[3]-bx.b[1] < full {
			partial++
		}
	}
	if partial == 0 || len(blocks) < 4 {
		t.Errorf("%d blocks, %d partial: the test wants partial blocks", len(blocks), partial)
	}
	t.Logf("%d blocks of 4 x 4 chips, %d partial; %d chips skipped unread", len(blocks), partial, unread)
}

// per chip and from blocks of 2 x 2 and 3 x 3 chips (block edges falling
// inside the grid): the chips are the same to the bit, the eight probes
// around a chip (off the lattice, cut from one neighbourhood warp)
// included, and Grid.Shares deals whole blocks, each chip once.
func TestBlockCutsEqualSingleCuts(t *testing.T) {
	_, card, src, grid := fixtureGrid(t)
	cutAll := func(block int, each bool) map[mm.ChipID]mm.Chip {
		c, err := NewCutter(src, grid, card.Chip, CutOptions{KeepRaw: true, Block: block, MinValid: 0.01, MaxCloud: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		out := map[mm.ChipID]mm.Chip{}
		ids := slices.Clone(grid.Chips)
		ids = append(ids, probesAround(grid, grid.Chips[len(grid.Chips)/2])...)
		if each { // EachOf: the eight probes, handed over together, share one window
			if _, err := c.EachOf(context.Background(), ids, func(chip mm.Chip) error { out[chip.ID] = chip; return nil }); err != nil {
				t.Fatal(err)
			}
			return out
		}
		for _, id := range ids {
			chip, _, err := c.Cut(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			out[id] = chip
		}
		return out
	}
	single := cutAll(1, false)
	if each := cutAll(0, true); len(each) < len(single)/2 {
		t.Errorf("EachOf cut %d of %d chips", len(each), len(single))
	} else {
		for id, chip := range each {
			want := single[id]
			for i := range want.Inputs {
				if diff, ok := sameValues(chip.Inputs[i].Raw, want.Inputs[i].Raw, 0); !ok {
					t.Errorf("EachOf, chip %s: %s", id, diff)
				}
			}
		}
	}
	if g := nearGroups(append([]mm.ChipID{}, probesAround(grid, grid.Chips[0])...)); len(g) != 8 {
		t.Errorf("the eight probes around a chip are not one group: %v", g)
	}
	for _, block := range []int{2, 3} {
		for id, chip := range cutAll(block, false) {
			want := single[id]
			for i := range want.Inputs {
				if diff, ok := sameValues(chip.Inputs[i].Raw, want.Inputs[i].Raw, 0); !ok {
					t.Errorf("block %d, chip %s: %s", block, id, diff)
				}
			}
			if chip.CloudFraction != want.CloudFraction || chip.ValidFraction != want.ValidFraction {
				t.Errorf("block %d, chip %s: fractions %v/%v, single %v/%v", block, id, chip.ValidFraction, chip.CloudFraction, want.ValidFraction, want.CloudFraction)
			}
		}
		seen := map[mm.ChipID]int{}
		shares := grid.Shares(2, block)
		for _, share := range shares {
			for _, id := range share {
				seen[id]++
			}
		}
		if len(seen) != len(grid.Chips) || len(shares[0]) == 0 || len(shares[1]) == 0 {
			t.Errorf("block %d: shares of %d and %d chips cover %d of %d", block, len(shares[0]), len(shares[1]), len(seen), len(grid.Chips))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("block %d: chip %s in %d shares", block, id, n)
			}
		}
	}
}

// probesAround is the eight chips shifted by half a footprint around a
// lattice chip, off the lattice.
func probesAround(grid *Grid, mid mm.ChipID) []mm.ChipID {
	var ids []mm.ChipID
	for dx := -1; dx <= 1; dx++ {
		for dy := -1; dy <= 1; dy++ {
			if dx != 0 || dy != 0 {
				ids = append(ids, mm.ChipID{EPSG: grid.EPSG, Footprint: grid.FootprintM, Stride: grid.FootprintM / 2,
					Col: mid.Col*2 + dx, Row: mid.Row*2 + dy})
			}
		}
	}
	return ids
}

// TestCloudFractionMatchesGDAL counts the cloud classes in what gdalwarp
// -r near makes of SCL on each chip's cloud grid (10 m): the chip's cloud
// fraction must be that share, for the demo card's 72 px chips and for
// METER-ML's 720 px, whose fraction is counted on the same 10 m grid.
func TestCloudFractionMatchesGDAL(t *testing.T) {
	_, card, src, grid := fixtureGrid(t)
	scl, idx, ok := src.Band(mm.Sentinel2, "SCL")
	if !ok {
		t.Fatal("the fixture has no SCL")
	}
	big := card.Chip
	big.Inputs = []mm.InputSpec{card.Chip.Inputs[0]}
	big.Inputs[0].Size = 720
	cloudy := 0
	for _, spec := range []mm.ChipSpec{card.Chip, big} {
		if got := cloudGrid(spec); got != 72 {
			t.Fatalf("cloud grid of %d px chips: %d px, want 72 (10 m)", spec.Inputs[0].Size, got)
		}
		c, err := NewCutter(src, grid, spec, CutOptions{MinValid: 0.01, MaxCloud: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for k, id := range grid.Chips {
			if spec.Inputs[0].Size == 720 && k%3 != 0 {
				continue // a third of them: 720 px chips are slow to cut
			}
			chip, _, err := c.Cut(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if len(chip.Inputs) == 0 {
				continue // skipped unread
			}
			vals := gdalwarpChip(t, scl.Path, idx, c.Window(id, 72), ingest.Nearest)
			valid, cloud := 0, 0
			for _, v := range vals {
				if math.IsNaN(float64(v)) || v == 0 {
					continue
				}
				valid++
				if slices.Contains(CloudClasses, int(v)) {
					cloud++
				}
			}
			want := 0.0
			if valid > 0 {
				want = float64(cloud) / float64(valid)
			}
			if chip.CloudFraction != want {
				t.Errorf("%d px chip %s: cloud fraction %v, gdalwarp's SCL gives %d of %d = %v", spec.Inputs[0].Size, id, chip.CloudFraction, cloud, valid, want)
			}
			if want > 0 && want < 1 {
				cloudy++
			}
		}
	}
	if cloudy < 2 {
		t.Errorf("only %d chips partly cloudy: the test cannot tell the fractions apart", cloudy)
	}
}
