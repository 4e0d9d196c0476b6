package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/methanemap/methanemap/worker"
)

// metricsText is the daemon's /metrics page.
func metricsText(t *testing.T, d *daemon) string {
	t.Helper()
	resp, err := http.Get("http://" + d.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestServeOutFailureStillPublishes: with --out where the sites file
// cannot be written (its name is taken by a directory), the scene's
// detections still reach the stream, no file of the scene is left
// (all or none), the error is logged and counted in /metrics.
func TestServeOutFailureStillPublishes(t *testing.T) {
	dir := fixtureDir(t)
	scene := filepath.Join(dir, "scene.json")
	id := sceneID(t, scene)
	out := t.TempDir()
	if err := os.Mkdir(filepath.Join(out, id+".sites.geojson"), 0o755); err != nil {
		t.Fatal(err)
	}
	// one delivery: a scene that fails is dead-lettered at once, not retried for minutes
	d := startDaemon(t, "--allow", dir, "--out", out, "--format", "geojson", "--max-deliver", "1")
	code, stdout, stderr := cli(t, "enqueue", "--nats", d.url, "--wait", "--timeout", "3m", scene)
	if code != 0 || !strings.Contains(stdout, id+" done: ") {
		t.Fatalf("enqueue --wait: exit %d\n%s\n%s\n%s", code, stdout, stderr, d.log.String())
	}
	if dets := detectionsOnce(t, d.js)[id]; len(dets) == 0 {
		t.Error("no detection of the scene on the stream")
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != id+".sites.geojson" {
			t.Errorf("%s left in --out (want none of the scene's files)", e.Name())
		}
	}
	if !strings.Contains(d.log.String(), "--out: the scene's files were not written") {
		t.Errorf("no error logged:\n%s", d.log.String())
	}
	if m := metricsText(t, d); !strings.Contains(m, "methanemap_out_errors_total 1\n") {
		t.Errorf("/metrics: want one out error:\n%s", m)
	}
}

// TestServeRestartKeepsDone: a scene done before the daemon restarts (on
// the same data directory) is not run again when it is queued again:
// enqueue says it is done and --wait returns with its done event.
// --force runs it again, and --wait sees that run's own done event.
func TestServeRestartKeepsDone(t *testing.T) {
	dir := fixtureDir(t)
	scene := filepath.Join(dir, "scene.json")
	id := sceneID(t, scene)
	data := t.TempDir()
	d := startDaemon(t, "--allow", dir, "--data", data)
	if code, stdout, stderr := cli(t, "enqueue", "--nats", d.url, "--wait", "--timeout", "3m", scene); code != 0 || !strings.Contains(stdout, id+" done: ") {
		t.Fatalf("first enqueue --wait: exit %d\n%s\n%s", code, stdout, stderr)
	}
	d.shutdown(t)

	d = startDaemon(t, "--allow", dir, "--data", data)
	code, stdout, stderr := cli(t, "enqueue", "--nats", d.url, "--wait", "--timeout", "1m", scene)
	if code != 0 || !strings.Contains(stdout, id+" duplicate: done already") || !strings.Contains(stdout, id+" done: ") {
		t.Fatalf("enqueue --wait of the done scene after a restart: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if m := metricsText(t, d); !strings.Contains(m, "methanemap_scenes_done_total 0\n") {
		t.Errorf("the done scene ran again after the restart:\n%s", m)
	}
	code, stdout, stderr = cli(t, "enqueue", "--nats", d.url, "--force", "--wait", "--timeout", "3m", scene)
	if code != 0 || !strings.Contains(stdout, id+" queued") || !strings.Contains(stdout, id+" done: ") {
		t.Fatalf("enqueue --force --wait: exit %d\n%s\n%s\n%s", code, stdout, stderr, d.log.String())
	}
	// the worker counts a scene after its done event: ask until it has
	for i := 0; !strings.Contains(metricsText(t, d), "methanemap_scenes_done_total 1\n"); i++ {
		if i == 300 {
			t.Fatalf("--force did not run the scene again:\n%s", metricsText(t, d))
		}
		time.Sleep(100 * time.Millisecond)
	}
	var dones []string
	for _, raw := range readAll(t, d.js, worker.EventsStream, "methanemap.events."+id) {
		var e worker.Event
		if json.Unmarshal(raw, &e) == nil && e.Event == "done" {
			dones = append(dones, fmt.Sprint(e.Time))
		}
	}
	if len(dones) != 2 {
		t.Errorf("%d done events for the scene, want 2 (the first run's and the forced run's)", len(dones))
	}
}
