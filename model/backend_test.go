package model

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/methanemap/methanemap/internal/testenv"
)

func realModel(t *testing.T, name string) ([]byte, *Graph) {
	t.Helper()
	data, err := os.ReadFile(testenv.RealData(t, filepath.Join("models", name)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseGraph(data)
	if err != nil {
		t.Fatal(err)
	}
	return data, g
}

// constant makes a tensor of the shape filled per channel (axis 1).
func constant(shape []int64, perChannel func(c int64) float32) Tensor {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	inner := n / shape[0] / shape[1]
	data := make([]float32, n)
	for i := range data {
		data[i] = perChannel((int64(i) / inner) % shape[1])
	}
	return Tensor{Shape: shape, Data: data}
}

// TestThirdPartyModelsRunOnONNXRuntime loads the real third-party models
// and runs them with ONNX Runtime.
func TestThirdPartyModelsRunOnONNXRuntime(t *testing.T) {
	opts := BackendOptions{Backend: ONNXRuntime, Threads: 1}
	t.Run("sigmoid red detector", func(t *testing.T) {
		data, g := realModel(t, "one_output_sigmoid_red_detector.onnx")
		b, _, err := NewBackend(data, g, []string{"input"}, "output", opts)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		mean := func(red float32) float64 {
			out, err := b.Run([]Tensor{constant([]int64{1, 3, 512, 512}, func(c int64) float32 {
				if c == 0 {
					return red
				}
				return 0.1
			})})
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Shape) != 4 || out.Shape[2] != 512 {
				t.Fatalf("output shape %v", out.Shape)
			}
			s := 0.0
			for _, v := range out.Data {
				if v < 0 || v > 1 || math.IsNaN(float64(v)) {
					t.Fatalf("sigmoid output %v out of [0,1]", v)
				}
				s += float64(v)
			}
			return s / float64(len(out.Data))
		}
		red, grey := mean(0.9), mean(0.1)
		if red <= grey {
			t.Errorf("red detector: red image %.3f, grey image %.3f", red, grey)
		}
	})
	t.Run("model with metadata", func(t *testing.T) {
		data, g := realModel(t, "dummy_recognition_model.onnx")
		if g.Metadata["model_type"] == "" {
			t.Errorf("metadata_props not read: %v", g.Metadata)
		}
		b, _, err := NewBackend(data, g, []string{"input"}, "output", opts)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		out, err := b.Run([]Tensor{constant([]int64{2, 3, 224, 224}, func(int64) float32 { return 0.5 })})
		if err != nil || len(out.Shape) != 2 || out.Shape[0] != 2 || out.Shape[1] != 224 {
			t.Fatalf("out %v, err %v", out.Shape, err)
		}
	})
	t.Run("unsorted keras graph", func(t *testing.T) {
		data, g := realModel(t, "keras_mnist-sm_wuhanstudio_unsorted.onnx")
		b, _, err := NewBackend(data, g, []string{g.Inputs[0].Name}, g.Outputs[0].Name, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		out, err := b.Run([]Tensor{constant([]int64{3, 28, 28, 1}, func(int64) float32 { return 0.2 })})
		if err != nil {
			t.Fatal(err)
		}
		if out.Shape[0] != 3 || out.Shape[1] != 10 {
			t.Fatalf("shape %v", out.Shape)
		}
		sum := 0.0
		for _, v := range out.Data[:10] {
			sum += float64(v)
		}
		if math.Abs(sum-1) > 1e-4 {
			t.Errorf("softmax row sums to %v", sum)
		}
	})
}

func TestOnnxGoRefusesMissingOps(t *testing.T) {
	data, g := realModel(t, "dummy_recognition_model.onnx")
	_, _, err := NewBackend(data, g, []string{"input"}, "output", BackendOptions{Backend: ONNXGo})
	if err == nil || !strings.Contains(err.Error(), "ReduceSum") {
		t.Fatalf("error %v, want onnx-go to name ReduceSum as missing", err)
	}
	if _, _, err := NewBackend(data, g, []string{"input"}, "output", BackendOptions{Backend: "tensorflow"}); err == nil {
		t.Fatal("unknown backend accepted")
	}
}
