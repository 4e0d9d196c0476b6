package tiles

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airbusgeo/godal"
	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/paulmach/orb"
)

// benchScene writes (once per run) a fixture scene of size km.
func benchScene(b testing.TB, km float64) *fixtures.Result {
	b.Helper()
	dir := filepath.Join(tmpRoot, fmt.Sprintf("bench-%gkm", km))
	res, err := fixtures.Write(dir, fixtures.Options{SizeKM: km})
	if err != nil {
		b.Fatal(err)
	}
	ingest.ResolveHrefs(res.Scene, res.Dir)
	return res
}

// BenchmarkChipBuilding cuts every chip of a 5 km scene with the demo card
// and, in the same iteration, reads the same source pixels with plain GDAL
// windowed reads (no warp, no normalisation): the floor chip building
// could reach. It reports both as chips/s and their ratio.
func BenchmarkChipBuilding(b *testing.B) {
	res := benchScene(b, 5)
	card := demoCard(b)
	src := openScene(b, res.Scene)
	grid, err := NewGrid(src, GridOptions{})
	if err != nil {
		b.Fatal(err)
	}
	raw := newRawReader(b, src, grid)
	defer raw.close()
	var cutTime, rawTime time.Duration
	b.ResetTimer()
	for range b.N {
		// a new cutter each time, as each scene gets: a cutter keeps the
		// windows it warped, and the whole 5 km scene is one block
		t0 := time.Now()
		c, err := NewCutter(src, grid, card.Chip, CutOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.EachOf(context.Background(), grid.Chips, func(mm.Chip) error { return nil }); err != nil {
			b.Fatal(err)
		}
		c.Close()
		t1 := time.Now()
		for _, id := range grid.Chips {
			raw.read(b, id)
		}
		cutTime += t1.Sub(t0)
		rawTime += time.Since(t1)
	}
	n := float64(len(grid.Chips) * b.N)
	b.ReportMetric(n/cutTime.Seconds(), "chips/s")
	b.ReportMetric(n/rawTime.Seconds(), "raw-read-chips/s")
	b.ReportMetric(cutTime.Seconds()/rawTime.Seconds(), "x-raw-read-time")
	b.StopTimer()
	// where chip building's time goes: each sensor's warps of the scene's
	// blocks (best of 3 passes, each pass as a cutter does them: rasters
	// in order, one CRS's positions computed once per block), against the
	// raw read of all its chips
	c, err := NewCutter(src, grid, card.Chip, CutOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	size := SmallestInput(card.Chip)
	warps := map[mm.Sensor]time.Duration{}
	reads := append([]rasterRead{}, c.inputs[0].reads...)
	if c.scl != nil {
		reads = append(reads, rasterRead{raster: c.scl, resampling: ingest.Nearest})
	}
	for k := range 3 {
		pass := map[mm.Sensor]time.Duration{}
		shared := ingest.NewPositions(4)
		for _, rd := range reads {
			for _, bb := range blockBounds(c, grid, size) {
				win := c.fixedWindow(bb, float64(grid.FootprintM)/float64(size), shared)
				t0 := time.Now()
				if _, err := rd.raster.Warp(context.Background(), win, rd.resampling); err != nil {
					b.Fatal(err)
				}
				pass[rd.raster.Sensor] += time.Since(t0)
			}
		}
		shared.Close()
		for sn, d := range pass {
			if k == 0 || d < warps[sn] {
				warps[sn] = d
			}
		}
	}
	for sn, d := range warps {
		b.ReportMetric(float64(d.Microseconds())/1000, string(sn)+"-warps-ms")
	}
	b.ReportMetric(rawTime.Seconds()*1000/float64(b.N), "raw-read-ms")
}

// blockBounds are the windows the cutter warps for the grid's blocks of
// chips of size pixels.
func blockBounds(c *Cutter, grid *Grid, size int) [][4]float64 {
	seen := map[[2]int]bool{}
	var out [][4]float64
	for _, id := range grid.Chips {
		bc, br := c.BlockOf(id, size)
		if c.unread(id) || seen[[2]int{bc, br}] {
			continue
		}
		seen[[2]int{bc, br}] = true
		out = append(out, c.BlockBounds(bc, br, size))
	}
	return out
}

// rawReader reads, for a chip, the source pixels of every raster that
// cover it, at the raster's own resolution.
type rawReader struct {
	files []rawFile
	toLL  *ingest.Transformer
}

type rawFile struct {
	ds    *godal.Dataset
	gt    [6]float64
	bands int
	geo   bool // lon/lat raster: chip corners must be transformed
	buf   []float32
}

func newRawReader(b *testing.B, src *ingest.Source, grid *Grid) *rawReader {
	rr := &rawReader{}
	var err error
	if rr.toLL, err = ingest.NewTransformer(grid.EPSG, 4326); err != nil {
		b.Fatal(err)
	}
	for _, r := range src.Rasters {
		ds, err := godal.Open(r.Path)
		if err != nil {
			b.Fatal(err)
		}
		rr.files = append(rr.files, rawFile{ds: ds, gt: r.GeoTransform, bands: len(r.Bands), geo: !r.Projected})
	}
	return rr
}

func (rr *rawReader) read(b *testing.B, id mm.ChipID) {
	bb := id.Bounds()
	for i := range rr.files {
		f := &rr.files[i]
		corners := []orb.Point{{bb[0], bb[1]}, {bb[2], bb[3]}}
		if f.geo {
			if err := rr.toLL.Points(corners); err != nil {
				b.Fatal(err)
			}
		}
		st := f.ds.Structure()
		x0 := clamp(int(math.Floor((corners[0][0]-f.gt[0])/f.gt[1])), 0, st.SizeX)
		x1 := clamp(int(math.Ceil((corners[1][0]-f.gt[0])/f.gt[1])), 0, st.SizeX)
		y0 := clamp(int(math.Floor((corners[1][1]-f.gt[3])/f.gt[5])), 0, st.SizeY)
		y1 := clamp(int(math.Ceil((corners[0][1]-f.gt[3])/f.gt[5])), 0, st.SizeY)
		w, h := x1-x0, y1-y0
		if w <= 0 || h <= 0 {
			continue
		}
		if n := w * h * f.bands; cap(f.buf) < n {
			f.buf = make([]float32, n)
		}
		if err := f.ds.Read(x0, y0, f.buf[:w*h*f.bands], w, h); err != nil {
			b.Fatal(err)
		}
	}
}

func (rr *rawReader) close() {
	for _, f := range rr.files {
		f.ds.Close()
	}
	rr.toLL.Close()
}

func clamp(v, lo, hi int) int { return max(lo, min(hi, v)) }

// BenchmarkChipMemory reports the peak resident memory of a process that
// opens a scene and cuts every chip, for 5, 10 and 20 km scenes. The
// process is this test binary re-run in child mode, so the figure is the
// chip iteration's alone. The child reports its own VmHWM: the rusage of a
// waited child would also count the parent's memory at the time of exec.
func BenchmarkChipMemory(b *testing.B) {
	for _, km := range []float64{5, 10, 20} {
		b.Run(fmt.Sprintf("%gkm", km), func(b *testing.B) {
			res := benchScene(b, km)
			var peakKB int64
			var report string
			for range b.N {
				cmd := exec.Command(os.Args[0], "-test.run=^TestChipMemoryChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), "METHANEMAP_MEMORY_CHILD="+res.SceneFile)
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("child: %v\n%s", err, out)
				}
				report = string(out)
				var kb int64
				if i := strings.Index(report, "VmHWM:"); i >= 0 {
					fmt.Sscan(report[i+len("VmHWM:"):], &kb)
				}
				if kb == 0 {
					b.Fatalf("child did not report VmHWM:\n%s", out)
				}
				peakKB = max(peakKB, kb)
			}
			b.ReportMetric(float64(peakKB)/1024, "peak-MiB")
			b.Logf("%g km scene: %s", km, strings.TrimSpace(report))
		})
	}
}

// TestChipMemoryChild is the child of BenchmarkChipMemory; it does nothing
// in a normal test run.
func TestChipMemoryChild(t *testing.T) {
	scene := os.Getenv("METHANEMAP_MEMORY_CHILD")
	if scene == "" {
		t.Skip("run by BenchmarkChipMemory")
	}
	// as the CLI does by default
	if err := ingest.SetCacheMax(configs.Default().Ingest.GDALCacheMB); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(scene)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := mm.ParseScene(data)
	if err != nil {
		t.Fatal(err)
	}
	ingest.ResolveHrefs(sc, filepath.Dir(scene))
	src := openScene(t, sc)
	grid, err := NewGrid(src, GridOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCutter(src, grid, demoCard(t).Chip, CutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Each(context.Background(), func(mm.Chip) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fmt.Printf("%d chips cut, skipped %v; %s\n", st.Cut, st.Skipped, strings.Join(strings.Fields(line), " "))
		}
	}
}
