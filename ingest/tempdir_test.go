package ingest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
)

// TestStaleTempCleaned: the band VRTs of a process that died are removed;
// a live process's (locked) and a just-made directory are left alone.
func TestStaleTempCleaned(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	old := time.Now().Add(-time.Hour)
	mk := func(name string) string {
		d := filepath.Join(os.TempDir(), name)
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "bands-1.vrt"), []byte("<VRTDataset/>"), 0o644)
		return d
	}
	dead := mk(tempPrefix + "dead")
	live := mk(tempPrefix + "live")
	fresh := mk(tempPrefix + "fresh")
	for _, d := range []string{dead, live} {
		os.Chtimes(d, old, old)
	}
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(os.TempDir(), "methanemap-bands-123.vrt")
	os.WriteFile(loose, nil, 0o644)
	os.Chtimes(loose, old.Add(-48*time.Hour), old.Add(-48*time.Hour))
	if n := CleanStaleTemp(time.Minute); n != 2 {
		t.Errorf("removed %d, want 2 (the dead process's directory, the old loose file)", n)
	}
	for p, want := range map[string]bool{dead: false, live: true, fresh: true, loose: false} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", p, err == nil, want)
		}
	}
}

// TestBandVRTsInProcessDir: the band groups' VRTs are written in this
// process's locked directory, and removed when the scene closes.
func TestBandVRTsInProcessDir(t *testing.T) {
	root := t.TempDir()
	hrefs := map[string]string{}
	for _, b := range []string{"B02", "B03"} {
		hrefs[b] = writeTestTIFF(t, root, b+".tif", 1, "UInt16", "")
	}
	src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Hrefs: hrefs}}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	vrt := src.Rasters[0].vrt
	if !strings.HasPrefix(filepath.Base(filepath.Dir(vrt)), tempPrefix) {
		t.Errorf("band VRT %s is not in a %s* directory", vrt, tempPrefix)
	}
	src.Close()
	if _, err := os.Stat(vrt); err == nil {
		t.Errorf("%s left after Close", vrt)
	}
}
