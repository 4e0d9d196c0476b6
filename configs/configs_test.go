package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, []byte("model:\n  dir: /m\n  backend: onnxgo\ntiles:\n  min_valid: 0.8\n"), 0o644)
	t.Setenv("METHANEMAP_TILES_MAX_CLOUD", "0.2")
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model.Dir != "/m" || c.Model.Backend != "onnxgo" || c.Tiles.MinValid != 0.8 || c.Tiles.MaxCloud != 0.2 {
		t.Errorf("got %+v", c)
	}
	empty := filepath.Join(dir, "empty.yaml")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Load(empty); err != nil {
		t.Errorf("empty file: %v", err)
	}
	for _, tt := range []struct{ content, env, want string }{
		{"tiles:\n  min_vaild: 0.8\n", "", "field min_vaild not found"},
		{"tiles:\n  min_valid: 2\n", "", "tiles.min_valid"},
		{"model:\n  backend: tensorflow\n", "", "model.backend"},
		{"model:\n  batch_size: 0\n", "", "model.batch_size"},
		{"tiles:\n  min_valid: .nan\n", "", "tiles.min_valid"},
		{"tiles:\n  min_valid: -.inf\n", "", "tiles.min_valid"},
		{"tiles:\n  max_chips: 0\n", "", "tiles.max_chips"},
		{"feed:\n  max_cloud: .nan\n", "", "feed.max_cloud"},
		{"", "x", "METHANEMAP_TILES_STRIDE_M"}, // last: the variable stays set
	} {
		os.WriteFile(p, []byte(tt.content), 0o644)
		if tt.env != "" {
			t.Setenv("METHANEMAP_TILES_STRIDE_M", tt.env)
		}
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.content, err, tt.want)
		}
	}
}

// TestDocumentedConfig loads the documented file: every key it names must
// exist (unknown keys are errors) and its values must be the defaults.
func TestDocumentedConfig(t *testing.T) {
	c, err := Load("methanemap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Model != d.Model || c.Ingest.GDALCacheMB != d.Ingest.GDALCacheMB || len(c.Ingest.Allow) != 0 || c.Tiles != d.Tiles || c.Log != d.Log ||
		fmt.Sprint(c.Feed) != fmt.Sprint(d.Feed) {
		t.Errorf("documented config %+v differs from the defaults %+v", c, d)
	}
	// and it names every key the Config has
	var doc, all map[string]any
	data, _ := os.ReadFile("methanemap.yaml")
	yaml.Unmarshal(data, &doc)
	def, _ := yaml.Marshal(d)
	yaml.Unmarshal(def, &all)
	var missing func(prefix string, want, have map[string]any)
	missing = func(prefix string, want, have map[string]any) {
		for k, v := range want {
			hv, ok := have[k]
			if !ok {
				t.Errorf("methanemap.yaml does not document %s%s", prefix, k)
				continue
			}
			if wm, ok := v.(map[string]any); ok {
				hm, _ := hv.(map[string]any)
				missing(prefix+k+".", wm, hm)
			}
		}
	}
	missing("", all, doc)
}
