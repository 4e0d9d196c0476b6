package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/models"
)

func runModel(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "inspect" {
		return usagef("model: want 'model inspect PATH' (a model directory or an .onnx file)")
	}
	if len(args) > 2 {
		return usagef("model inspect: one PATH at most, got %q", args[1:])
	}
	path := cfg.Model.Dir // empty: the built-in demo model
	if len(args) == 2 {
		path = args[1]
	}
	return inspect(stdout, cfg, path)
}

// inspect prints the card (when there is one), the graph and which
// backends can run it.
func inspect(w io.Writer, cfg configs.Config, path string) error {
	var g *model.Graph
	var data []byte
	var card *model.Card
	switch {
	case !strings.HasSuffix(path, ".onnx"):
		m, err := loadModel(path)
		if err != nil {
			return err
		}
		card, g, data = m.Card, m.Graph, m.ONNX
	default:
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return mm.Permanent(err)
		}
		if g, err = model.ParseGraph(data); err != nil {
			return mm.Permanentf("%s: %w", path, err)
		}
	}
	if card != nil {
		printCard(w, card)
	}
	fmt.Fprintf(w, "graph: ONNX IR %d, opset %d, producer %q\n", g.IRVersion, g.Opset(), g.Producer)
	for _, in := range g.Inputs {
		fmt.Fprintf(w, "  input  %s\n", in)
	}
	for _, out := range g.Outputs {
		fmt.Fprintf(w, "  output %s\n", out)
	}
	fmt.Fprintf(w, "  operators: %s\n", strings.Join(g.OpTypes(), " "))
	for k, v := range g.Metadata {
		fmt.Fprintf(w, "  metadata %s = %s\n", k, v)
	}
	var inputs []string
	for _, in := range g.Inputs {
		inputs = append(inputs, in.Name)
	}
	output := ""
	if len(g.Outputs) > 0 {
		output = g.Outputs[0].Name
	}
	if card != nil {
		output = card.Output.Name
	}
	fmt.Fprintln(w, "backends:")
	for _, name := range []string{model.ONNXRuntime, model.ONNXGo} {
		opts := backendOptions(cfg, name)
		b, _, err := model.NewBackend(data, g, inputs, output, opts)
		if err != nil {
			fmt.Fprintf(w, "  %-12s no: %v\n", name, err)
			continue
		}
		b.Close()
		detail := ""
		if name == model.ONNXRuntime {
			lib, _ := model.ORTLibrary(opts.ORTLibraries)
			detail = " (library " + lib + ")"
		}
		fmt.Fprintf(w, "  %-12s yes%s\n", name, detail)
	}
	return nil
}

func printCard(w io.Writer, c *model.Card) {
	fmt.Fprintf(w, "card: %s (%s)\n", c.ID(), filepath.Join(c.Dir, model.CardFile))
	fmt.Fprintf(w, "  onnx %s sha256 %s\n", c.ONNX, c.SHA256)
	fmt.Fprintf(w, "  chips %d m, stride %d m\n", c.Chip.FootprintM, c.Chip.StrideM)
	for _, in := range c.Chip.Inputs {
		var bands []string
		for _, b := range in.Bands {
			bands = append(bands, b.Name())
		}
		fmt.Fprintf(w, "  input %s: %d x %d px, %d bands: %s\n", in.Name, in.Size, in.Size, len(in.Bands), strings.Join(bands, " "))
	}
	fmt.Fprintf(w, "  output %s, sigmoid %v\n", c.Output.Name, c.Output.Sigmoid)
	for _, cl := range c.Classes {
		fmt.Fprintf(w, "  class %-32s threshold %.2f\n", cl, c.Threshold(cl))
	}
}

// loadModel loads a model directory, or the built-in demo model when dir
// is empty.
func loadModel(dir string) (*model.Model, error) {
	if dir == "" {
		return model.LoadFS(models.Demo, models.DemoDir, "built-in:demo")
	}
	return model.Load(dir)
}

// backendOptions turns the configuration into backend options, with the
// backend name given (auto, onnxruntime, onnxgo).
func backendOptions(cfg configs.Config, name string) model.BackendOptions {
	libs := model.DefaultORTLibraries
	if cfg.Model.ORTLibrary != "" {
		libs = append([]string{cfg.Model.ORTLibrary}, libs...)
	}
	return model.BackendOptions{Backend: name, ORTLibraries: libs, Threads: cfg.Model.Threads}
}

// newScorer loads a model (empty dir: the built-in demo) and its backend,
// and logs which backend runs it and, when auto fell back, why.
func newScorer(cfg configs.Config, dir, backend string, batch int, log *slog.Logger) (*model.Scorer, error) {
	m, err := loadModel(dir)
	if err != nil {
		return nil, err
	}
	scorer, err := model.NewScorer(m, model.ScorerOptions{BackendOptions: backendOptions(cfg, backend), BatchSize: batch})
	if err != nil {
		return nil, err
	}
	if scorer.Fallback != nil {
		log.Warn("ONNX Runtime unavailable, using onnx-go", "reason", scorer.Fallback)
	}
	log.Info("model", "model", m.Card.ID(), "backend", scorer.Backend(), "batch", scorer.BatchSize())
	return scorer, nil
}
