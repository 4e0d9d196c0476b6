package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geo"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/planar"
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
	outDir := t.TempDir()
	go func() {
		served <- run(ctx, []string{"serve", "--data", t.TempDir(), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort),
			"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--cutters", "1", "--allow", fixtures,
			"--out", outDir, "--format", "gpkg"}, &bytes.Buffer{}, &serveErr)
	}()
	ready := false
	for i := 0; i < 600 && !ready; i++ {
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
		"methanemap_consumer_pending ", "methanemap_scene_seconds_count 1", "# TYPE methanemap_scene_seconds histogram",
		"# TYPE methanemap_stage_seconds histogram", `methanemap_stage_seconds_count{stage="cut"} 1`, `methanemap_stage_seconds_count{stage="infer"} 1`,
		`methanemap_stage_seconds_count{stage="publish"} 1`, `methanemap_stage_seconds_bucket{stage="open",le="+Inf"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	// watch prints what the stream holds as GeoJSON lines
	wctx, wstop := context.WithTimeout(context.Background(), 2*time.Second)
	var lines, siteLines bytes.Buffer
	if code := run(wctx, []string{"watch", "--nats", url}, &lines, &bytes.Buffer{}); code != 0 {
		t.Errorf("watch exited %d", code)
	}
	wstop()
	wctx, wstop = context.WithTimeout(context.Background(), 2*time.Second)
	if code := run(wctx, []string{"watch", "--nats", url, "--sites"}, &siteLines, &bytes.Buffer{}); code != 0 {
		t.Errorf("watch --sites exited %d", code)
	}
	wstop()
	checkPlanted(t, filepath.Join(fixtures, "truth.geojson"), lines.String(), siteLines.String())
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
	// enqueue --wait on a scene already done: a duplicate, and its outcome
	code, stdout, stderr = cli(t, "enqueue", "--nats", url, "--wait", "--timeout", "30s", scene)
	if code != 0 || !strings.Contains(stdout, id+" duplicate") || !strings.Contains(stdout, fmt.Sprintf("%s done: %d detections", id, total)) {
		t.Errorf("enqueue --wait: exit %d\n%s\n%s", code, stdout, stderr)
	}
	wctx, wstop = context.WithTimeout(context.Background(), 2*time.Second)
	var brief bytes.Buffer
	run(wctx, []string{"watch", "--nats", url, "--brief"}, &brief, &bytes.Buffer{})
	wstop()
	if got := strings.Count(brief.String(), " "+id+"/"); got != total {
		t.Errorf("watch --brief printed %d detection lines, want %d:\n%s", got, total, brief.String())
	}
	// --out wrote the scene's detections and sites as GeoPackages
	for file, want := range map[string]int{id + ".detections.gpkg": total, id + ".sites.gpkg": last.Sites} {
		out, err := exec.Command("ogrinfo", "-ro", "-so", "-al", filepath.Join(outDir, file)).CombinedOutput()
		if err != nil || featureCount(string(out)) != fmt.Sprint(want) {
			t.Errorf("ogrinfo %s: %v, want %d features:\n%s", file, err, want, out)
		}
	}
	// the href outside the allowed roots becomes a dead letter with the reason
	dead, err := js.Stream(context.Background(), worker.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	var dl worker.DeadLetter
	for i := 0; i < 600 && dl.Scene == ""; i++ {
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

// TestNatsCLI drives the daemon with the real `nats` CLI: it publishes a
// scene to methanemap.scenes and subscribes to methanemap.detections.>.
func TestNatsCLI(t *testing.T) {
	natsCLI, err := exec.LookPath("nats")
	if err != nil {
		t.Fatal("the nats CLI is missing: make deps installs it")
	}
	natsPort := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	fixtures := fixtureDir(t)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan int)
	var serveErr bytes.Buffer
	go func() {
		served <- run(ctx, []string{"serve", "--data", t.TempDir(), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort),
			"--http", "127.0.0.1:0", "--cutters", "1", "--allow", fixtures}, &bytes.Buffer{}, &serveErr)
	}()
	defer func() {
		stop()
		<-served
	}()
	var nc *nats.Conn
	for i := 0; i < 600; i++ {
		time.Sleep(100 * time.Millisecond)
		if nc, err = nats.Connect(url); err == nil {
			js, _ := jetstream.New(nc)
			if _, err = js.Stream(context.Background(), worker.ScenesStream); err == nil {
				break
			}
			nc.Close()
		}
	}
	if err != nil {
		t.Fatalf("serve not ready: %v %s", err, serveErr.String())
	}
	defer nc.Close()
	sub := exec.Command(natsCLI, "--server", url, "sub", "methanemap.detections.>", "--count", "1", "--raw")
	var subOut bytes.Buffer
	sub.Stdout = &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	scenes, err := loadScenes(filepath.Join(fixtures, "scene.json"))
	if err != nil {
		t.Fatal(err)
	}
	scenes[0].ID = "via-nats-cli"
	body, _ := json.Marshal(scenes[0])
	if out, err := exec.Command(natsCLI, "--server", url, "pub", "methanemap.scenes", "-H", "Nats-Msg-Id:via-nats-cli", string(body)).CombinedOutput(); err != nil {
		t.Fatalf("nats pub: %v %s", err, out)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("nats sub: %v", err)
		}
	case <-time.After(90 * time.Second):
		sub.Process.Kill()
		t.Fatalf("no detection reached nats sub: %s", serveErr.String())
	}
	var f struct {
		Type string `json:"type"`
		ID   string `json:"id"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(subOut.Bytes()), &f); err != nil || f.Type != "Feature" || !strings.HasPrefix(f.ID, "via-nats-cli/") {
		t.Fatalf("nats sub printed %q", subOut.String())
	}
}

// checkPlanted checks that every facility planted in a fixture scene
// arrived as a detection of its class (a chip footprint holding the
// facility's centre, or one within the facility's radius of it) and as a
// site of its class centred within one chip footprint (720 m) of it.
func checkPlanted(t *testing.T, truthFile, detections, sites string) {
	t.Helper()
	truth, err := fixtures.ReadTruth(truthFile)
	if err != nil || len(truth) == 0 {
		t.Fatalf("truth %s: %d facilities, %v", truthFile, len(truth), err)
	}
	parse := func(lines string) []*geojson.Feature {
		var out []*geojson.Feature
		for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
			if l == "" {
				continue
			}
			f, err := geojson.UnmarshalFeature([]byte(l))
			if err != nil {
				t.Fatalf("not a GeoJSON feature: %q: %v", l, err)
			}
			out = append(out, f)
		}
		return out
	}
	dets, sts := parse(detections), parse(sites)
	for _, tr := range truth {
		found, near := false, false
		for _, f := range dets {
			if f.Properties["class"] != string(tr.Class) {
				continue
			}
			poly, ok := f.Geometry.(orb.Polygon)
			if !ok {
				t.Fatalf("detection %v: geometry %T", f.ID, f.Geometry)
			}
			found = found || planar.PolygonContains(poly, tr.LonLat) || geo.Distance(poly.Bound().Center(), tr.LonLat) <= 360*math.Sqrt2+tr.RadiusM
		}
		for _, f := range sts {
			if f.Properties["class"] == string(tr.Class) && geo.Distance(f.Geometry.(orb.Point), tr.LonLat) <= 720 {
				near = true
			}
		}
		if !found {
			t.Errorf("%s planted at %v: no detection of its class (%d detections)", tr.Class, tr.LonLat, len(dets))
		}
		if !near {
			t.Errorf("%s planted at %v: no site of its class within 720 m (%d sites)", tr.Class, tr.LonLat, len(sts))
		}
	}
}
