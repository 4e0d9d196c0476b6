package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"

	mm "github.com/methanemap/methanemap"
)

// profiles writes pprof profiles of one command's run: CPU samples while
// it runs (--cpuprofile) and the allocations of the Go heap (--memprofile:
// the allocs profile, a sample per 512 kB allocated on average, from the
// program's start). Time in C (GDAL, our warp kernel in ingest, ONNX
// Runtime) shows as the cgo call that entered it, and ONNX Runtime's own
// threads' as <unknown>: Linux's perf sees inside them.
type profiles struct {
	cpu, mem string
	cpuFile  *os.File
}

func (p *profiles) flags(fs *flag.FlagSet) {
	fs.StringVar(&p.cpu, "cpuprofile", "", "write a pprof CPU profile of the run to this file")
	fs.StringVar(&p.mem, "memprofile", "", "write a pprof allocation profile of the run to this file")
}

// check refuses, before any work, profile files that exist (unless force;
// a directory always), that are one of the command's other outputs, or
// whose directory does not exist.
func (p *profiles) check(force bool, outputs ...string) error {
	taken := map[string]bool{}
	for _, o := range outputs {
		if o != "" {
			taken[filepath.Clean(o)] = true
		}
	}
	for _, f := range []struct{ flag, path string }{{"--cpuprofile", p.cpu}, {"--memprofile", p.mem}} {
		if f.path == "" {
			continue
		}
		if taken[filepath.Clean(f.path)] {
			return usagef("%s %s: that file is another output of the run", f.flag, f.path)
		}
		taken[filepath.Clean(f.path)] = true
		if st, err := os.Stat(f.path); err == nil && (st.IsDir() || !force) {
			return mm.Permanentf("%s %s exists (use --force to overwrite a file)", f.flag, f.path)
		}
		// the allocation profile is written at the end: its directory is
		// checked now, as the CPU profile's is by its creation
		if st, err := os.Stat(filepath.Dir(f.path)); err != nil || !st.IsDir() {
			return mm.Permanentf("%s %s: no directory %s", f.flag, f.path, filepath.Dir(f.path))
		}
	}
	return nil
}

// start begins the CPU profile.
func (p *profiles) start() error {
	if p.cpu == "" {
		return nil
	}
	f, err := os.Create(p.cpu)
	if err != nil {
		return mm.Permanentf("--cpuprofile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		os.Remove(p.cpu)
		return fmt.Errorf("--cpuprofile %s: %w", p.cpu, err)
	}
	p.cpuFile = f
	return nil
}

// stop ends the CPU profile and writes the allocation profile.
func (p *profiles) stop() error {
	var errs []error
	if p.cpuFile != nil {
		pprof.StopCPUProfile()
		if err := p.cpuFile.Close(); err != nil {
			errs = append(errs, fmt.Errorf("--cpuprofile %s: %w", p.cpu, err))
		}
		p.cpuFile = nil
	}
	if p.mem != "" {
		if err := writeAllocs(p.mem); err != nil {
			errs = append(errs, fmt.Errorf("--memprofile %s: %w", p.mem, err))
		}
	}
	return errors.Join(errs...)
}

func writeAllocs(path string) error {
	runtime.GC() // the profile holds the allocations up to the last collection
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
