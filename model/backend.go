package model

import (
	"errors"
	"fmt"
)

// Tensor is a float32 tensor, row-major.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// Backend runs one ONNX graph. It is safe for use by one goroutine at a
// time; Scorer serialises calls.
type Backend interface {
	// Name is "onnxruntime" or "onnxgo".
	Name() string
	// Run feeds one tensor per graph input, in the order given when the
	// backend was made, and returns the named output.
	Run(inputs []Tensor) (Tensor, error)
	Close() error
}

// Backend names.
const (
	Auto        = "auto"
	ONNXRuntime = "onnxruntime"
	ONNXGo      = "onnxgo"
)

// BackendOptions choose and tune a backend.
type BackendOptions struct {
	// Backend is auto (default: ONNX Runtime when its library loads, else
	// onnx-go), onnxruntime or onnxgo.
	Backend string
	// ORTLibraries are the paths tried, in order, for ONNX Runtime's shared
	// library (default: DefaultORTLibraries).
	ORTLibraries []string
	// Threads is ONNX Runtime's intra-op thread count (0: its default).
	Threads int
}

// ErrUnknownBackend names a backend that does not exist.
var ErrUnknownBackend = errors.New("model: unknown backend (want auto, onnxruntime or onnxgo)")

// NewBackend makes a backend for an ONNX graph with the given inputs, in
// order, and output. With Backend auto it reports, through the error of
// the ONNX Runtime attempt, why it fell back to onnx-go (fallback is nil
// when it did not).
func NewBackend(onnx []byte, g *Graph, inputs []string, output string, opts BackendOptions) (b Backend, fallback error, err error) {
	switch opts.Backend {
	case "", Auto:
		b, err := newORT(onnx, inputs, output, opts)
		if err == nil {
			return b, nil, nil
		}
		gb, gerr := newOnnxGo(onnx, g, inputs, output)
		if gerr != nil {
			return nil, err, fmt.Errorf("model: no backend can run the model: onnxruntime: %v; onnxgo: %w", err, gerr)
		}
		return gb, err, nil
	case ONNXRuntime:
		b, err := newORT(onnx, inputs, output, opts)
		return b, nil, err
	case ONNXGo:
		b, err := newOnnxGo(onnx, g, inputs, output)
		return b, nil, err
	}
	return nil, nil, fmt.Errorf("%w: %q", ErrUnknownBackend, opts.Backend)
}
