package model

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/tiles"
	"github.com/paulmach/orb"

	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/internal/testenv"
)

// TestTrainingSmoke writes a tiny METER-ML-layout dataset, trains one epoch
// with training/train.py (exported with a fixed batch of 4), loads the
// result and scores chips with both backends: the padding of the fixed
// batch must not change any chip's scores.
func TestTrainingSmoke(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import torch, onnx, numpy, PIL, yaml").Run(); err != nil {
		t.Fatalf("%s lacks torch/onnx/numpy/PIL/yaml (make deps installs them): %v", py, err)
	}
	data, out := t.TempDir(), t.TempDir()
	n, err := fixtures.WriteDataset(context.Background(), data, fixtures.DatasetOptions{N: 10, Seed: 3, SizeKM: 2.5})
	if err != nil || n != 10 {
		t.Fatalf("dataset: %d locations, %v", n, err)
	}
	root := testenv.Root()
	cmd := exec.Command(py, filepath.Join(root, "training", "train.py"), "--data", data,
		"--card", filepath.Join(root, "models", "demo", "model.yaml"), "--out", out, "--epochs", "1", "--fixed-batch", "4")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("train.py: %v\n%s", err, b)
	}
	m, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.FixedBatch() != 4 {
		t.Fatalf("fixed batch %d, want 4", m.FixedBatch())
	}
	for _, b := range []string{ONNXRuntime, ONNXGo} {
		checkReference(t, m, out, b)
	}
	chips := fixtureChips(t, m.Card, 6)
	together := scoreWith(t, m, ONNXRuntime, 16, chips) // 4 + 2 padded
	for i := range chips {
		alone := scoreWith(t, m, ONNXRuntime, 16, chips[i:i+1]) // 1 + 3 padded
		if d := maxDiff(alone, together[i:i+1]); d > 1e-6 {
			t.Errorf("chip %d scored alone differs by %g from its score in a batch", i, d)
		}
	}
	if d := maxDiff(scoreWith(t, m, ONNXGo, 16, chips), together); d > 1e-4 {
		t.Errorf("onnx-go differs from onnxruntime by %g", d)
	}
}

// TestTrainingInputsMatchChips checks that training/train.py builds, from a
// location in METER-ML's layout, the same model input the Go chip cutter
// cuts from the scene for the same ground: exactly for bands at or below
// the card's resolution, and away from the edges for bands it enlarges
// (GDAL sees past a chip's edge, the script cannot). With Sentinel-2 DNs
// of baseline 02.14 (no +1000) too: the script, told so, fits the offsets
// as the cutter fits them to the scene; not told, its Sentinel-2 bands
// differ.
func TestTrainingInputsMatchChips(t *testing.T) {
	card, err := LoadCard(filepath.Join(testenv.Root(), "models", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	enlarged := map[string]bool{}
	for _, b := range fixtures.S2Bands20m {
		enlarged["s2:"+b] = true
	}
	for _, b := range fixtures.S2Bands60m {
		enlarged["s2:"+b] = true
	}
	for _, sc := range []struct {
		baseline string
		boas     map[string]bool // the script's --s2-boa-add-offset: whether its input must match
	}{{"04.00", map[string]bool{"-1000": true}}, {"02.14", map[string]bool{"0": true, "-1000": false}}} {
		dir := trainingLocation(t, card, sc.baseline)
		for boa, match := range sc.boas {
			t.Run(sc.baseline+"/"+boa, func(t *testing.T) {
				lines := trainingInputDiffs(t, dir, boa)
				if len(lines) != len(card.Chip.Inputs[0].Bands) {
					t.Fatalf("python compared %d bands:\n%s", len(lines), strings.Join(lines, "\n"))
				}
				for _, line := range lines {
					var band string
					var all, interior float64
					fmt.Sscan(line, &band, &all, &interior)
					differs := enlarged[band] && interior > 1e-4 || !enlarged[band] && all > 1e-4
					s2 := strings.HasPrefix(band, "s2:") && band != "s2:SCL"
					switch {
					case match && differs:
						t.Errorf("%s: train.py's input differs from the Go chip by %g (%g away from the edges)", band, all, interior)
					case !match && s2 && interior < 0.5:
						t.Errorf("%s: train.py, not told the DNs lack the +1000, still matches the Go chip (%g)", band, interior)
					case !match && !s2 && differs:
						t.Errorf("%s: differs by %g, though only Sentinel-2 should", band, all)
					}
				}
			})
		}
	}
}

// trainingLocation cuts a chip wholly inside a fixture scene rendered at
// the Sentinel-2 baseline, and writes in a new directory the chip's input
// (go.f32) and the same ground in METER-ML's layout (loc).
func trainingLocation(t *testing.T, card *Card, baseline string) string {
	res, err := fixtures.Write(t.TempDir(), fixtures.Options{SizeKM: 2.5, Center: orb.Point{-96.45, 43.49},
		Plants: []fixtures.Plant{{Class: mm.CoalMine, Lon: -96.45, Lat: 43.49}}, S2Baseline: baseline})
	if err != nil {
		t.Fatal(err)
	}
	ingest.ResolveHrefs(res.Scene, res.Dir)
	src, err := ingest.Open(context.Background(), res.Scene, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	grid, err := tiles.NewGrid(src, tiles.GridOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tiles.NewCutter(src, grid, card.Chip, tiles.CutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// a chip wholly inside every sensor: at the scene's edges the two sides
	// see nodata differently (GDAL knows it, the arrays hold zeros)
	var chip mm.Chip
	for _, cand := range grid.Chips {
		if chip, _, err = c.Cut(context.Background(), cand); err != nil {
			t.Fatal(err)
		}
		if chip.ValidFraction == 1 {
			break
		}
	}
	if chip.ValidFraction != 1 {
		t.Fatal("no chip wholly inside the scene")
	}
	id := chip.ID
	dir := t.TempDir()
	if err := fixtures.WriteLocation(filepath.Join(dir, "loc"), src, grid.EPSG, id.Bounds()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4*len(chip.Inputs[0].Data))
	for i, v := range chip.Inputs[0].Data {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	if err := os.WriteFile(filepath.Join(dir, "go.f32"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// trainingInputDiffs has train.py build the input of trainingLocation's
// dir with --s2-boa-add-offset boa and compare it with the Go chip: one
// line per band, "<band> <largest difference> <largest away from the
// edges>".
func trainingInputDiffs(t *testing.T, dir, boa string) []string {
	script := `
import sys, yaml, numpy as np
sys.path.insert(0, sys.argv[1])
import train
inp = yaml.safe_load(open(sys.argv[2]))["chip"]["inputs"][0]
py = train.build_input(sys.argv[3] + "/loc", inp, float(sys.argv[4]))
go = np.fromfile(sys.argv[3] + "/go.f32", dtype=np.float32).reshape(py.shape)
for i, b in enumerate(inp["bands"]):
    d = np.abs(py[i] - go[i])
    print(b["sensor"] + ":" + b["band"], float(d.max()), float(d[4:-4, 4:-4].max()))
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, filepath.Join(testenv.Root(), "training"),
		filepath.Join(testenv.Root(), "models", "demo", "model.yaml"), dir, boa).Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}
