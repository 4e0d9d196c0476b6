package tiles

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
)

// sceneFromFile writes a fixture scene and reads its scene message back
// from the file, as a user's scene would arrive.
func sceneFromFile(t *testing.T, opts fixtures.Options) *mm.Scene {
	t.Helper()
	res, err := fixtures.Write(filepath.Join(t.TempDir(), "scene"), opts)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(res.SceneFile)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := mm.ParseScene(data)
	if err != nil {
		t.Fatalf("%s: %v", res.SceneFile, err)
	}
	ingest.ResolveHrefs(sc, res.Dir)
	return sc
}

// cutEvery cuts every chip of the grid laid on the scene with the demo card.
func cutEvery(t *testing.T, sc *mm.Scene) (map[mm.ChipID]mm.Chip, mm.InputSpec) {
	t.Helper()
	card := demoCard(t)
	src := openScene(t, sc)
	grid, err := NewGrid(src, GridOptions{FootprintM: card.Chip.FootprintM})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCutter(src, grid, card.Chip, CutOptions{KeepRaw: true, MinValid: 0.01, MaxCloud: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[mm.ChipID]mm.Chip{}
	for _, id := range grid.Chips {
		chip, _, err := c.Cut(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if len(chip.Inputs) > 0 {
			out[id] = chip
		}
	}
	if len(out) == 0 {
		t.Fatal("no chip cut")
	}
	return out, card.Chip.Inputs[0]
}

// TestS2BaselineOffset renders the same ground twice, with Sentinel-2 DNs
// of processing baseline 04.00 (reflectance x 10,000 + 1000) and 02.14
// (without the 1000), each scene saying its baseline: the chips fed to the
// model must be the same (to the warp's float error). A scene that does not say its baseline is
// assumed to carry the offset, so the 02.14 DNs then come out 1000 lower.
func TestS2BaselineOffset(t *testing.T) {
	if testing.Short() {
		t.Skip("renders two scenes")
	}
	now := sceneFromFile(t, fixtures.Options{SizeKM: 3})
	old := sceneFromFile(t, fixtures.Options{SizeKM: 3, S2Baseline: "02.14"})
	if now.Assets[mm.Sentinel2].ProcessingBaseline != "04.00" || old.Assets[mm.Sentinel2].ProcessingBaseline != "02.14" {
		t.Fatalf("the scene messages do not give their baselines: %+v, %+v", now.Assets[mm.Sentinel2], old.Assets[mm.Sentinel2])
	}
	unsaid := *old
	unsaid.Assets = map[mm.Sensor]mm.Asset{}
	for sn, a := range old.Assets {
		a.ProcessingBaseline = ""
		unsaid.Assets[sn] = a
	}
	chipsNow, in := cutEvery(t, now)
	chipsOld, _ := cutEvery(t, old)
	chipsUnsaid, _ := cutEvery(t, &unsaid)
	n := in.Size * in.Size
	compared, shifted := 0, 0
	for id, a := range chipsNow {
		b, u := chipsOld[id], chipsUnsaid[id]
		if len(b.Inputs) == 0 || len(u.Inputs) == 0 {
			t.Fatalf("chip %s cut from one scene only", id)
		}
		for ch, band := range in.Bands {
			s2 := band.Sensor == mm.Sentinel2 && !mm.IsClassBand(band.Sensor, band.Band)
			for p := ch * n; p < (ch+1)*n; p++ {
				ra, rb := a.Inputs[0].Raw[p], b.Inputs[0].Raw[p]
				if math.IsNaN(float64(ra)) != math.IsNaN(float64(rb)) {
					t.Fatalf("chip %s %s pixel %d: no data in one scene only (%v, %v)", id, band.Name(), p-ch*n, ra, rb)
				}
				// where reflectance is under 0 the old DNs clip at 1
				if math.IsNaN(float64(ra)) || (s2 && ra <= 1001) {
					continue
				}
				// (bilinear weights make 1350.0001 of 1350)
				if s2 && math.Abs(float64(ra-rb)-1000) > 1e-3 {
					t.Fatalf("chip %s %s pixel %d: DNs %v and %v, not 1000 apart", id, band.Name(), p-ch*n, ra, rb)
				}
				da, db, du := a.Inputs[0].Data[p], b.Inputs[0].Data[p], u.Inputs[0].Data[p]
				if math.Abs(float64(da-db)) > 1e-3*band.Scale/band.Std+1e-6*math.Abs(float64(da)) {
					t.Fatalf("chip %s %s pixel %d: normalised to %v at baseline 04.00, %v at 02.14", id, band.Name(), p-ch*n, da, db)
				}
				compared++
				if s2 {
					want := float64(da) - 1000*band.Scale/band.Std
					if math.Abs(float64(du)-want) > 1e-4*math.Max(1, math.Abs(want)) {
						t.Fatalf("chip %s %s pixel %d: with no baseline said, %v; want %v (the offset assumed)", id, band.Name(), p-ch*n, du, want)
					}
					shifted++
				}
			}
		}
	}
	if shifted < len(chipsNow)*n { // about 12 reflectance bands a chip
		t.Errorf("only %d Sentinel-2 values compared (%d in all)", shifted, compared)
	}
}

// TestS1Units renders the same ground with Sentinel-1 in dB, in linear
// power and in amplitude. A chip of a power or amplitude scene must hold
// the dB of gdalwarp's warp of the linear values (the warp averages power,
// the dB comes after), and come close to the dB scene's chip: the two
// differ only by where the warp takes its mean.
func TestS1Units(t *testing.T) {
	if testing.Short() {
		t.Skip("renders three scenes")
	}
	dbScene := sceneFromFile(t, fixtures.Options{SizeKM: 2})
	dbChips, in := cutEvery(t, dbScene)
	n := in.Size * in.Size
	for _, units := range []string{mm.S1Power, mm.S1Amplitude} {
		t.Run(units, func(t *testing.T) {
			sc := sceneFromFile(t, fixtures.Options{SizeKM: 2, S1Units: units})
			if got := sc.Assets[mm.Sentinel1].BackscatterUnits(); got != units {
				t.Fatalf("the scene message says units %q", got)
			}
			chips, _ := cutEvery(t, sc)
			src := openScene(t, sc)
			k := 10.0
			if units == mm.S1Amplitude {
				k = 20
			}
			var sumDiff float64
			count := 0
			checked := 0
			for id, chip := range chips {
				for ch, band := range in.Bands {
					if band.Sensor != mm.Sentinel1 {
						continue
					}
					data := chip.Inputs[0].Data[ch*n : (ch+1)*n]
					if checked < 2 { // against GDAL, for two chips
						r, idx, _ := src.Band(band.Sensor, band.Band)
						w := ingest.Window{EPSG: id.EPSG, Bounds: id.Bounds(), Width: in.Size, Height: in.Size, Fixed: true}
						lin := gdalwarpChip(t, r.Path, idx, w, ingest.Bilinear)
						for p, v := range lin {
							if math.IsNaN(float64(v)) {
								continue
							}
							want := band.Normalize(math.Max(minDB, k*math.Log10(float64(v))))
							// a position error of 1e-4 px, in dB over a std of 5
							if d := math.Abs(float64(data[p]) - want); d > 2e-3 {
								t.Fatalf("chip %s %s pixel %d: %v, want %v from gdalwarp's %v", id, band.Name(), p, data[p], want, v)
							}
						}
					}
					ref := dbChips[id].Inputs[0].Data[ch*n : (ch+1)*n]
					for p := range data {
						if math.IsNaN(float64(chip.Inputs[0].Raw[ch*n+p])) {
							continue
						}
						sumDiff += math.Abs(float64(data[p]-ref[p])) * band.Std // in dB
						count++
					}
				}
				checked++
			}
			if count == 0 {
				t.Fatal("no Sentinel-1 value compared")
			}
			mean := sumDiff / float64(count)
			t.Logf("%s: mean |difference| from the dB scene's chips: %.3f dB over %d values", units, mean, count)
			if mean > 0.5 {
				t.Errorf("%s chips differ from the dB scene's by %.2f dB on average", units, mean)
			}
		})
	}
}

func TestToDecibels(t *testing.T) {
	nan := float32(math.NaN())
	src := []float32{nan, 0, -0.003, 1e-6, 1, 0.01, 0.1, 2}
	power := toDecibels(mm.S1Power, src, nil)
	amp := toDecibels(mm.S1Amplitude, src, make([]float32, 1))
	wantP := []float64{math.NaN(), minDB, minDB, minDB, 0, -20, -10, 3.0103}
	wantA := []float64{math.NaN(), minDB, minDB, minDB, 0, -40, -20, 6.0206}
	for i := range src {
		for _, c := range []struct {
			got  float32
			want float64
		}{{power[i], wantP[i]}, {amp[i], wantA[i]}} {
			if math.IsNaN(c.want) != math.IsNaN(float64(c.got)) || (!math.IsNaN(c.want) && math.Abs(float64(c.got)-c.want) > 1e-4) {
				t.Errorf("value %v: %v dB, want %v", src[i], c.got, c.want)
			}
		}
	}
}
