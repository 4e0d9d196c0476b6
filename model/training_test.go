package model

import (
	"os/exec"
	"path/filepath"
	"testing"

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
	n, err := fixtures.WriteDataset(data, fixtures.DatasetOptions{N: 10, Seed: 3, SizeKM: 2.5})
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
