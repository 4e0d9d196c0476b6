package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/internal/testenv"
	"gopkg.in/yaml.v3"
)

// TestDeployExample checks the files of deploy/ with the tools that read
// them: the compose file's worker command is one `serve` accepts, its
// config loads (strictly), and Debian's nats-server accepts the NATS
// cluster config for each node.
func TestDeployExample(t *testing.T) {
	dir := filepath.Join(testenv.Root(), "deploy")
	data, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Deploy      struct {
				Replicas int `yaml:"replicas"`
			} `yaml:"deploy"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	w, ok := compose.Services["worker"]
	if !ok || len(w.Command) == 0 || w.Command[0] != "serve" || w.Deploy.Replicas < 2 {
		t.Fatalf("compose.yaml: worker service %+v", w)
	}
	for _, n := range []string{"nats1", "nats2", "nats3"} {
		s, ok := compose.Services[n]
		if !ok || s.Environment["SERVER_NAME"] != n {
			t.Errorf("compose.yaml: service %s: %+v", n, s)
		}
		// each node's config, as the container sees it, passes nats-server -t
		cmd := exec.Command("nats-server", "-c", filepath.Join(dir, "nats.conf"), "-t")
		cmd.Env = append(os.Environ(), "SERVER_NAME="+n)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nats-server -t for %s: %v\n%s", n, err, out)
		}
	}
	joined := strings.Join(w.Command, " ")
	for _, want := range []string{"--replicas=3", "nats://nats1:4222,nats://nats2:4222,nats://nats3:4222", "--grace="} {
		if !strings.Contains(joined, want) {
			t.Errorf("worker command %q lacks %s", joined, want)
		}
	}
	if got := w.Environment["METHANEMAP_CONFIG"]; got != "/etc/methanemap/methanemap.yaml" {
		t.Errorf("METHANEMAP_CONFIG %q", got)
	}
	// the config file the workers mount loads, and allows the scenes mount
	cfg, err := configs.Load(filepath.Join(dir, "methanemap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Ingest.Allow) == 0 || cfg.Ingest.Allow[0] != "/scenes" {
		t.Errorf("deploy/methanemap.yaml: ingest.allow %v, want /scenes first", cfg.Ingest.Allow)
	}
	mounted := false
	for _, v := range w.Volumes {
		mounted = mounted || strings.HasSuffix(v, ":/scenes:ro")
	}
	if !mounted {
		t.Errorf("the worker does not mount /scenes read-only: %v", w.Volumes)
	}
	// serve parses the worker's flags: -h after them stops before anything runs
	t.Setenv("METHANEMAP_CONFIG", filepath.Join(dir, "methanemap.yaml"))
	if code, _, stderr := cli(t, append(w.Command, "-h")...); code != 0 {
		t.Errorf("serve refuses the compose worker command: exit %d: %s", code, stderr)
	}
}
