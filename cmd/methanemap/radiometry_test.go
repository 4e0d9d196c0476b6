package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestScoreOlderBaselineScene scores the same ground rendered with
// Sentinel-2 DNs of processing baseline 04.00 and of 02.14 (no +1000), each
// scene message giving its baseline: the detections must be the same. The
// 02.14 scene without its baseline is scored as if it carried the offset,
// with a warning that says so, and its detections change.
func TestScoreOlderBaselineScene(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, extra ...string) string {
		out := filepath.Join(dir, name)
		args := append([]string{"fixtures", "--out", out, "--size-km", "3", "--seed", "2", "--no-cloud"}, extra...)
		if code, _, stderr := cli(t, args...); code != 0 {
			t.Fatalf("fixtures %v: exit %d: %s", extra, code, stderr)
		}
		return filepath.Join(out, "scene.json")
	}
	score := func(scene string) (map[string]float64, string) {
		out := filepath.Join(filepath.Dir(scene), "det.geojson")
		code, stdout, stderr := cli(t, "score", "--scene", scene, "-o", out, "--quiet", "--force")
		if code != 0 {
			t.Fatalf("score %s: exit %d\n%s\n%s", scene, code, stdout, stderr)
		}
		got := map[string]float64{}
		for _, f := range readFC(t, out).Features {
			got[f.ID.(string)] = f.Properties.MustFloat64("score")
		}
		return got, stderr
	}
	now, _ := score(write("b0400"))
	oldScene := write("b0214", "--s2-baseline", "02.14")
	old, warn := score(oldScene)
	if len(now) == 0 {
		t.Fatal("no detection in the baseline 04.00 scene: nothing to compare")
	}
	if strings.Contains(warn, "processing_baseline") {
		t.Errorf("a warning for a scene that gives its baseline: %s", warn)
	}
	for id, s := range now {
		if o, ok := old[id]; !ok || math.Abs(o-s) > 1e-4 {
			t.Errorf("detection %s: score %.5f at baseline 04.00, %.5f (found %v) at 02.14", id, s, o, ok)
		}
	}
	for id := range old {
		if _, ok := now[id]; !ok {
			t.Errorf("detection %s only at baseline 02.14", id)
		}
	}

	// the same 02.14 DNs, the baseline left out
	var msg map[string]any
	data, err := os.ReadFile(oldScene)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		t.Fatal(err)
	}
	s2 := msg["assets"].(map[string]any)["s2"].(map[string]any)
	if s2["processing_baseline"] != "02.14" {
		t.Fatalf("the fixture's scene message gives baseline %v", s2["processing_baseline"])
	}
	delete(s2, "processing_baseline")
	data, _ = json.Marshal(msg)
	unsaid := filepath.Join(filepath.Dir(oldScene), "unsaid.json")
	if err := os.WriteFile(unsaid, data, 0o644); err != nil {
		t.Fatal(err)
	}
	wrong, warn := score(unsaid)
	if !strings.Contains(warn, "processing_baseline") || !strings.Contains(warn, "04.00") {
		t.Errorf("no warning that the offset is assumed; stderr:\n%s", warn)
	}
	changed := len(wrong) != len(now)
	for id, s := range now {
		if math.Abs(wrong[id]-s) > 0.01 {
			changed = true
		}
	}
	if !changed {
		t.Error("scoring the 02.14 DNs as 04.00 ones changed nothing: the test cannot tell the offset is applied")
	}

	// exported chips keep the files' DNs and say how to read them
	for scene, want := range map[string]struct{ offset, md string }{oldScene: {"0", "0"}, unsaid: {"-0.1", "-1000 (ASSUMED)"}} {
		out := filepath.Join(t.TempDir(), "chips")
		if code, _, stderr := cli(t, "chips", "--scene", scene, "--out", out, "--limit", "1"); code != 0 {
			t.Fatalf("chips %s: exit %d: %s", scene, code, stderr)
		}
		files, _ := filepath.Glob(filepath.Join(out, "*", "*.tif"))
		if len(files) != 1 {
			t.Fatalf("chips %s: %d files", scene, len(files))
		}
		info := gdalinfo(t, files[0])
		if got := info.Metadata[""]["S2_BOA_ADD_OFFSET"]; got != want.md {
			t.Errorf("chips of %s: S2_BOA_ADD_OFFSET %q, want %q", filepath.Base(scene), got, want.md)
		}
		for _, b := range info.Bands {
			if strings.HasPrefix(b.Description, "s2:") && (b.Offset == nil || strconv.FormatFloat(*b.Offset, 'f', -1, 64) != want.offset) {
				t.Errorf("chips of %s: band %s offset %v, want %s", filepath.Base(scene), b.Description, b.Offset, want.offset)
			}
		}
	}

	if code, _, stderr := cli(t, "fixtures", "--out", filepath.Join(dir, "bad"), "--s2-baseline", "4.0"); code != 2 || !strings.Contains(stderr, "processing_baseline") {
		t.Errorf("fixtures --s2-baseline 4.0: exit %d, %s", code, stderr)
	}
	if code, _, stderr := cli(t, "fixtures", "--out", filepath.Join(dir, "bad"), "--s1-units", "dn"); code != 2 || !strings.Contains(stderr, "units") {
		t.Errorf("fixtures --s1-units dn: exit %d, %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); !os.IsNotExist(err) {
		t.Errorf("a refused fixtures run left %s behind (%v)", filepath.Join(dir, "bad"), err)
	}
}
