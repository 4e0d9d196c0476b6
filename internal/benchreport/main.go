// Command benchreport turns the output of `make bench` (go test -bench
// lines, benchstat's input format) into one table of where the time goes,
// with each of issue 8's targets as a ratio measured in the same run, and
// writes the same as JSON.
//
//	go run ./internal/benchreport -json bench/results.json bench/raw.txt
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// result is one benchmark line: its name (without the -GOMAXPROCS
// suffix) and its metrics by unit.
type result struct {
	Name    string             `json:"name"`
	Metrics map[string]float64 `json:"metrics"`
}

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := line.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		res := result{Name: m[1], Metrics: map[string]float64{}}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			res.Metrics[f[i+1]] = v
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// target is one of issue 8's goals, as a ratio.
type target struct {
	What     string  `json:"what"`
	Value    float64 `json:"value"`
	Limit    float64 `json:"limit"`
	AtMost   bool    `json:"at_most"` // else at least
	Met      bool    `json:"met"`
	Measured bool    `json:"measured"`
}

type report struct {
	When    time.Time         `json:"when"`
	Results []result          `json:"results"`
	Table   []row             `json:"table"`
	Targets []target          `json:"targets"`
	Notes   map[string]string `json:"notes,omitempty"`
}

type row struct {
	Section string  `json:"section"`
	What    string  `json:"what"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
}

func main() {
	jsonOut := flag.String("json", "", "write the report as JSON here too")
	flag.Parse()
	var in io.Reader = os.Stdin
	if flag.NArg() > 0 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(2)
		}
		defer f.Close()
		in = f
	}
	results, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	rep := build(results)
	print(os.Stdout, rep)
	if *jsonOut != "" {
		data, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, append(data, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
	}
}

func build(results []result) report {
	rep := report{When: time.Now().UTC(), Results: results}
	get := func(name, unit string) (float64, bool) {
		for _, r := range results {
			if r.Name == name {
				v, ok := r.Metrics[unit]
				return v, ok
			}
		}
		return 0, false
	}
	add := func(section, what, name, unit, shown string) {
		if v, ok := get(name, unit); ok {
			rep.Table = append(rep.Table, row{section, what, v, shown})
		}
	}
	goal := func(what string, v float64, ok bool, limit float64, atMost bool) {
		t := target{What: what, Value: v, Limit: limit, AtMost: atMost, Measured: ok}
		t.Met = ok && ((atMost && v <= limit) || (!atMost && v >= limit))
		rep.Targets = append(rep.Targets, t)
	}
	add("chips (5 km scene)", "GDAL raw read of the chips' source pixels", "BenchmarkChipBuilding", "raw-read-chips/s", "chips/s")
	add("chips (5 km scene)", "chip building", "BenchmarkChipBuilding", "chips/s", "chips/s")
	add("chips (5 km scene)", "chip building / raw read (time)", "BenchmarkChipBuilding", "x-raw-read-time", "x")
	add("chips (5 km scene)", "raw read of every chip's source pixels", "BenchmarkChipBuilding", "raw-read-ms", "ms")
	add("chips (5 km scene)", "NAIP block warps (best of 3)", "BenchmarkChipBuilding", "naip-warps-ms", "ms")
	add("chips (5 km scene)", "Sentinel-2 block warps, SCL included", "BenchmarkChipBuilding", "s2-warps-ms", "ms")
	add("chips (5 km scene)", "Sentinel-1 block warps", "BenchmarkChipBuilding", "s1-warps-ms", "ms")
	var names []string
	for _, r := range results {
		if strings.HasPrefix(r.Name, "BenchmarkInference/") || strings.HasPrefix(r.Name, "BenchmarkDenseNet121/") {
			names = append(names, r.Name)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		what := strings.TrimPrefix(strings.TrimPrefix(n, "BenchmarkInference/"), "BenchmarkDenseNet121/")
		if strings.HasPrefix(n, "BenchmarkDenseNet121/") {
			what = "DenseNet-121 720x720 " + what
		} else {
			what = "demo model " + what
		}
		add("inference alone", what, n, "chips/s", "chips/s")
	}
	add("end to end, 10 km scene (demo model)", "chip building alone (grid and probes)", "BenchmarkScore10km", "cut-chips/s", "chips/s")
	add("end to end, 10 km scene (demo model)", "inference alone (grid and probes)", "BenchmarkScore10km", "infer-chips/s", "chips/s")
	add("end to end, 10 km scene (demo model)", "score end to end", "BenchmarkScore10km", "e2e-chips/s", "chips/s")
	add("end to end, 10 km scene (demo model)", "score end to end", "BenchmarkScore10km", "e2e-km2/h", "km²/h")
	add("end to end, 10 km scene (demo model)", "end to end / slower stage (time)", "BenchmarkScore10km", "e2e/slower-stage", "x")
	add("end to end, 10 km scene (demo model)", "both stages back to back / slower stage", "BenchmarkScore10km", "stages-sum/slower-stage", "x")
	add("end to end, 10 km scene (demo model)", "end to end / both stages back to back", "BenchmarkScore10km", "e2e/stages-sum", "x")
	add("DenseNet-121 720x720, 3 km scene, no probes", "chip building alone", "BenchmarkDenseNetScore", "cut-chips/s", "chips/s")
	add("DenseNet-121 720x720, 3 km scene, no probes", "inference alone (ONNX Runtime)", "BenchmarkDenseNetScore", "infer-chips/s", "chips/s")
	add("DenseNet-121 720x720, 3 km scene, no probes", "score end to end", "BenchmarkDenseNetScore", "e2e-chips/s", "chips/s")
	add("DenseNet-121 720x720, 3 km scene, no probes", "end to end / inference (time)", "BenchmarkDenseNetScore", "e2e/infer", "x")
	add("DenseNet-121 720x720, 3 km scene, no probes", "loading the model (in end to end, once)", "BenchmarkDenseNetScore", "model-load-s", "s")
	add("DenseNet-121 720x720, 3 km scene, no probes", "end to end less the load / inference", "BenchmarkDenseNetScore", "e2e-less-load/infer", "x")
	add("DenseNet-121 720x720, 3 km scene, no probes", "both stages back to back / slower stage", "BenchmarkDenseNetScore", "stages-sum/slower-stage", "x")
	add("DenseNet-121 720x720, 3 km scene, no probes", "end to end / both stages back to back", "BenchmarkDenseNetScore", "e2e/stages-sum", "x")
	for _, km := range []string{"5", "10", "20"} {
		add("peak resident memory (chip iteration)", km+" km scene", "BenchmarkChipMemory/"+km+"km", "peak-MiB", "MiB")
	}
	add("daemon (12 scenes of 3 km)", "1 worker", "BenchmarkDaemonWorkers", "scenes/min-1-worker", "scenes/min")
	add("daemon (12 scenes of 3 km)", "2 workers", "BenchmarkDaemonWorkers", "scenes/min-2-workers", "scenes/min")
	add("daemon (12 scenes of 3 km)", "2 workers / 1 worker", "BenchmarkDaemonWorkers", "2-workers/1-worker", "x")
	add("daemon (12 scenes of 3 km)", "cores kept busy by 1 worker", "BenchmarkDaemonWorkers", "cores-1-worker", "cores")
	add("daemon (12 scenes of 3 km)", "cores kept busy by 2 workers", "BenchmarkDaemonWorkers", "cores-2-workers", "cores")
	add("daemon (12 scenes of 3 km)", "CPUs / cores kept busy by 1 worker", "BenchmarkDaemonWorkers", "cpus/cores-1-worker", "x")

	v, ok := get("BenchmarkChipBuilding", "x-raw-read-time")
	goal("chip building time / raw read time", v, ok, 1.5, true)
	v, ok = get("BenchmarkScore10km", "e2e/slower-stage")
	goal("end to end time / slower stage time (10 km)", v, ok, 1.15, true)
	v, ok = get("BenchmarkDenseNetScore", "e2e/infer")
	goal("DenseNet-121 end to end time / inference time", v, ok, 1.10, true)
	m5, ok5 := get("BenchmarkChipMemory/5km", "peak-MiB")
	m20, ok20 := get("BenchmarkChipMemory/20km", "peak-MiB")
	goal("peak memory 20 km / 5 km", m20/max(m5, 1e-9), ok5 && ok20, 1.2, true)
	v, ok = get("BenchmarkDaemonWorkers", "2-workers/1-worker")
	goal("daemon scenes/min 2 workers / 1 worker", v, ok, 1.7, false)
	return rep
}

func print(w io.Writer, rep report) {
	section := ""
	fmt.Fprintf(w, "methanemap benchmark report (%s)\n", rep.When.Format(time.RFC3339))
	for _, r := range rep.Table {
		if r.Section != section {
			section = r.Section
			fmt.Fprintf(w, "\n%s\n", section)
		}
		fmt.Fprintf(w, "  %-46s %12.2f %s\n", r.What, r.Value, r.Unit)
	}
	fmt.Fprintf(w, "\ntargets (ratios from the same run)\n")
	for _, t := range rep.Targets {
		cmp := ">="
		if t.AtMost {
			cmp = "<="
		}
		status := "MET"
		switch {
		case !t.Measured:
			status = "not measured"
		case !t.Met:
			status = "not met"
		}
		fmt.Fprintf(w, "  %-46s %8.2f  (target %s %.2f)  %s\n", t.What, t.Value, cmp, t.Limit, status)
	}
}
