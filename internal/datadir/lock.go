// Package datadir gives one process at a time a data directory: the
// embedded NATS server's JetStream store is not safe to share, and two
// daemons writing one store lose messages.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock file Lock keeps in a data directory.
const LockFile = "methanemap.lock"

// InUseError says a data directory is locked by another process.
type InUseError struct {
	Dir string // the data directory
	PID int    // the process holding it, 0 when its lock file does not say
}

func (e *InUseError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by %s (lock %s)", e.Dir, who, filepath.Join(e.Dir, LockFile))
}

// Lock is a data directory held by this process.
type Lock struct{ f *os.File }

// Acquire creates dir if needed and locks it (flock on dir/LockFile, which
// then holds this process's id) until Release or the process's end. The
// kernel drops the lock when the process dies, so the file a killed
// process leaves behind does not block the next one. A directory held by
// another process is an *InUseError naming that process.
func Acquire(dir string) (*Lock, error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("datadir: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	// never O_TRUNC: the file may be another live process's
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("datadir: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Dir: dir, PID: holder(path)}
		}
		return nil, fmt.Errorf("datadir: lock %s: %w", path, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("datadir: %w", err)
	}
	if _, err := f.WriteAt(pid, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("datadir: %w", err)
	}
	return &Lock{f: f}, nil
}

// Release empties the lock file and unlocks the directory. The file stays:
// removing it would let a process that opened it just before lock a file
// no longer in the directory while a third locks a new one.
func (l *Lock) Release() error {
	terr := l.f.Truncate(0)
	if err := l.f.Close(); err != nil { // closing the last descriptor unlocks
		return fmt.Errorf("datadir: %w", err)
	}
	if terr != nil {
		return fmt.Errorf("datadir: %w", terr)
	}
	return nil
}

func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = syscall.Flock(int(fd), how) }); err != nil {
		return err
	}
	return ferr
}

// holder reads the process id a lock file holds: 0 when it holds none (its
// owner may be between its lock and its write).
func holder(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	return pid
}
