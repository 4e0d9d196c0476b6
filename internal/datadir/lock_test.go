package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestAcquire: a held directory is refused naming the holder (flock locks
// of two opens conflict within one process too); released, it is free;
// a lock file left with a dead process's id does not block.
func TestAcquire(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, LockFile))
	if strings.TrimSpace(string(data)) != itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want this process's id %d", data, os.Getpid())
	}
	_, err = Acquire(dir)
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() || inUse.Dir != dir {
		t.Fatalf("second Acquire: %v, want an InUseError naming %s and pid %d", err, dir, os.Getpid())
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), itoa(os.Getpid())) {
		t.Errorf("error %q does not name the directory and the process", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	// a file as a killed process leaves it: an id, no lock
	if err := os.WriteFile(filepath.Join(dir, LockFile), []byte("999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after a stale lock file: %v", err)
	}
	data, _ = os.ReadFile(filepath.Join(dir, LockFile))
	if strings.TrimSpace(string(data)) != itoa(os.Getpid()) {
		t.Errorf("lock file holds %q after a stale one, want %d", data, os.Getpid())
	}
	l.Release()
}

func itoa(n int) string { return strconv.Itoa(n) }
