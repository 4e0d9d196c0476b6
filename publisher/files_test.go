package publisher

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCleanStaging: the staging directory of a write cut short is removed
// once it is old; a young one (another daemon's, writing) is left.
func TestCleanStaging(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, ".s1.staging-1")
	young := filepath.Join(dir, ".s2.staging-2")
	for _, d := range []string{old, young} {
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "s.detections.geojson"), []byte("{}"), 0o644)
	}
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(old, past, past)
	if n := CleanStaging(dir, time.Hour); n != 1 {
		t.Errorf("removed %d, want 1", n)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("the old staging directory is still there")
	}
	if _, err := os.Stat(young); err != nil {
		t.Error("the young staging directory was removed")
	}
}
