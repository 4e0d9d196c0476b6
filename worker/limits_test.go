package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/nats-io/nats.go/jetstream"
)

// TestLargeMessagesDeadLettered: a message whose dead letter would pass
// the server's maximum payload (escaped by encoding/json, a "<" is six
// bytes) still gets one, with its first 64 KiB and its size: before, the
// publish failed and the scene vanished.
func TestLargeMessagesDeadLettered(t *testing.T) {
	_, js := serverAt(t, t.TempDir())
	ctx := context.Background()
	cons, err := EnsureStreams(ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	bodies := []string{
		strings.Repeat("<", 200_000),
		strings.Repeat("\xff", 900_000),
		`{"id":"lt-scene","assets":{"naip":{"href":5}},"pad":"` + strings.Repeat("<", 200_000) + `"}`,
	}
	for i, b := range bodies {
		if _, err := js.Publish(ctx, "methanemap.scenes", []byte(b), jetstream.WithMsgID(string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := runWorker(t, js, cons, Config{}, func(context.Context, *mm.Scene, func(int, int)) ([]mm.Detection, []mm.Site, error) {
		t.Error("a bad message was run")
		return nil, nil, nil
	})
	waitFor(t, "not every message was given up on", func() bool { return w.Stats().Dead == len(bodies) })
	dls, _ := deadLetters(t, js)
	if len(dls) != len(bodies) {
		t.Fatalf("%d dead letters for %d messages", len(dls), len(bodies))
	}
	sizes := map[int]bool{}
	for _, dl := range dls {
		sizes[dl.Size] = true
		if !dl.Truncated || len(dl.RawBase64) != maxDeadMessage {
			t.Errorf("dead letter of a %d-byte message: truncated %v, %d bytes kept", dl.Size, dl.Truncated, len(dl.RawBase64))
		}
	}
	for _, b := range bodies {
		if !sizes[len(b)] {
			t.Errorf("no dead letter of the %d-byte message", len(b))
		}
	}
	if last := lastEvent(t, js, "lt-scene"); last.Event != "failed" {
		t.Errorf("the scene with a readable id: last event %+v", last)
	}
}

// TestSceneTimeout: a scene that runs past SceneTimeout is given up on,
// permanently, with the reason, and the worker takes the next one.
func TestSceneTimeout(t *testing.T) {
	_, js := serverAt(t, t.TempDir())
	ctx := context.Background()
	cfg := Config{SceneTimeout: time.Second}
	cons, err := EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"endless", "quick"} {
		if _, err := Enqueue(ctx, js, cfg, &mm.Scene{ID: id, Assets: map[mm.Sensor]mm.Asset{mm.NAIP: {Href: "/x.tif"}}}); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := runWorker(t, js, cons, cfg, func(ctx context.Context, sc *mm.Scene, _ func(int, int)) ([]mm.Detection, []mm.Site, error) {
		if sc.ID == "endless" {
			<-ctx.Done() // as the pipeline does, between chips
			return nil, nil, ctx.Err()
		}
		return nil, nil, nil
	})
	waitFor(t, "the endless scene was not given up on, or the quick one not done", func() bool {
		st := w.Stats()
		return st.Dead == 1 && st.Done == 1
	})
	dls, _ := deadLetters(t, js)
	if len(dls) != 1 || dls[0].Scene != "endless" || dls[0].Delivery != 1 || !strings.Contains(dls[0].Reason, "took longer than the 1s") {
		t.Errorf("dead letters %+v", dls)
	}
}
