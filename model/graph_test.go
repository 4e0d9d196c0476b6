package model

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/methanemap/methanemap/internal/testenv"
)

func TestParseGraphRealModels(t *testing.T) {
	tests := []struct {
		file   string
		input  string
		output string
	}{
		{"one_output_sigmoid_red_detector.onnx", "input FLOAT[batch_size,3,512,512]", "output FLOAT[Sigmoidoutput_dim_0,1,512,512]"},
		{"dummy_recognition_model.onnx", "input FLOAT[batch_size,3,224,224]", "output FLOAT[batch_size,224]"},
		{"keras_mnist-sm_wuhanstudio_unsorted.onnx", "conv2d_5_input FLOAT[N,28,28,1]", "dense_6/Softmax:0 FLOAT[?,10]"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(testenv.RealData(t, filepath.Join("models", tt.file)))
			if err != nil {
				t.Fatal(err)
			}
			g, err := ParseGraph(data)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("ir %d opset %d producer %q inputs %v outputs %v ops %v meta %v", g.IRVersion, g.Opset(), g.Producer, g.Inputs, g.Outputs, g.OpTypes(), g.Metadata)
			if len(g.Inputs) != 1 || g.Inputs[0].String() != tt.input || len(g.Outputs) != 1 || g.Outputs[0].String() != tt.output || len(g.Ops) == 0 {
				t.Errorf("inputs %v outputs %v ops %v, want %s and %s", g.Inputs, g.Outputs, g.Ops, tt.input, tt.output)
			}
		})
	}
	if _, err := ParseGraph([]byte("not a model at all")); err == nil {
		t.Error("garbage parsed as ONNX")
	}
}
