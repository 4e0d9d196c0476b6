package model

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"

	mm "github.com/methanemap/methanemap"
	"gopkg.in/yaml.v3"
)

// CardFile is the model card's file name inside a model directory.
const CardFile = "model.yaml"

// Card is a model card.
type Card struct {
	Name    string      `yaml:"name"`
	Version string      `yaml:"version"`
	ONNX    string      `yaml:"onnx"`   // file name beside the card
	SHA256  string      `yaml:"sha256"` // of the ONNX file
	Chip    mm.ChipSpec `yaml:"chip"`
	Output  struct {
		Name    string `yaml:"name"`
		Sigmoid bool   `yaml:"sigmoid"`
	} `yaml:"output"`
	Classes    []mm.Class           `yaml:"classes"`    // output index → class
	Thresholds map[mm.Class]float64 `yaml:"thresholds"` // per class, default 0.5

	// Dir is the directory the card was read from.
	Dir string `yaml:"-"`
}

// ID is "name@version", as detections carry it.
func (c *Card) ID() string { return c.Name + "@" + c.Version }

// LoadCard reads and checks dir/model.yaml. It does not open the ONNX file.
func LoadCard(dir string) (*Card, error) {
	return LoadCardFS(os.DirFS(dir), ".", dir)
}

// LoadCardFS reads and checks dir/model.yaml of fsys (for example the demo
// model embedded in the binary); name is how errors and Card.Dir call it.
func LoadCardFS(fsys fs.FS, dir, name string) (*Card, error) {
	data, err := fs.ReadFile(fsys, path.Join(dir, CardFile))
	if err != nil {
		return nil, mm.Permanentf("model: %s: %w", filepath.Join(name, CardFile), err)
	}
	c, err := ParseCard(data)
	if err != nil {
		return nil, mm.Permanentf("model: %s: %w", filepath.Join(name, CardFile), err)
	}
	c.Dir = name
	return c, nil
}

// ParseCard decodes a model card strictly (unknown keys are errors: a typo
// in a card silently changes what the model is fed) and validates it,
// naming the field of every problem.
func ParseCard(data []byte) (*Card, error) {
	var c Card
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("not a model card: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the card's fields.
func (c *Card) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, mm.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Name == "" {
		bad("name", "required")
	}
	if c.Version == "" {
		bad("version", "required")
	}
	if c.Chip.FootprintM <= 0 {
		bad("chip.footprint_m", "must be positive, got %d", c.Chip.FootprintM)
	}
	if c.Chip.StrideM < 0 {
		bad("chip.stride_m", "must not be negative, got %d", c.Chip.StrideM)
	}
	if len(c.Chip.Inputs) == 0 {
		bad("chip.inputs", "at least one input is required")
	}
	for i, in := range c.Chip.Inputs {
		f := fmt.Sprintf("chip.inputs[%d]", i)
		if in.Name == "" {
			bad(f+".name", "required")
		}
		if in.Size < 1 || in.Size > 4096 {
			bad(f+".size", "must be 1 to 4096, got %d", in.Size)
		}
		if len(in.Bands) == 0 {
			bad(f+".bands", "at least one band is required")
		}
		for j, b := range in.Bands {
			bf := fmt.Sprintf("%s.bands[%d]", f, j)
			if !mm.KnownSensor(b.Sensor) {
				bad(bf+".sensor", "unknown sensor %q (want naip, s2 or s1)", b.Sensor)
			} else if canon, err := b.Sensor.CanonicalBand(b.Band); err != nil {
				bad(bf+".band", "%v", err)
			} else {
				c.Chip.Inputs[i].Bands[j].Band = canon
			}
			if b.Scale == 0 || math.IsNaN(b.Scale) || math.IsInf(b.Scale, 0) {
				bad(bf+".scale", "must be a non-zero number, got %v", b.Scale)
			}
			if !(b.Std > 0) || math.IsInf(b.Std, 0) {
				bad(bf+".std", "must be positive, got %v", b.Std)
			}
			for name, v := range map[string]float64{"offset": b.Offset, "mean": b.Mean, "fill": b.Fill} {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					bad(bf+"."+name, "must be a finite number")
				}
			}
		}
	}
	seen := map[mm.Class]bool{}
	for i, cl := range c.Classes {
		if _, err := mm.ParseClass(string(cl)); err != nil {
			bad(fmt.Sprintf("classes[%d]", i), "%v", err)
		}
		if seen[cl] {
			bad(fmt.Sprintf("classes[%d]", i), "class %s listed twice", cl)
		}
		seen[cl] = true
	}
	for cl, t := range c.Thresholds {
		if !seen[cl] {
			bad("thresholds."+string(cl), "not one of the card's classes")
		}
		if !(t >= 0 && t <= 1) {
			bad("thresholds."+string(cl), "must be in [0, 1], got %v", t)
		}
	}
	return errors.Join(errs...)
}
