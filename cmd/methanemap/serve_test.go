package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// syncBuffer is a bytes.Buffer safe to write from the daemon's goroutine
// while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is `methanemap serve` running in-process on its embedded broker.
type daemon struct {
	url  string // NATS
	http string // host:port
	js   jetstream.JetStream
	log  *syncBuffer
	done chan int
	stop context.CancelFunc
}

// startDaemon runs serve with args added and waits until /readyz says ready.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	natsPort, httpPort := freePort(t), freePort(t)
	ctx, stop := context.WithCancel(context.Background())
	d := &daemon{url: fmt.Sprintf("nats://127.0.0.1:%d", natsPort), http: fmt.Sprintf("127.0.0.1:%d", httpPort),
		log: &syncBuffer{}, done: make(chan int, 1), stop: stop}
	args = append([]string{"serve", "--data", t.TempDir(), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort),
		"--http", d.http, "--cutters", "1"}, args...)
	go func() { d.done <- run(ctx, args, &bytes.Buffer{}, d.log) }()
	t.Cleanup(func() { d.shutdown(t) })
	for i := 0; i < 600; i++ {
		time.Sleep(100 * time.Millisecond)
		if resp, err := http.Get("http://" + d.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				nc, err := nats.Connect(d.url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(nc.Close)
				d.js, _ = jetstream.New(nc)
				return d
			}
		}
	}
	t.Fatalf("serve never became ready:\n%s", d.log.String())
	return nil
}

// shutdown stops the daemon (as SIGTERM does) and checks it exited 0; a
// second call does nothing.
func (d *daemon) shutdown(t *testing.T) {
	t.Helper()
	if d.done == nil {
		return
	}
	d.stop()
	if code := <-d.done; code != 0 {
		t.Errorf("serve exited %d:\n%s", code, d.log.String())
	}
	d.done = nil
}

// waitFinal waits for each scene's final event (done, or failed for good).
func (d *daemon) waitFinal(t *testing.T, ids ...string) map[string]worker.Event {
	t.Helper()
	events, err := d.js.Stream(context.Background(), worker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]worker.Event{}
	deadline := time.Now().Add(3 * time.Minute)
	for len(out) < len(ids) && time.Now().Before(deadline) {
		for _, id := range ids {
			var e worker.Event
			if m, err := events.GetLastMsgForSubject(context.Background(), "methanemap.events."+id); err == nil && json.Unmarshal(m.Data, &e) == nil && e.Final() {
				out[id] = e
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(out) < len(ids) {
		t.Fatalf("scenes not finished after 3 minutes: %v of %v:\n%s", out, ids, d.log.String())
	}
	return out
}

// remoteScene writes a copy of the fixture scene dir's scene.json with the
// given id whose hrefs point at base (an HTTP server over that dir).
func remoteScene(t *testing.T, dir, base, id string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "scene.json"))
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]any
	json.Unmarshal(data, &msg)
	msg["id"] = id
	b, _ := json.Marshal(msg)
	// relative hrefs resolve against the scene's location: point them at the server
	b = bytes.ReplaceAll(b, []byte(`"s2/`), []byte(`"`+base+`/s2/`))
	b = bytes.ReplaceAll(b, []byte(`"naip.tif"`), []byte(`"`+base+`/naip.tif"`))
	b = bytes.ReplaceAll(b, []byte(`"s1.tif"`), []byte(`"`+base+`/s1.tif"`))
	path := filepath.Join(t.TempDir(), "scene.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRasterVanishesMidRun serves a scene's rasters over HTTP and deletes
// the NAIP (404 from then on) after the daemon has started reading it: the
// scene becomes a dead letter naming the file, none of its detections is
// published, and the daemon goes on to score the next scene.
func TestRasterVanishesMidRun(t *testing.T) {
	dir := fixtureDir(t)
	files := http.FileServer(http.Dir(dir))
	var naipReads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/naip.tif" && naipReads.Add(1) > 12 {
			http.NotFound(w, r) // deleted from the bucket
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	d := startDaemon(t, "--allow", srv.URL+"/", "--allow", dir)
	vanishing := remoteScene(t, dir, srv.URL, "vanishing")
	if code, stdout, stderr := cli(t, "enqueue", "--nats", d.url, vanishing, filepath.Join(dir, "scene.json")); code != 0 {
		t.Fatalf("enqueue: %d %s %s", code, stdout, stderr)
	}
	ids := []string{"vanishing", sceneID(t, filepath.Join(dir, "scene.json"))}
	ev := d.waitFinal(t, ids...)
	if e := ev["vanishing"]; e.Event != "failed" || !strings.Contains(e.Reason, "naip.tif") {
		t.Errorf("the vanishing scene's last event: %+v", e)
	}
	if n := naipReads.Load(); n <= 12 {
		t.Errorf("the NAIP was read %d times: it vanished before the run began, not during it", n)
	}
	if e := ev[ids[1]]; e.Event != "done" || len(e.Detections) == 0 {
		t.Errorf("the next scene: %+v", e)
	}
	dead := readAll(t, d.js, worker.DeadStream, "methanemap.dead")
	t.Logf("dead letter: %.400s", dead)
	if len(dead) != 1 || !strings.Contains(string(dead[0]), `"scene_id":"vanishing"`) || !strings.Contains(string(dead[0]), "naip.tif") {
		t.Errorf("dead letters: %s", dead)
	}
	if got := readAll(t, d.js, worker.DetectionsStream, "methanemap.*.*"); len(got) == 0 {
		t.Error("no detections at all")
	} else {
		for _, m := range got {
			if strings.Contains(string(m), `"vanishing/`) || strings.Contains(string(m), `"vanishing"`) {
				t.Fatalf("a detection of the failed scene was published: %s", m)
			}
		}
	}
}

// sceneID is the id of the scene in a scene file.
func sceneID(t *testing.T, path string) string {
	t.Helper()
	scenes, err := loadScenes(path)
	if err != nil || len(scenes) != 1 {
		t.Fatalf("%s: %d scenes, %v", path, len(scenes), err)
	}
	return scenes[0].ID
}

// readAll returns the data of every message a stream holds on filter
// (a subject with NATS wildcards). It reads message by message with the
// stream's get API, which needs no consumer: it works on a cluster that
// has just lost a node.
func readAll(t *testing.T, js jetstream.JetStream, stream, filter string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("reading %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("reading %s: %v", stream, err)
	}
	var out [][]byte
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted
		}
		if err != nil {
			t.Fatalf("reading %s #%d: %v", stream, seq, err)
		}
		if subjectMatches(filter, m.Subject) {
			out = append(out, m.Data)
		}
	}
	return out
}

// subjectMatches applies NATS subject wildcards: * one token, > the rest.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(f) == len(s)
}

// TestRefusedHrefs queues scenes whose hrefs lie outside what the daemon
// may read: a local path outside the allowed roots, a URL outside the
// allowed prefixes and /etc/passwd. Each becomes a dead letter with the
// reason; the HTTP server behind the URL sees no request at all.
func TestRefusedHrefs(t *testing.T) {
	dir := fixtureDir(t)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.FileServer(http.Dir(dir)).ServeHTTP(w, r)
	}))
	defer srv.Close()
	d := startDaemon(t, "--allow", dir, "--allow", srv.URL+"/public/")
	// a real, readable copy of the scene outside the allowed root
	elsewhere := t.TempDir()
	for _, f := range []string{"naip.tif", "s1.tif"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(elsewhere, f), data, 0o644)
	}
	relElsewhere, _ := filepath.Rel(filepath.Dir(dir), elsewhere)
	scenes := map[string]string{
		"outside-root":   fmt.Sprintf(`{"id":"outside-root","assets":{"naip":{"href":%q},"s1":{"href":%q}}}`, filepath.Join(elsewhere, "naip.tif"), filepath.Join(elsewhere, "s1.tif")),
		"dotdot":         fmt.Sprintf(`{"id":"dotdot","assets":{"naip":{"href":%q}}}`, dir+"/../"+relElsewhere+"/naip.tif"),
		"outside-prefix": fmt.Sprintf(`{"id":"outside-prefix","assets":{"naip":{"href":%q}}}`, srv.URL+"/naip.tif"),
		"passwd":         `{"id":"passwd","assets":{"naip":{"href":"/etc/passwd"}}}`,
	}
	var files, ids []string
	for id, body := range scenes {
		f := filepath.Join(t.TempDir(), id+".json")
		writeFile(t, f, body)
		files = append(files, f)
		ids = append(ids, id)
	}
	if code, stdout, stderr := cli(t, append([]string{"enqueue", "--nats", d.url}, files...)...); code != 0 {
		t.Fatalf("enqueue: %d %s %s", code, stdout, stderr)
	}
	ev := d.waitFinal(t, ids...)
	reasons := map[string]string{}
	for _, raw := range readAll(t, d.js, worker.DeadStream, "methanemap.dead") {
		var dl worker.DeadLetter
		json.Unmarshal(raw, &dl)
		reasons[dl.Scene] = dl.Reason
	}
	for id, want := range map[string]string{
		"outside-root":   "not under an allowed directory",
		"dotdot":         "not under an allowed directory",
		"outside-prefix": "not under an allowed URL prefix",
		"passwd":         "/etc/passwd: not under an allowed directory",
	} {
		if ev[id].Event != "failed" || ev[id].Retry {
			t.Errorf("%s: last event %+v, want failed for good", id, ev[id])
		}
		if !strings.Contains(reasons[id], want) {
			t.Errorf("%s: dead letter reason %q, want %q", id, reasons[id], want)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server outside the allowed prefix got %d requests", n)
	}
}

// detectionsOnce reads every detection on the stream, fails the test for
// an id that is there more than once, and returns the ids by scene.
func detectionsOnce(t *testing.T, js jetstream.JetStream) map[string][]string {
	t.Helper()
	seen := map[string]int{}
	byScene := map[string][]string{}
	for _, data := range readAll(t, js, worker.DetectionsStream, "methanemap.detections.>") {
		var f struct {
			ID         string `json:"id"`
			Properties struct {
				Scene string `json:"scene_id"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("not a detection on the stream: %v", err)
		}
		if seen[f.ID]++; seen[f.ID] == 2 {
			t.Errorf("detection %s is on the stream more than once", f.ID)
		}
		if seen[f.ID] == 1 {
			byScene[f.Properties.Scene] = append(byScene[f.Properties.Scene], f.ID)
		}
	}
	return byScene
}
