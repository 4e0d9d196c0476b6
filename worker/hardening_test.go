package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	mm "github.com/methanemap/methanemap"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// serverAt starts a JetStream server storing under dir (port -1) and
// returns it with a client; the caller may shut it down and start
// another on the same dir, as a restarted daemon does.
func serverAt(t *testing.T, dir string) (*server.Server, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return ns, js
}

// runWorker runs a worker until the test ends, or until stop is called.
func runWorker(t *testing.T, js jetstream.JetStream, cons jetstream.Consumer, cfg Config, p Processor) (w *Worker, stop func()) {
	t.Helper()
	w = New(js, cons, cfg, p, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return w, stop
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %s", what)
		}
	}
}

// deadLetters decodes every dead letter, with its JSON as published.
func deadLetters(t *testing.T, js jetstream.JetStream) ([]DeadLetter, [][]byte) {
	t.Helper()
	var dls []DeadLetter
	var raws [][]byte
	for _, m := range messages(t, js, DeadStream, "methanemap.dead") {
		var dl DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatalf("dead letter %q: %v", m.Data(), err)
		}
		dls, raws = append(dls, dl), append(raws, m.Data())
	}
	return dls, raws
}

// dieURL names, in a child test process, the server whose scene kills it.
const dieURL = "WORKER_TEST_DIE_URL"

// TestHelperDyingWorker is not a test: TestSceneKillingWorkers runs it as
// a child process, a worker whose scene kills it (as out of memory would).
func TestHelperDyingWorker(t *testing.T) {
	url := os.Getenv(dieURL)
	if url == "" {
		t.Skip("run by TestSceneKillingWorkers")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	cons, err := js.Consumer(context.Background(), ScenesStream, ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	New(js, cons, Config{}, func(context.Context, *mm.Scene, func(int, int)) ([]mm.Detection, []mm.Site, error) {
		os.Exit(3) // the process dies in the scene: no nak, no event, no dead letter
		return nil, nil, nil
	}, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(context.Background())
}

// TestSceneKillingWorkers: a scene that kills every worker process that
// runs it (real processes, exiting in the scene) is, once it has been
// delivered MaxDeliver times, dead-lettered with the reason and a final
// failed event by the next worker, which does not run it again.
func TestSceneKillingWorkers(t *testing.T) {
	ns, js := serverAt(t, t.TempDir())
	ctx := context.Background()
	cfg := Config{AckWait: time.Second, MaxDeliver: 2}
	cons, err := EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := mm.ParseScene([]byte(`{"id": "killer", "assets": {"naip": {"href": "/data/huge.vrt"}}}`))
	if _, err := Enqueue(ctx, js, cfg, sc); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= cfg.MaxDeliver; i++ {
		var stderr bytes.Buffer
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDyingWorker$", "-test.count=1")
		cmd.Env = append(os.Environ(), dieURL+"="+ns.ClientURL())
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Fatalf("worker process %d: %v, want it to die in the scene (exit 3): %s", i, err, stderr.String())
		}
	}
	var ran atomic.Int64
	w, _ := runWorker(t, js, cons, cfg, func(context.Context, *mm.Scene, func(int, int)) ([]mm.Detection, []mm.Site, error) {
		ran.Add(1)
		return nil, nil, nil
	})
	waitFor(t, "no dead letter for the scene that killed its workers", func() bool { return w.Stats().Dead == 1 })
	dls, _ := deadLetters(t, js)
	if len(dls) != 1 || dls[0].Scene != "killer" || dls[0].Delivery != 3 || !strings.Contains(dls[0].Reason, "delivery 2 never ended") {
		t.Errorf("dead letters %+v, want one for killer, delivery 3, delivery 2 never ended", dls)
	}
	if e := lastEvent(t, js, "killer"); e.Event != "failed" || e.Retry || e.Reason == "" {
		t.Errorf("last event %+v, want failed for good with a reason", e)
	}
	if n := ran.Load(); n != 0 {
		t.Errorf("the scene was run %d more times", n)
	}
	if info, err := cons.Info(ctx); err != nil || info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Errorf("consumer after the dead letter: %+v, %v", info, err)
	}
}

// TestBadMessagesDeadLetters: a message that is not UTF-8 gets a dead
// letter that is valid JSON with the exact bytes in raw_base64; a message
// that fails validation but names a valid id gets that scene_id in its
// dead letter and a final failed event on its events subject.
func TestBadMessagesDeadLetters(t *testing.T) {
	_, js := serverAt(t, t.TempDir())
	ctx := context.Background()
	cfg := Config{}
	cons, err := EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		"latin1":       "sc\xe8ne \xff\xfe",
		"bad-field":    `{"id": "bad-field", "assets": {"naip": {"href": 5}}}`,
		"bad-utf8":     "{\"id\": \"bad-utf8\", \"assets\": {\"naip\": {\"href\": \"/data/\xff.tif\"}}, \"x\": 1, \"assets\": 1}",
		"unreadable":   `{"id": "not an id", "assets": {}}`,
		"no-id-at-all": `[1, 2]`,
	}
	for id, body := range bad {
		if _, err := js.Publish(ctx, "methanemap.scenes", []byte(body), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := runWorker(t, js, cons, cfg, func(context.Context, *mm.Scene, func(int, int)) ([]mm.Detection, []mm.Site, error) {
		t.Error("a bad message was run")
		return nil, nil, nil
	})
	waitFor(t, "not every bad message was dead-lettered", func() bool { return w.Stats().Dead == len(bad) })
	dls, raws := deadLetters(t, js)
	byBody := map[string]DeadLetter{}
	for i, dl := range dls {
		if !utf8.Valid(raws[i]) || !json.Valid(raws[i]) {
			t.Errorf("dead letter is not valid UTF-8 JSON: %q", raws[i])
		}
		body := dl.Raw + string(dl.Message) + string(dl.RawBase64)
		byBody[body] = dl
	}
	for id, body := range bad {
		key := body
		if utf8.ValidString(body) && json.Valid([]byte(body)) { // the dead letter's JSON holds it compacted
			var b bytes.Buffer
			json.Compact(&b, []byte(body))
			key = b.String()
		}
		dl, ok := byBody[key]
		if !ok {
			t.Errorf("%s: no dead letter holds the message %q", id, body)
			continue
		}
		if !utf8.ValidString(body) && len(dl.RawBase64) == 0 {
			t.Errorf("%s: a message that is not UTF-8 is not in raw_base64: %+v", id, dl)
		}
		want := ""
		if id == "bad-field" || id == "bad-utf8" {
			want = id
		}
		if dl.Scene != want || dl.Reason == "" {
			t.Errorf("%s: dead letter scene %q reason %q, want scene %q and a reason", id, dl.Scene, dl.Reason, want)
		}
		if want == "" {
			continue
		}
		if e := lastEvent(t, js, want); e.Event != "failed" || e.Retry || e.Reason != dl.Reason {
			t.Errorf("%s: last event %+v, want failed for good with the dead letter's reason", id, e)
		}
	}
	if e := lastEvent(t, js, "bad-field"); !strings.Contains(e.Reason, "assets.naip") {
		t.Errorf("bad-field: reason %q does not name the field", e.Reason)
	}
}

// TestDoneSceneAcrossRestart: a scene done before the server restarts
// (same store) is not queued again: Enqueue says done, and its done event
// is the scene's last. EnqueueScene with Force runs it again, as a new
// run whose events are all published (none taken for the first run's).
func TestDoneSceneAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ns, js := serverAt(t, dir)
	ctx := context.Background()
	cfg := Config{}
	cons, err := EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := mm.ParseScene([]byte(`{"id": "once", "assets": {"naip": {"href": "/data/naip.tif"}}}`))
	if _, err := Enqueue(ctx, js, cfg, sc); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int64
	process := func(context.Context, *mm.Scene, func(int, int)) ([]mm.Detection, []mm.Site, error) {
		runs.Add(1)
		return nil, nil, nil
	}
	w, stop := runWorker(t, js, cons, cfg, process)
	waitFor(t, "the scene was not done", func() bool { return w.Stats().Done == 1 })
	stop()
	ns.Shutdown()
	ns.WaitForShutdown()

	_, js = serverAt(t, dir)
	if cons, err = EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	r, err := EnqueueScene(ctx, js, cfg, sc, EnqueueOptions{})
	if err != nil || !r.Done || !r.Duplicate {
		t.Fatalf("enqueueing the done scene after a restart: %+v, %v; want done, not queued", r, err)
	}
	if info, err := cons.Info(ctx); err != nil || info.NumPending != 0 {
		t.Fatalf("consumer after enqueueing the done scene: %+v, %v", info, err)
	}
	if e := lastEvent(t, js, "once"); e.Event != "done" {
		t.Errorf("last event %+v, want the first run's done", e)
	}
	r, err = EnqueueScene(ctx, js, cfg, sc, EnqueueOptions{Force: true})
	if err != nil || r.Duplicate || r.Done {
		t.Fatalf("forced: %+v, %v; want queued", r, err)
	}
	if e := lastEvent(t, js, "once"); e.Event != "accepted" {
		t.Errorf("last event after the forced enqueue %+v, want accepted", e)
	}
	runWorker(t, js, cons, cfg, process)
	waitFor(t, "the forced run's done event was not published", func() bool { return lastEvent(t, js, "once").Event == "done" })
	dones := 0
	for _, m := range messages(t, js, EventsStream, "methanemap.events.once") {
		var e Event
		json.Unmarshal(m.Data(), &e)
		if e.Event == "done" {
			dones++
		}
	}
	if n := runs.Load(); n != 2 || dones != 2 {
		t.Errorf("%d runs, %d done events; want 2 of each", n, dones)
	}
}
