// Package testenv finds what tests need outside the project: the real data
// in ../shared/realdata beside the repository, and GDAL's command-line tools
// used as oracles.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// RealData returns the path of a file under ../shared/realdata and fails
// the test, saying where it looked, when it is missing.
func RealData(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(Root(), "..", "shared", "realdata", rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("real data %s is missing (looked at %s): tests expect ../shared beside the repository", rel, p)
	}
	return p
}

// Tool returns the path of a GDAL command-line tool, failing the test when
// it is not installed (make deps installs gdal-bin).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: run make deps (installs gdal-bin)", name)
	}
	return p
}

// Run runs a command and returns its standard output, failing the test with
// its standard error when it fails.
func Run(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(Tool(t, name), args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("%s %v: %v\n%s", name, args, err, msg)
	}
	return string(out)
}

// DenseNet121 exports METER-ML's architecture (DenseNet-121 on 720 x 720
// chips of the demo card's bands) with random weights into dir through
// training/train.py, and returns dir: a model directory for model.Load.
func DenseNet121(t testing.TB, dir string) string {
	t.Helper()
	root := Root()
	cmd := exec.Command("/usr/bin/python3", filepath.Join(root, "training", "train.py"), "--data", dir,
		"--card", filepath.Join(root, "models", "demo", "model.yaml"), "--out", dir,
		"--arch", "densenet121", "--size", "720", "--random-weights")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("train.py --arch densenet121: %v\n%s", err, out)
	}
	return dir
}
