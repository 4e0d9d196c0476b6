package model

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/methanemap/methanemap/internal/testenv"
)

// TestAutoFallsBackToOnnxGo runs in a fresh process (ONNX Runtime can be
// loaded once per process) where no ONNX Runtime library can be found:
// auto must pick onnx-go and say why.
func TestAutoFallsBackToOnnxGo(t *testing.T) {
	if os.Getenv("METHANEMAP_NO_ORT_CHILD") != "" {
		m, err := Load(filepath.Join(testenv.Root(), "models", "demo"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewScorer(m, ScorerOptions{BackendOptions: BackendOptions{Backend: Auto, ORTLibraries: []string{"/nonexistent/libonnxruntime.so.1"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.Backend() != ONNXGo || s.Fallback == nil || !strings.Contains(s.Fallback.Error(), "/nonexistent/libonnxruntime.so.1") {
			t.Fatalf("backend %s, fallback reason %v", s.Backend(), s.Fallback)
		}
		if _, _, err := NewBackend(m.ONNX, m.Graph, []string{"chip"}, "logits", BackendOptions{Backend: ONNXRuntime, ORTLibraries: []string{"/nonexistent/libonnxruntime.so.1"}}); err == nil {
			t.Fatal("onnxruntime without a library succeeded")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAutoFallsBackToOnnxGo$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "METHANEMAP_NO_ORT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestAutoFallsBackToOnnxGo") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
