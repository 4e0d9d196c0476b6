package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestServeAndEnqueue runs the daemon on its embedded broker, queues the
// fixture scene (twice: the second is a duplicate) and a bad file, waits
// for the scene's "done" event, then stops the daemon as SIGTERM would.
func TestServeAndEnqueue(t *testing.T) {
	natsPort, httpPort := freePort(t), freePort(t)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan int)
	var serveErr bytes.Buffer
	fixtures := fixtureDir(t)
	go func() {
		served <- run(ctx, []string{"serve", "--data", t.TempDir(), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort),
			"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--cutters", "1", "--allow", fixtures}, &bytes.Buffer{}, &serveErr)
	}()
	ready := false
	for i := 0; i < 100 && !ready; i++ {
		time.Sleep(100 * time.Millisecond)
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort)); err == nil {
			ready = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
	}
	if !ready {
		stop()
		t.Fatalf("serve never became ready: %s", serveErr.String())
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	scene := filepath.Join(fixtureDir(t), "scene.json")
	bad := filepath.Join(t.TempDir(), "bad.json")
	writeFile(t, bad, `{"id": "no sensors", "assets": {}}`)
	evil := filepath.Join(t.TempDir(), "evil.json")
	writeFile(t, evil, `{"id": "evil", "assets": {"naip": {"href": "/etc/passwd"}}}`)
	code, stdout, stderr := cli(t, "enqueue", "--nats", url, scene, bad, scene, evil)
	if code != 2 || strings.Count(stdout, " queued") != 2 || strings.Count(stdout, " duplicate") != 1 || !strings.Contains(stderr, "id: must be") {
		t.Errorf("enqueue: exit %d\n%s\n%s", code, stdout, stderr)
	}
	id := strings.Fields(stdout)[0]
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	events, err := js.Stream(context.Background(), worker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	var last worker.Event
	for i := 0; i < 600 && last.Event != "done"; i++ {
		time.Sleep(100 * time.Millisecond)
		if m, err := events.GetLastMsgForSubject(context.Background(), "methanemap.events."+id); err == nil {
			json.Unmarshal(m.Data, &last)
		}
	}
	// /metrics counts the scene, its chips and detections
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"methanemap_scenes_done_total 1", "methanemap_chips_scored_total ", "methanemap_detections_total{class=",
		"methanemap_consumer_pending ", "methanemap_scene_seconds_count 1", "# TYPE methanemap_scene_seconds histogram"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	// watch prints what the stream holds as GeoJSON lines
	wctx, wstop := context.WithTimeout(context.Background(), 2*time.Second)
	var lines bytes.Buffer
	if code := run(wctx, []string{"watch", "--nats", url}, &lines, &bytes.Buffer{}); code != 0 {
		t.Errorf("watch exited %d", code)
	}
	wstop()
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
		var f struct {
			Type string `json:"type"`
			ID   string `json:"id"`
		}
		if json.Unmarshal([]byte(l), &f) != nil || f.Type != "Feature" || !strings.HasPrefix(f.ID, id+"/") {
			t.Fatalf("watch printed %q", l)
		}
		n++
	}
	total := 0
	for _, v := range last.Detections {
		total += v
	}
	if n != total {
		t.Errorf("watch printed %d detections, the scene's done event counts %d", n, total)
	}
	// the href outside the allowed roots becomes a dead letter with the reason
	dead, err := js.Stream(context.Background(), worker.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	var dl worker.DeadLetter
	for i := 0; i < 100 && dl.Scene == ""; i++ {
		time.Sleep(100 * time.Millisecond)
		if m, err := dead.GetLastMsgForSubject(context.Background(), "methanemap.dead"); err == nil {
			json.Unmarshal(m.Data, &dl)
		}
	}
	stop()
	if code := <-served; code != 0 {
		t.Errorf("serve exited %d: %s", code, serveErr.String())
	}
	if last.Event != "done" || len(last.Detections) == 0 {
		t.Fatalf("last event %+v", last)
	}
	if dl.Scene != "evil" || !strings.Contains(dl.Reason, "/etc/passwd: not under an allowed directory") {
		t.Errorf("dead letter %+v", dl)
	}
}
