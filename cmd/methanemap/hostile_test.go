package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/methanemap/methanemap/internal/hostile"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func allowArgs(e *hostile.Env) []string {
	var args []string
	for _, a := range e.Allow {
		args = append(args, "--allow", a)
	}
	return args
}

// TestHostileScore runs `score --allow` over every hostile scene: each is
// refused with exit 2 and a reason, writes nothing, and nothing outside
// the allowed roots is read. The good scene, from the same roots, scores.
func TestHostileScore(t *testing.T) {
	e := hostile.New(t, fixtureDir(t))
	dir := t.TempDir()
	for _, c := range e.Cases {
		t.Run(c.Name, func(t *testing.T) {
			f := filepath.Join(dir, c.Name+".json")
			writeFile(t, f, string(c.Message))
			out := filepath.Join(dir, c.Name+".geojson")
			code, _, stderr := cli(t, append([]string{"score", "--scene", f, "-o", out, "--quiet", "--cutters", "2"}, allowArgs(e)...)...)
			if code != 2 || !strings.Contains(stderr, c.Want) {
				t.Errorf("exit %d, want 2 with %q:\n%s", code, c.Want, stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written", out)
			}
		})
	}
	good := filepath.Join(dir, "good.json")
	writeFile(t, good, strings.ReplaceAll(string(e.Cases[0].Message), filepath.Join(e.Outside, "naip.tif"), filepath.Join(e.Root, "naip.tif")))
	if code, stdout, stderr := cli(t, append([]string{"score", "--scene", good, "-o", filepath.Join(dir, "good.geojson"), "--quiet"}, allowArgs(e)...)...); code != 0 {
		t.Errorf("the good scene from the same roots: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if n := e.ForbiddenHits(); n != 0 {
		t.Errorf("the server outside the allow list got %d requests", n)
	}
}

// TestHostileDaemon queues every hostile message on a daemon running as
// its own process: each ends dead-lettered with its reason (and a final
// failed event when it has an id), the daemon stays up and scores a good
// scene after them, and nothing outside the roots is read.
func TestHostileDaemon(t *testing.T) {
	e := hostile.New(t, fixtureDir(t))
	natsPort, httpPort := freePort(t), freePort(t)
	args := append([]string{"serve", "--data", t.TempDir(), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort),
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--cutters", "2", "--max-deliver", "2", "--ack-wait", "30s"}, allowArgs(e)...)
	d := spawn(t, nil, args...)
	if !d.serving(t) {
		t.Fatalf("serve exited %d:\n%s", d.wait(), d.stderr.String())
	}
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, c := range e.Cases { // raw, as a feed or a hand-made publisher sends them
		if _, err := js.Publish(ctx, "methanemap.scenes", c.Message); err != nil {
			t.Fatal(err)
		}
	}
	dead := map[string]worker.DeadLetter{} // by scene id, or by raw message for those without
	for len(dead) < len(e.Cases) && ctx.Err() == nil {
		dead = map[string]worker.DeadLetter{}
		for _, raw := range readAll(t, js, worker.DeadStream, "methanemap.dead") {
			var dl worker.DeadLetter
			if err := json.Unmarshal(raw, &dl); err != nil {
				t.Fatalf("a dead letter is not JSON: %v: %q", err, raw)
			}
			key := dl.Scene
			if key == "" {
				key = "raw:" + dl.Reason
			}
			dead[key] = dl
		}
		if d.exitedEarly() {
			t.Fatalf("the daemon died:\n%s", d.stderr.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, c := range e.Cases {
		if c.ID == "" {
			continue
		}
		dl, ok := dead[c.ID]
		if !ok {
			t.Errorf("%s: no dead letter", c.Name)
			continue
		}
		if !strings.Contains(dl.Reason, c.Want) {
			t.Errorf("%s: dead letter reason %q, want %q", c.Name, dl.Reason, c.Want)
		}
		last, err := lastEvent(ctx, js, c.ID)
		if err != nil || last.Event != "failed" || last.Retry {
			t.Errorf("%s: last event %+v (%v), want failed for good", c.Name, last, err)
		}
	}
	if len(dead) < len(e.Cases) {
		t.Errorf("%d dead letters for %d hostile messages", len(dead), len(e.Cases))
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", httpPort)); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz after the hostile scenes: %v", err)
	}
	if n := e.ForbiddenHits(); n != 0 {
		t.Errorf("the server outside the allow list got %d requests", n)
	}
}

func lastEvent(ctx context.Context, js jetstream.JetStream, id string) (worker.Event, error) {
	s, err := js.Stream(ctx, worker.EventsStream)
	if err != nil {
		return worker.Event{}, err
	}
	m, err := s.GetLastMsgForSubject(ctx, "methanemap.events."+id)
	if err != nil {
		return worker.Event{}, err
	}
	var ev worker.Event
	err = json.Unmarshal(m.Data, &ev)
	return ev, err
}

// exitedEarly reports whether the process has ended.
func (p *proc) exitedEarly() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// TestServeKilledKeepsDone: a daemon killed with SIGKILL after a scene is
// done (its embedded broker dies with it) comes back on the same data
// directory knowing the scene is done: enqueue says so, and --wait ends at
// once with the done event, not after a timeout.
func TestServeKilledKeepsDone(t *testing.T) {
	dir := fixtureDir(t)
	scene := filepath.Join(dir, "scene.json")
	id := sceneID(t, scene)
	data := t.TempDir()
	natsPort := freePort(t)
	args := []string{"serve", "--data", data, "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natsPort), "--http", "127.0.0.1:0", "--cutters", "1", "--allow", dir}
	url := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	d := spawn(t, nil, args...)
	if !d.serving(t) {
		t.Fatalf("serve exited %d:\n%s", d.wait(), d.stderr.String())
	}
	if code, stdout, stderr := cli(t, "enqueue", "--nats", url, "--wait", "--timeout", "3m", scene); code != 0 || !strings.Contains(stdout, id+" done: ") {
		t.Fatalf("enqueue --wait: exit %d\n%s\n%s", code, stdout, stderr)
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	d.wait()
	d = spawn(t, nil, args...)
	if !d.serving(t) {
		t.Fatalf("serve after SIGKILL exited %d:\n%s", d.wait(), d.stderr.String())
	}
	code, stdout, stderr := cli(t, "enqueue", "--nats", url, "--wait", "--timeout", "1m", scene)
	if code != 0 || !strings.Contains(stdout, id+" duplicate: done already") || !strings.Contains(stdout, id+" done: ") {
		t.Fatalf("enqueue --wait of the done scene after SIGKILL: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestImplausibleResolution: NAIP resampled to 20 m (as a Sentinel-2
// product declared as NAIP would be) is refused with exit 2 naming the
// sensor and the pixel size; --allow-resolution lets it through.
func TestImplausibleResolution(t *testing.T) {
	dir := fixtureDir(t)
	tmp := t.TempDir()
	coarse := filepath.Join(tmp, "naip20.tif")
	if out, err := exec.Command("gdal_translate", "-q", "-tr", "20", "20", "-r", "average", filepath.Join(dir, "naip.tif"), coarse).CombinedOutput(); err != nil {
		t.Fatalf("gdal_translate: %v: %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "scene.json"))
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]any
	json.Unmarshal(data, &msg)
	assets := msg["assets"].(map[string]any)
	assets["naip"].(map[string]any)["href"] = coarse
	assets["s1"].(map[string]any)["href"] = filepath.Join(dir, "s1.tif")
	s2 := assets["s2"].(map[string]any)["hrefs"].(map[string]any)
	for b, h := range s2 {
		s2[b] = filepath.Join(dir, h.(string))
	}
	b, _ := json.Marshal(msg)
	scene := filepath.Join(tmp, "scene.json")
	writeFile(t, scene, string(b))
	code, _, stderr := cli(t, "score", "--scene", scene, "-o", filepath.Join(tmp, "a.geojson"), "--quiet")
	if code != 2 || !strings.Contains(stderr, "assets.naip.href") || !strings.Contains(stderr, "pixels of 20 m are implausible for naip") {
		t.Errorf("20 m NAIP: exit %d, want 2 naming the field, the sensor and the pixel size:\n%s", code, stderr)
	}
	if code, _, stderr := cli(t, "score", "--scene", scene, "-o", filepath.Join(tmp, "b.geojson"), "--quiet", "--allow-resolution"); code != 0 {
		t.Errorf("with --allow-resolution: exit %d:\n%s", code, stderr)
	}
}
