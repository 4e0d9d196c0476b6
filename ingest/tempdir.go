package ingest

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The VRTs ingest writes for band groups live in a directory of this
// process's own under the system's temporary directory, flock-ed for the
// process's life. A process killed (kill -9, out of memory) leaves its
// directory unlocked: the next process to open a raster removes it.
const tempPrefix = "methanemap-run-"

var (
	tempOnce sync.Once
	tempPath string
	tempErr  error
	tempLock *os.File // held open: the lock lasts as long as the process
)

// tempDir returns this process's directory for temporary VRTs, made (and
// stale ones of dead processes removed) on first use.
func tempDir() (string, error) {
	tempOnce.Do(func() {
		CleanStaleTemp(time.Minute)
		tempPath, tempErr = os.MkdirTemp("", tempPrefix)
		if tempErr != nil {
			return
		}
		if tempLock, tempErr = os.Open(tempPath); tempErr == nil {
			tempErr = syscall.Flock(int(tempLock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		}
	})
	return tempPath, tempErr
}

// CleanStaleTemp removes the temporary directories of processes that are
// gone (unlocked, and older than minAge: a directory is locked just after
// it is made), and loose band VRTs of older versions a day old.
func CleanStaleTemp(minAge time.Duration) (removed int) {
	tmp := os.TempDir()
	dirs, _ := filepath.Glob(filepath.Join(tmp, tempPrefix+"*"))
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < minAge || d == tempPath {
			continue
		}
		f, err := os.Open(d)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if os.RemoveAll(d) == nil {
				removed++
			}
		}
		f.Close()
	}
	loose, _ := filepath.Glob(filepath.Join(tmp, "methanemap-bands-*.vrt"))
	for _, p := range loose {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && strings.HasSuffix(p, ".vrt") && time.Since(fi.ModTime()) > 24*time.Hour {
			if os.Remove(p) == nil {
				removed++
			}
		}
	}
	return removed
}
