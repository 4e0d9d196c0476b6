package model

import (
	"path/filepath"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/testenv"
	"github.com/methanemap/methanemap/models"
)

func TestDemoCard(t *testing.T) {
	disk, err := LoadCard(filepath.Join(testenv.Root(), "models", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	built, err := LoadCardFS(models.Demo, models.DemoDir, "built-in:demo")
	if err != nil {
		t.Fatal(err)
	}
	if disk.ID() != built.ID() || len(disk.Chip.Inputs[0].Bands) != len(built.Chip.Inputs[0].Bands) {
		t.Errorf("embedded card %s differs from models/demo %s", built.ID(), disk.ID())
	}
	c := disk.Chip
	if c.FootprintM != 720 || c.Inputs[0].Size != 72 {
		t.Errorf("demo chips %d m at %d px, want METER-ML's 720 m at 72 px", c.FootprintM, c.Inputs[0].Size)
	}
	if got := c.Sensors(); len(got) != 3 {
		t.Errorf("demo card reads %v, want naip, s2 and s1", got)
	}
	if len(disk.Classes) != 6 {
		t.Errorf("demo card has %d classes", len(disk.Classes))
	}
}

const minimalCard = `
name: m
version: "1"
chip:
  footprint_m: 720
  inputs:
    - name: x
      size: 8
      bands:
        - {sensor: s2, band: b04, scale: 1, offset: -1000, mean: 0, std: 1, fill: 0}
classes: [cafo]
thresholds: {cafo: 0.4}
`

func TestParseCard(t *testing.T) {
	c, err := ParseCard([]byte(minimalCard))
	if err != nil {
		t.Fatal(err)
	}
	if c.Chip.Inputs[0].Bands[0].Band != "B04" {
		t.Errorf("band not made canonical: %s", c.Chip.Inputs[0].Bands[0].Band)
	}
	tests := []struct{ name, from, to, want string }{
		{"unknown key", "classes:", "clases:", "field clases not found"},
		{"unknown sensor", "sensor: s2", "sensor: landsat", "chip.inputs[0].bands[0].sensor"},
		{"unknown band", "band: b04", "band: B13", "chip.inputs[0].bands[0].band"},
		{"zero std", "std: 1", "std: 0", "chip.inputs[0].bands[0].std"},
		{"zero scale", "scale: 1", "scale: 0", "chip.inputs[0].bands[0].scale"},
		{"no footprint", "footprint_m: 720", "footprint_m: 0", "chip.footprint_m"},
		{"bad size", "size: 8", "size: 0", "chip.inputs[0].size"},
		{"unknown class", "classes: [cafo]", "classes: [volcano]", "classes[0]"},
		{"threshold range", "cafo: 0.4", "cafo: 1.4", "thresholds.cafo"},
		{"no name", "name: m", "name: \"\"", "name: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCard([]byte(strings.Replace(minimalCard, tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := LoadCard(t.TempDir()); err == nil || !mm.IsPermanent(err) || !strings.Contains(err.Error(), "model.yaml") {
		t.Errorf("missing card: %v", err)
	}
}

func FuzzParseCard(f *testing.F) {
	f.Add([]byte(minimalCard))
	f.Add([]byte("chip: {inputs: [{bands: [{sensor: naip}]}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCard(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted card does not validate: %v", err)
		}
		for _, in := range c.Chip.Inputs {
			for _, b := range in.Bands {
				if !(b.Std > 0) || b.Scale == 0 {
					t.Fatalf("accepted band %+v", b)
				}
			}
		}
	})
}
