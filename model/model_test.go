package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/testenv"
	"gopkg.in/yaml.v3"
)

// demoCopy copies the demo model into a temporary directory, applying
// edit to its card.
func demoCopy(t *testing.T, edit func(c *Card)) string {
	t.Helper()
	src := filepath.Join(testenv.Root(), "models", "demo")
	card, err := LoadCard(src)
	if err != nil {
		t.Fatal(err)
	}
	edit(card)
	dir := t.TempDir()
	data, err := yaml.Marshal(card)
	if err != nil {
		t.Fatal(err)
	}
	onnx, err := os.ReadFile(filepath.Join(src, card.ONNX))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CardFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), onnx, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadRefusesBadModels(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Card)
		setup func(dir string)
		want  []string
	}{
		{"wrong sha256", func(c *Card) { c.SHA256 = strings.Repeat("0", 64) }, nil, []string{"sha256: the card says 0000", "model.onnx is"}},
		{"missing onnx", func(c *Card) {}, func(dir string) { os.Remove(filepath.Join(dir, "model.onnx")) }, []string{"onnx:", "model.onnx"}},
		{"corrupt onnx", func(c *Card) {}, func(dir string) {
			os.WriteFile(filepath.Join(dir, "model.onnx"), []byte("\x08\x07garbage that is not protobuf\xff\xff\xff"), 0o644)
		}, []string{"sha256"}},
		{"unknown class", func(c *Card) { c.Classes[0] = "volcano" }, nil, []string{"classes[0]", "volcano"}},
		{"input name", func(c *Card) { c.Chip.Inputs[0].Name = "image" }, nil, []string{"chip.inputs[0].name", `"image" is not an input of the graph (its inputs: chip)`}},
		{"band count", func(c *Card) { c.Chip.Inputs[0].Bands = c.Chip.Inputs[0].Bands[:17] }, nil, []string{"chip.inputs[0].bands", "the card lists 17 bands", "has 18 channels"}},
		{"size", func(c *Card) { c.Chip.Inputs[0].Size = 64 }, nil, []string{"chip.inputs[0].size: the card says 64", "height 72"}},
		{"output name", func(c *Card) { c.Output.Name = "scores" }, nil, []string{"output.name", `"scores" is not an output of the graph (its outputs: logits)`}},
		{"class count", func(c *Card) {
			c.Classes = c.Classes[:5]
			delete(c.Thresholds, mm.WastewaterTreatment)
		}, nil, []string{"classes: the card lists 5 classes", "has 6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := demoCopy(t, tt.edit)
			if tt.setup != nil {
				tt.setup(dir)
			}
			_, err := Load(dir)
			if err == nil {
				t.Fatal("want an error")
			}
			if !mm.IsPermanent(err) {
				t.Errorf("error %v is not permanent", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// a corrupt file with a matching sha256: the graph itself is refused
	garbage := []byte("\x08\x07garbage that is not protobuf\xff\xff\xff")
	dir := demoCopy(t, func(c *Card) { c.SHA256 = sha256hex(garbage) })
	os.WriteFile(filepath.Join(dir, "model.onnx"), garbage, 0o644)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not an ONNX model") {
		t.Errorf("corrupt ONNX with a matching sha256: %v", err)
	}
}
