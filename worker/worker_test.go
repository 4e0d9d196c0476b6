package worker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/models"
	"github.com/methanemap/methanemap/pipeline"
	"github.com/nats-io/nats.go/jetstream"
)

// embedded starts a JetStream server on a random loopback port.
func embedded(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := serverAt(t, t.TempDir())
	return js
}

func processor(t *testing.T) Processor {
	m, err := model.LoadFS(models.Demo, models.DemoDir, "built-in:demo")
	if err != nil {
		t.Fatal(err)
	}
	s, err := model.NewScorer(m, model.ScorerOptions{BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return func(ctx context.Context, sc *mm.Scene, _ func(int, int)) ([]mm.Detection, []mm.Site, error) {
		res, err := pipeline.Run(ctx, sc, s, pipeline.Options{Cutters: 1})
		if err != nil {
			return nil, nil, err
		}
		return res.Detections, res.Sites(), nil
	}
}

// messages reads every message of a stream on the given subject filter.
func messages(t *testing.T, js jetstream.JetStream, stream, filter string) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for {
		b, err := c.Fetch(100, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			out = append(out, m)
			n++
		}
		if n == 0 {
			return out
		}
	}
}

// TestWorkerEndToEnd queues a fixture scene with a planted CAFO and a
// poison message on an embedded JetStream server and runs a worker: the
// scene ends "done" with a CAFO detection and site on their subjects, the
// poison message becomes a dead letter with its reason, the worker keeps
// serving, and publishing the scene's results again adds no duplicates.
func TestWorkerEndToEnd(t *testing.T) {
	js := embedded(t)
	ctx := context.Background()
	cfg := Config{AckWait: 10 * time.Second}
	cons, err := EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureStreams(ctx, js, cfg); err != nil { // idempotent
		t.Fatal(err)
	}
	res, err := fixtures.Write(t.TempDir(), fixtures.Options{SizeKM: 2.5, Center: [2]float64{-93.62, 42.03},
		Plants: []fixtures.Plant{{Class: mm.CAFO, Lon: -93.62, Lat: 42.03}}, ID: "worker-test"})
	if err != nil {
		t.Fatal(err)
	}
	ingest.ResolveHrefs(res.Scene, res.Dir)
	if dup, err := Enqueue(ctx, js, cfg, res.Scene); err != nil || dup {
		t.Fatalf("enqueue: duplicate %v, %v", dup, err)
	}
	if dup, err := Enqueue(ctx, js, cfg, res.Scene); err != nil || !dup {
		t.Fatalf("second enqueue of the same scene: duplicate %v, %v", dup, err)
	}
	if e := lastEvent(t, js, "worker-test"); e.Event != "accepted" {
		t.Errorf("last event after enqueue %+v, want accepted (once)", e)
	}
	if n := len(messages(t, js, EventsStream, "methanemap.events.worker-test")); n != 1 {
		t.Errorf("%d events after enqueueing twice, want 1 accepted", n)
	}
	if _, err := js.Publish(ctx, "methanemap.scenes", []byte("this is not a scene"), jetstream.WithMsgID("poison")); err != nil {
		t.Fatal(err)
	}
	w := New(js, cons, cfg, processor(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- w.Run(runCtx) }()
	deadline := time.Now().Add(90 * time.Second)
	var last Event
	for time.Now().Before(deadline) && last.Event != "done" {
		time.Sleep(200 * time.Millisecond)
		evs := messages(t, js, EventsStream, "methanemap.events.worker-test")
		if len(evs) > 0 {
			json.Unmarshal(evs[len(evs)-1].Data(), &last)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if last.Event != "done" || last.Detections["cafo"] == 0 {
		t.Fatalf("last event %+v", last)
	}
	dets := messages(t, js, DetectionsStream, "methanemap.detections.>")
	sites := messages(t, js, DetectionsStream, "methanemap.sites.cafo")
	if len(dets) == 0 || len(sites) == 0 {
		t.Fatalf("%d detections, %d cafo sites on the stream", len(dets), len(sites))
	}
	for _, m := range dets {
		if m.Headers().Get(jetstream.MsgIDHeader) == "" {
			t.Errorf("detection on %s without Nats-Msg-Id", m.Subject())
		}
	}
	dead := messages(t, js, DeadStream, "methanemap.dead")
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1 (the poison message)", len(dead))
	}
	var dl DeadLetter
	json.Unmarshal(dead[0].Data(), &dl)
	if dl.Raw != "this is not a scene" || dl.Reason == "" {
		t.Errorf("dead letter %+v", dl)
	}
	// a redelivered scene publishes the same ids: nothing is added
	var feats []mm.Detection
	d, s, err := processor(t)(ctx, res.Scene, nil)
	if err != nil {
		t.Fatal(err)
	}
	feats = d
	if err := w.publish(ctx, feats, s); err != nil {
		t.Fatal(err)
	}
	if again := messages(t, js, DetectionsStream, "methanemap.detections.>"); len(again) != len(dets) {
		t.Errorf("re-publishing the scene's detections: %d on the stream, was %d", len(again), len(dets))
	}
	if again := messages(t, js, DetectionsStream, "methanemap.sites.cafo"); len(again) != len(sites) {
		t.Errorf("re-publishing the scene's sites: %d on the stream, was %d", len(again), len(sites))
	}
	// another scene over the same place, at once: its sites have the same
	// ids (the place's), and are published all the same
	other := *res.Scene
	other.ID = "worker-test-2"
	d2, s2, err := processor(t)(ctx, &other, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.publish(ctx, d2, s2); err != nil {
		t.Fatal(err)
	}
	var cafo2 []mm.Site
	for _, st := range s2 {
		if st.Class == mm.CAFO {
			cafo2 = append(cafo2, st)
		}
	}
	after := messages(t, js, DetectionsStream, "methanemap.sites.cafo")
	if len(cafo2) != len(sites) || len(after) != 2*len(sites) {
		t.Fatalf("a second scene's %d cafo sites: %d on the stream, was %d", len(cafo2), len(after), len(sites))
	}
	for i := range sites {
		var first, second struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(after[i].Data(), &first); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(after[len(sites)+i].Data(), &second); err != nil {
			t.Fatal(err)
		}
		if first.ID == "" || first.ID != second.ID {
			t.Errorf("site %d: ids %q and %q in two scenes over the same place", i, first.ID, second.ID)
		}
		if got, want := after[len(sites)+i].Headers().Get(jetstream.MsgIDHeader), SiteMsgID(cafo2[i]); got != want {
			t.Errorf("site %d of the second scene: Nats-Msg-Id %q, want %q", i, got, want)
		}
	}
}

// lastEvent is the newest event of a scene, or the zero Event.
func lastEvent(t *testing.T, js jetstream.JetStream, scene string) Event {
	t.Helper()
	var e Event
	if evs := messages(t, js, EventsStream, "methanemap.events."+scene); len(evs) > 0 {
		json.Unmarshal(evs[len(evs)-1].Data(), &e)
	}
	return e
}

// TestEnqueueAfterEvents: a scene enqueued again (after the dedupe
// window) once workers have reported on it gets its "accepted" event
// after theirs; Enqueue leaves out the event only when a worker reports
// between its look at the scene's last event and the event.
func TestEnqueueAfterEvents(t *testing.T) {
	js := embedded(t)
	ctx := context.Background()
	cfg := Config{}
	if _, err := EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	sc := &mm.Scene{ID: "reported", Assets: map[mm.Sensor]mm.Asset{mm.NAIP: {Href: "/nowhere/naip.tif"}}}
	for _, ev := range []string{"done", "started"} {
		data, _ := json.Marshal(Event{Scene: sc.ID, Event: ev})
		if _, err := js.Publish(ctx, "methanemap.events.reported", data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Enqueue(ctx, js, cfg, sc); err != nil {
		t.Fatal(err)
	}
	if e := lastEvent(t, js, "reported"); e.Event != "accepted" {
		t.Errorf("last event %+v, want accepted", e)
	}
}

// TestShutdownGrace stops a worker while it holds a scene. A scene that
// finishes within the grace period is acked; one that does not is
// cancelled and handed back, and the next worker gets it on the next
// delivery and completes it. The processors stand in for long scenes; the
// JetStream server, acks and redeliveries are real.
func TestShutdownGrace(t *testing.T) {
	js := embedded(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := Config{AckWait: 30 * time.Second, Grace: 300 * time.Millisecond}
	cons, err := EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := mm.ParseScene([]byte(`{"id": "long-scene", "assets": {"naip": {"href": "/data/naip.tif"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Enqueue(ctx, js, cfg, sc); err != nil {
		t.Fatal(err)
	}
	// 1. the scene outlasts the grace period: cancelled, released
	started := make(chan struct{})
	var deliveries []uint64
	w1 := New(js, cons, cfg, func(ctx context.Context, sc *mm.Scene, _ func(int, int)) ([]mm.Detection, []mm.Site, error) {
		close(started)
		<-ctx.Done() // a scene far longer than the grace period
		return nil, nil, ctx.Err()
	}, log)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- w1.Run(runCtx) }()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker never started the scene")
	}
	stop()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the grace period")
	}
	if st := w1.Stats(); st.Released != 1 || st.Done != 0 || st.Dead != 0 || st.Retried != 0 {
		t.Fatalf("first worker: %+v", st)
	}
	if e := lastEvent(t, js, "long-scene"); e.Event != "released" {
		t.Fatalf("last event %+v, want released", e)
	}
	// 2. the next worker gets it at once (no ack wait) and finishes within
	// its grace period although it is stopped meanwhile
	cfg.Grace = time.Minute
	got := make(chan struct{})
	w2 := New(js, cons, cfg, func(ctx context.Context, sc *mm.Scene, _ func(int, int)) ([]mm.Detection, []mm.Site, error) {
		close(got)
		time.Sleep(500 * time.Millisecond) // stopped while this runs
		return nil, nil, ctx.Err()
	}, log)
	runCtx, stop = context.WithCancel(ctx)
	go func() { done <- w2.Run(runCtx) }()
	select {
	case <-got:
	case <-time.After(10 * time.Second): // well under AckWait: the Nak released it
		t.Fatal("the released scene was not redelivered before the ack wait")
	}
	stop()
	<-done
	if st := w2.Stats(); st.Done != 1 || st.Released != 0 {
		t.Fatalf("second worker: %+v", st)
	}
	e := lastEvent(t, js, "long-scene")
	if e.Event != "done" {
		t.Fatalf("last event %+v, want done", e)
	}
	for _, m := range messages(t, js, EventsStream, "methanemap.events.long-scene") {
		var e Event
		json.Unmarshal(m.Data(), &e)
		if e.Event == "started" {
			deliveries = append(deliveries, e.Delivery)
		}
	}
	if len(deliveries) != 2 || deliveries[1] != 2 {
		t.Errorf("started events by delivery %v, want [1 2]", deliveries)
	}
	info, err := cons.Info(ctx)
	if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Errorf("consumer after both workers: %+v, %v", info, err)
	}
}

// TestShutdownOnLastDelivery: a scene cut short by shutdown on its last
// delivery is not naked into oblivion (the stream would not deliver it
// again) but dead-lettered with the reason.
func TestShutdownOnLastDelivery(t *testing.T) {
	js := embedded(t)
	ctx := context.Background()
	cfg := Config{AckWait: 30 * time.Second, Grace: 200 * time.Millisecond, MaxDeliver: 1}
	cons, err := EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := mm.ParseScene([]byte(`{"id": "last-chance", "assets": {"naip": {"href": "/data/naip.tif"}}}`))
	if _, err := Enqueue(ctx, js, cfg, sc); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	w := New(js, cons, cfg, func(ctx context.Context, sc *mm.Scene, _ func(int, int)) ([]mm.Detection, []mm.Site, error) {
		close(started)
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- w.Run(runCtx) }()
	<-started
	stop()
	<-done
	if st := w.Stats(); st.Dead != 1 || st.Released != 0 {
		t.Fatalf("stats %+v, want one dead letter", st)
	}
	dead := messages(t, js, DeadStream, "methanemap.dead")
	var dl DeadLetter
	if len(dead) == 1 {
		json.Unmarshal(dead[0].Data(), &dl)
	}
	if dl.Scene != "last-chance" || !strings.Contains(dl.Reason, "last delivery (1 of 1)") {
		t.Errorf("dead letters %d: %+v", len(dead), dl)
	}
	if e := lastEvent(t, js, "last-chance"); e.Event != "failed" || e.Retry {
		t.Errorf("last event %+v, want failed for good", e)
	}
}
