package model

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// DefaultORTLibraries are where ONNX Runtime's library is looked for when
// no path is configured: where make deps installs it, then the system's
// library search path.
var DefaultORTLibraries = []string{
	"/usr/local/lib/methanemap/libonnxruntime.so.1",
	"libonnxruntime.so.1",
	"libonnxruntime.so",
}

var ortState struct {
	sync.Mutex
	lib   string // the library loaded, once one is
	tried map[string]error
}

// ORTLibrary loads ONNX Runtime from the first of paths that works (once
// per process: the library cannot be swapped afterwards) and returns the
// path it loaded.
func ORTLibrary(paths []string) (string, error) {
	ortState.Lock()
	defer ortState.Unlock()
	if ortState.lib != "" {
		return ortState.lib, nil
	}
	if len(paths) == 0 {
		paths = DefaultORTLibraries
	}
	if ortState.tried == nil {
		ortState.tried = map[string]error{}
	}
	var errs []error
	for _, p := range paths {
		if err, done := ortState.tried[p]; done {
			errs = append(errs, err)
			continue
		}
		err := loadORT(p)
		if err == nil {
			ortState.lib = p
			return p, nil
		}
		ortState.tried[p] = err
		errs = append(errs, err)
	}
	return "", fmt.Errorf("model: ONNX Runtime library not loaded: %w", errors.Join(errs...))
}

func loadORT(p string) error {
	if filepath.IsAbs(p) {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w", p, errors.Unwrap(err))
		}
	}
	ort.SetSharedLibraryPath(p)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

type ortBackend struct {
	sess *ort.DynamicAdvancedSession
}

func newORT(onnx []byte, inputs []string, output string, opts BackendOptions) (*ortBackend, error) {
	if _, err := ORTLibrary(opts.ORTLibraries); err != nil {
		return nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("model: onnxruntime: %w", err)
	}
	defer so.Destroy()
	if opts.Threads > 0 {
		if err := so.SetIntraOpNumThreads(opts.Threads); err != nil {
			return nil, fmt.Errorf("model: onnxruntime threads: %w", err)
		}
		if err := so.SetInterOpNumThreads(1); err != nil {
			return nil, fmt.Errorf("model: onnxruntime threads: %w", err)
		}
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(onnx, inputs, []string{output}, so)
	if err != nil {
		return nil, fmt.Errorf("model: onnxruntime cannot load the graph: %w", err)
	}
	return &ortBackend{sess: sess}, nil
}

func (b *ortBackend) Name() string { return ONNXRuntime }

func (b *ortBackend) Run(inputs []Tensor) (Tensor, error) {
	vals := make([]ort.Value, len(inputs))
	defer func() {
		for _, v := range vals {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, in := range inputs {
		t, err := ort.NewTensor(ort.NewShape(in.Shape...), in.Data)
		if err != nil {
			return Tensor{}, fmt.Errorf("model: onnxruntime input %d: %w", i, err)
		}
		vals[i] = t
	}
	outs := []ort.Value{nil}
	if err := b.sess.Run(vals, outs); err != nil {
		return Tensor{}, fmt.Errorf("model: onnxruntime: %w", err)
	}
	defer outs[0].Destroy()
	t, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return Tensor{}, fmt.Errorf("model: onnxruntime: output is %T, want a float32 tensor", outs[0])
	}
	shape := t.GetShape()
	return Tensor{Shape: append([]int64(nil), shape...), Data: append([]float32(nil), t.GetData()...)}, nil
}

func (b *ortBackend) Close() error { return b.sess.Destroy() }
