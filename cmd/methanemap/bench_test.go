package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/broker"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/internal/testenv"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/pipeline"
	"github.com/methanemap/methanemap/tiles"
)

// BenchmarkScore10km scores a 10 km x 10 km three-sensor fixture scene end
// to end (score to a GeoJSON file, with probes), and in the same iteration
// measures chip building alone and inference alone on the same chips: the
// grid's and the probes around its detections. It reports each as chips/s
// (grid chips), end to end as km²/h, and the ratio of the end-to-end time
// to the slower stage (1.0: the pipeline hides the faster stage).
func BenchmarkScore10km(b *testing.B) {
	dir := b.TempDir()
	res, err := fixtures.Write(filepath.Join(dir, "scene"), fixtures.Options{SizeKM: 10})
	if err != nil {
		b.Fatal(err)
	}
	m, err := loadModel("")
	if err != nil {
		b.Fatal(err)
	}
	newScorer := func() *model.Scorer {
		s, err := model.NewScorer(m, model.ScorerOptions{BatchSize: 16})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	// the probes score cuts: around the detections of a run of the pipeline
	sc := *res.Scene
	ingest.ResolveHrefs(&sc, res.Dir)
	scorer := newScorer()
	run, err := pipeline.Run(context.Background(), &sc, scorer, pipeline.Options{Cutters: runtime.NumCPU()})
	scorer.Close()
	if err != nil {
		b.Fatal(err)
	}
	st := stageTimes{probes: pipeline.ProbeGroups(run.Detections)}
	for i := range b.N {
		st.measure(b, i, res, m.Card.Chip, newScorer, "score", "--scene", res.SceneFile, "--quiet")
	}
	cutT, inferT, e2eT, chips := st.cut, st.infer, st.e2e, st.chips
	km2 := float64(chips) * 0.72 * 0.72
	n := float64(chips * b.N)
	b.ReportMetric(n/cutT.Seconds(), "cut-chips/s")
	b.ReportMetric(n/inferT.Seconds(), "infer-chips/s")
	b.ReportMetric(n/e2eT.Seconds(), "e2e-chips/s")
	b.ReportMetric(km2*float64(b.N)/e2eT.Hours(), "e2e-km2/h")
	b.ReportMetric(e2eT.Seconds()/max(cutT.Seconds(), inferT.Seconds()), "e2e/slower-stage")
	st.reportFloor(b)
}

// reportFloor reports, for stages that each keep every core busy on their
// own (the cutters, one per core; ONNX Runtime's threads), what no
// pipeline can beat on this machine: the two stages back to back. Its
// ratio to the slower stage is the least e2e/slower-stage can be, and
// e2e over it says how close the pipeline comes (1: as close as the
// cores allow).
func (st *stageTimes) reportFloor(b *testing.B) {
	both := st.cut.Seconds() + st.infer.Seconds()
	b.ReportMetric(both/max(st.cut.Seconds(), st.infer.Seconds()), "stages-sum/slower-stage")
	b.ReportMetric(st.e2e.Seconds()/both, "e2e/stages-sum")
}

// stageTimes adds up, over a benchmark's iterations, the time of chip
// building alone, of inference alone on the same chips, and of the
// command run end to end (its -o output is added here).
type stageTimes struct {
	cut, infer, e2e time.Duration
	chips           int           // grid chips per iteration
	probes          [][]mm.ChipID // probes to cut and score too, a detection's per entry
}

// The scorer of inference alone is closed before the command runs: an idle
// ONNX Runtime session left open in the process slowed the command's own
// inference (DenseNet: 9.3 s end to end against 8.0 s, the same 16 chips).
func (st *stageTimes) measure(b *testing.B, i int, res *fixtures.Result, spec mm.ChipSpec, newScorer func() *model.Scorer, args ...string) {
	b.Helper()
	t0 := time.Now() // chip building alone, with as many cutters as score uses
	cut, probeChips, err := cutAll(res, spec, runtime.NumCPU(), st.probes)
	if err != nil {
		b.Fatal(err)
	}
	st.cut += time.Since(t0)
	scorer := newScorer()
	t0 = time.Now() // inference alone, on the same chips
	if _, err := scorer.Score(context.Background(), append(cut, probeChips...)); err != nil {
		b.Fatal(err)
	}
	st.infer += time.Since(t0)
	scorer.Close()
	out := filepath.Join(filepath.Dir(res.SceneFile), "det.geojson")
	os.Remove(out)
	var stdout, stderr bytes.Buffer
	t0 = time.Now() // end to end
	if code := run(context.Background(), append(args, "-o", out), &stdout, &stderr); code != 0 {
		b.Fatalf("%s: %s", args[0], stderr.String())
	}
	st.e2e += time.Since(t0)
	if i == 0 {
		st.chips = len(cut)
		b.Logf("%d chips of %d px and %d probes; %s", len(cut), spec.Inputs[0].Size, len(probeChips), bytes.TrimSpace(stdout.Bytes()))
	}
}

// cutAll cuts every chip of a scene with n goroutines, each on its own
// opened rasters, as score does: each its share of the grid, then probes
// (groups of off-lattice chips) from a common queue. It returns the grid's
// chips and the probes'.
func cutAll(res *fixtures.Result, spec mm.ChipSpec, n int, probes [][]mm.ChipID) ([]mm.Chip, []mm.Chip, error) {
	sc := *res.Scene
	ingest.ResolveHrefs(&sc, res.Dir)
	src, err := ingest.Open(context.Background(), &sc, ingest.Options{})
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	grid, err := tiles.NewGrid(src, tiles.GridOptions{})
	if err != nil {
		return nil, nil, err
	}
	queue := make(chan []mm.ChipID, len(probes))
	for _, g := range probes {
		queue <- g
	}
	close(queue)
	// as the pipeline cuts: whole blocks of chips per cutter
	cut := tiles.CutOptions{Block: tiles.BlockFor(len(grid.Chips), n, tiles.SmallestInput(spec))}
	shares := grid.Shares(n, cut.Block)
	parts := make([][]mm.Chip, n)
	probed := make([][]mm.Chip, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := ingest.Open(context.Background(), &sc, ingest.Options{})
			if err != nil {
				errs[w] = err
				return
			}
			defer s.Close()
			c, err := tiles.NewCutter(s, grid, spec, cut)
			if err != nil {
				errs[w] = err
				return
			}
			defer c.Close()
			if _, errs[w] = c.EachOf(context.Background(), shares[w], func(ch mm.Chip) error { parts[w] = append(parts[w], ch); return nil }); errs[w] != nil {
				return
			}
			for g := range queue {
				if _, errs[w] = c.EachOf(context.Background(), g, func(ch mm.Chip) error { probed[w] = append(probed[w], ch); return nil }); errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	var all, around []mm.Chip
	for w := range n {
		if errs[w] != nil {
			return nil, nil, errs[w]
		}
		all = append(all, parts[w]...)
		around = append(around, probed[w]...)
	}
	return all, around, nil
}

// BenchmarkDaemonWorkers measures scenes per minute through the daemon:
// worker processes (`serve --nats`, one chip cutter and one ONNX Runtime
// thread each) on one broker, 12 scenes queued at once, timed from the
// enqueue to the last scene's done event; with 1 worker, then 2, in the
// same run. Model loading is outside the timing (workers are started and
// ready first).
func BenchmarkDaemonWorkers(b *testing.B) {
	const scenes = 12
	dir := b.TempDir()
	res, err := fixtures.Write(filepath.Join(dir, "scene"), fixtures.Options{SizeKM: 3})
	if err != nil {
		b.Fatal(err)
	}
	ns, err := broker.Start("127.0.0.1:-1", filepath.Join(dir, "js"))
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Shutdown()
	url := ns.ClientURL()
	rate := map[int]float64{}
	cores := map[int]float64{} // CPU seconds of the workers per second of the run
	for i := range b.N {
		for _, workers := range []int{1, 2} {
			var procs []*exec.Cmd
			for w := range workers {
				logf := filepath.Join(dir, fmt.Sprintf("w%d-%d-%d.log", i, workers, w))
				f, err := os.Create(logf)
				if err != nil {
					b.Fatal(err)
				}
				cmd := exec.Command(os.Args[0], "-test.run=^TestMainChild$")
				cmd.Env = append(os.Environ(), "METHANEMAP_MODEL_THREADS=1",
					"METHANEMAP_MAIN_CHILD=serve --nats "+url+" --http 127.0.0.1:0 --cutters 1 --allow "+res.Dir)
				cmd.Stderr = f
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				procs = append(procs, cmd)
				for k := 0; ; k++ { // ready: model loaded, streams there
					if data, _ := os.ReadFile(logf); bytes.Contains(data, []byte("msg=serving")) {
						break
					}
					if k == 1200 {
						b.Fatalf("worker not ready after 2 minutes: see %s", logf)
					}
					time.Sleep(100 * time.Millisecond)
				}
				f.Close()
			}
			queue := filepath.Join(dir, fmt.Sprintf("q%d-%d", i, workers))
			os.MkdirAll(queue, 0o755)
			var ids []string
			for k := range scenes {
				sc := *res.Scene
				sc.ID = fmt.Sprintf("bench-%d-%dw-%02d", i, workers, k)
				ingest.ResolveHrefs(&sc, res.Dir)
				data, _ := json.Marshal(&sc)
				os.WriteFile(filepath.Join(queue, sc.ID+".json"), data, 0o644)
				ids = append(ids, sc.ID)
			}
			cpu0 := 0.0
			for _, p := range procs {
				cpu0 += cpuSeconds(b, p.Process.Pid)
			}
			t0 := time.Now()
			var out, errb bytes.Buffer
			if code := run(context.Background(), []string{"enqueue", "--nats", url, "--wait", "--timeout", "20m", queue}, &out, &errb); code != 0 {
				b.Fatalf("enqueue: %s %s", out.String(), errb.String())
			}
			took := time.Since(t0)
			rate[workers] += float64(scenes) / took.Minutes()
			cpu1 := 0.0
			for _, p := range procs {
				cpu1 += cpuSeconds(b, p.Process.Pid)
			}
			cores[workers] += (cpu1 - cpu0) / took.Seconds() / float64(b.N)
			for _, p := range procs {
				p.Process.Signal(os.Interrupt)
				p.Wait()
			}
			if i == 0 {
				b.Logf("%d worker(s): %d scenes in %s", workers, scenes, took.Round(time.Millisecond))
			}
		}
	}
	b.ReportMetric(rate[1]/float64(b.N), "scenes/min-1-worker")
	b.ReportMetric(rate[2]/float64(b.N), "scenes/min-2-workers")
	b.ReportMetric(rate[2]/rate[1], "2-workers/1-worker")
	// one worker pipelines its cutter and ONNX Runtime's thread: the more
	// cores it keeps busy, the less a second can add on this machine
	b.ReportMetric(cores[1], "cores-1-worker")
	b.ReportMetric(cores[2], "cores-2-workers")
	b.ReportMetric(float64(runtime.NumCPU())/cores[1], "cpus/cores-1-worker")
}

// cpuSeconds is the CPU time (user and system) a process has used so far,
// from /proc.
func cpuSeconds(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line, in clock ticks (100 a second on Linux)
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100
}

// BenchmarkDenseNetScore scores a 3 km fixture scene end to end with
// METER-ML's architecture (DenseNet-121, 720 x 720 chips, random weights,
// exported by training/train.py) on ONNX Runtime, without probes, and in
// the same iteration runs inference alone on the same chips: their ratio
// says how much of the time the rest of the pipeline adds.
func BenchmarkDenseNetScore(b *testing.B) {
	dir := b.TempDir()
	mdir := testenv.DenseNet121(b, filepath.Join(dir, "densenet"))
	res, err := fixtures.Write(filepath.Join(dir, "scene"), fixtures.Options{SizeKM: 3})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now() // what score does before its first chip: load the model
	m, err := loadModel(mdir)
	if err != nil {
		b.Fatal(err)
	}
	newScorer := func() *model.Scorer {
		s, err := model.NewScorer(m, model.ScorerOptions{BatchSize: 4})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	newScorer().Close()
	load := time.Since(t0)
	var st stageTimes
	for i := range b.N {
		st.measure(b, i, res, m.Card.Chip, newScorer, "score", "--scene", res.SceneFile, "--model", mdir, "--backend", "onnxruntime",
			"--batch", "4", "--no-probes", "--quiet")
	}
	inferT, e2eT, chips := st.infer, st.e2e, st.chips
	n := float64(chips * b.N)
	b.ReportMetric(n/st.cut.Seconds(), "cut-chips/s")
	b.ReportMetric(n/inferT.Seconds(), "infer-chips/s")
	b.ReportMetric(n/e2eT.Seconds(), "e2e-chips/s")
	b.ReportMetric(e2eT.Seconds()/inferT.Seconds(), "e2e/infer")
	st.reportFloor(b)
	// end to end includes loading the model, once per run: on a scene of
	// a few chips, a share of the time no pipeline can hide
	b.ReportMetric(load.Seconds(), "model-load-s")
	b.ReportMetric((e2eT.Seconds()-load.Seconds()*float64(b.N))/inferT.Seconds(), "e2e-less-load/infer")
}
