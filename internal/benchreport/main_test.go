package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	in := `goos: linux
BenchmarkChipBuilding-2   	       5	1146164509 ns/op	        64.95 chips/s	       398.9 raw-read-chips/s	         6.142 x-raw-read-time
BenchmarkChipMemory/5km-2 	       1	 1 ns/op	       255.0 peak-MiB
BenchmarkChipMemory/20km-2	       1	 1 ns/op	       280.5 peak-MiB
BenchmarkDaemonWorkers-2   	       1	66660509900 ns/op	         1.775 2-workers/1-worker	        18.22 scenes/min-1-worker	        32.35 scenes/min-2-workers
PASS
`
	res, err := parse(strings.NewReader(in))
	if err != nil || len(res) != 4 || res[0].Name != "BenchmarkChipBuilding" || res[0].Metrics["chips/s"] != 64.95 || res[1].Name != "BenchmarkChipMemory/5km" {
		t.Fatalf("parsed %+v, %v", res, err)
	}
	rep := build(res)
	var out bytes.Buffer
	print(&out, rep)
	s := out.String()
	for _, want := range []string{"chip building / raw read (time)", "6.14", "peak memory 20 km / 5 km", "1.10  (target <= 1.20)  MET",
		"(target <= 1.50)  not met", "(target >= 1.70)  MET", "DenseNet-121 end to end time / inference time", "not measured"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}
