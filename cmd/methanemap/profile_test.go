package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/methanemap/methanemap/internal/testenv"
)

// TestScoreProfiles writes pprof profiles of a score run and reads them
// back with go tool pprof: CPU samples under the pipeline, the chips'
// values among the allocations; and refuses, before any work, a profile
// file that exists or that is the run's output.
func TestScoreProfiles(t *testing.T) {
	scene := filepath.Join(fixtureDir(t), "scene.json")
	tmp := t.TempDir()
	cpu, mem, out := filepath.Join(tmp, "cpu.pprof"), filepath.Join(tmp, "mem.pprof"), filepath.Join(tmp, "det.geojson")
	if code, stdout, stderr := cli(t, "score", "--scene", scene, "-o", out, "--quiet", "--cpuprofile", cpu, "--memprubfile", mem); code != 2 || !strings.Contains(stderr, "memprubfile") {
		t.Fatalf("a misspelt flag: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := cli(t, "score", "--scene", scene, "-o", out, "--quiet", "--cpuprofile", cpu, "--memprofile", mem); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	gocmd := testenv.Tool(t, "go") // go test puts its toolchain first in PATH
	top := testenv.Run(t, "", gocmd, "tool", "pprof", "-top", "-cum", cpu)
	if !strings.Contains(top, "Type: cpu") || !strings.Contains(top, "pipeline.Run") {
		t.Errorf("the CPU profile has no samples under pipeline.Run:\n%s", top)
	}
	top = testenv.Run(t, "", gocmd, "tool", "pprof", "-top", "-sample_index", "alloc_space", mem)
	if !strings.Contains(top, "Type: alloc_space") || !strings.Contains(top, "tiles.") {
		t.Errorf("the allocation profile has no allocations in tiles:\n%s", top)
	}
	before, _ := os.ReadFile(cpu)
	os.Remove(out)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--cpuprofile", cpu}, "exists"},
		{[]string{"--memprofile", mem}, "exists"},
		{[]string{"--cpuprofile", out}, "another output"},
		{[]string{"--cpuprofile", filepath.Join(tmp, "p.pprof"), "--memprofile", filepath.Join(tmp, ".", "p.pprof")}, "another output"},
		{[]string{"--cpuprofile", filepath.Join(tmp, "no", "such", "dir", "cpu.pprof")}, "--cpuprofile"},
		{[]string{"--memprofile", filepath.Join(tmp, "no", "such", "dir", "mem.pprof")}, "no directory"},
		{[]string{"--memprofile", tmp, "--force"}, "exists"},
	} {
		args := append([]string{"score", "--scene", scene, "-o", out, "--quiet"}, tt.args...)
		if code, _, stderr := cli(t, args...); code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, %s", tt.args, code, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: the refused run wrote %s", tt.args, out)
			os.Remove(out)
		}
	}
	if after, _ := os.ReadFile(cpu); string(after) != string(before) {
		t.Error("a refused run changed the existing profile")
	}
}
