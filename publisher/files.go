package publisher

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	mm "github.com/methanemap/methanemap"
)

// WriteFiles writes detections to out and sites to sitesOut (none when
// sitesOut is ""), each all or nothing (see NewFileSink), detections in
// id order.
func WriteFiles(out, sitesOut string, dets []mm.Detection, sites []mm.Site) error {
	sort.Slice(dets, func(i, j int) bool { return dets[i].ID < dets[j].ID })
	sink, err := NewFileSink(out, "detections")
	if err != nil {
		return err
	}
	for _, d := range dets {
		if err := sink.Write(Feature(d)); err != nil {
			sink.Abort()
			return err
		}
	}
	if err := sink.Commit(); err != nil {
		return err
	}
	if sitesOut == "" {
		return nil
	}
	ss, err := NewFileSink(sitesOut, "sites")
	if err != nil {
		return err
	}
	for _, s := range sites {
		if err := ss.Write(SiteFeature(s)); err != nil {
			ss.Abort()
			return err
		}
	}
	return ss.Commit()
}

// WriteSceneFiles writes a scene's detections and sites to
// dir/SCENE.detections.EXT and dir/SCENE.sites.EXT, both or neither: a GIS
// tool or script must not find the detections of a scene without its
// sites. Both are written in a staging directory under dir (the same file
// system, so a rename moves them) and renamed into place only once both
// are complete; on any failure the staging directory goes, and a
// detections file already moved is removed again. A process killed while
// writing leaves only a hidden ".SCENE.staging-*" directory.
func WriteSceneFiles(dir, scene, ext string, dets []mm.Detection, sites []mm.Site) error {
	names := [2]string{scene + ".detections." + ext, scene + ".sites." + ext}
	for _, n := range names {
		// a rename onto a directory (or a socket...) would fail after the
		// other file moved, and removing it again would lose a good file
		// of an earlier run: found before anything moves
		if fi, err := os.Lstat(filepath.Join(dir, n)); err == nil && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: exists and is not a regular file", filepath.Join(dir, n))
		}
	}
	stage, err := os.MkdirTemp(dir, "."+scene+".staging-")
	if err != nil {
		return fmt.Errorf("staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := WriteFiles(filepath.Join(stage, names[0]), filepath.Join(stage, names[1]), dets, sites); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(stage, names[0]), filepath.Join(dir, names[0])); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(stage, names[1]), filepath.Join(dir, names[1])); err != nil {
		os.Remove(filepath.Join(dir, names[0]))
		return err
	}
	return nil
}

// CleanStaging removes the staging directories of writes that never ended
// (a daemon killed while writing), once they are older than age: another
// daemon sharing dir may be writing a young one.
func CleanStaging(dir string, age time.Duration) int {
	stale, _ := filepath.Glob(filepath.Join(dir, ".*.staging-*"))
	n := 0
	for _, p := range stale {
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() && time.Since(fi.ModTime()) > age && os.RemoveAll(p) == nil {
			n++
		}
	}
	return n
}
