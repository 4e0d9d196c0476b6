package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Config names the subjects and streams and sets their limits.
type Config struct {
	Prefix      string          // subject prefix (default "methanemap")
	Concurrency int             // scenes in flight per worker (default 1)
	AckWait     time.Duration   // before an unacked scene is redelivered (default 2m)
	MaxDeliver  int             // deliveries that may run a scene before it is dead-lettered (default 5)
	Backoff     []time.Duration // Nak delays by delivery (default 5s, 30s, 2m)
	Replicas    int             // stream replicas (default 1; 3 on a cluster)
	MaxAge      time.Duration   // retention of detections, events and dead letters (default 30 days)
	// Grace is how long Run lets the scenes in flight finish once its
	// context ends; then they are cancelled and naked so that another
	// worker takes them (default 30s).
	Grace time.Duration
	// SceneTimeout is the longest a scene may run before it is given up
	// on, permanently (default 2h).
	SceneTimeout time.Duration
	// Observe, when set, hears how long each scene took to publish
	// ("publish") and to handle in all ("scene").
	Observe func(stage string, d time.Duration)
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "methanemap"
	}
	if c.Concurrency < 1 {
		c.Concurrency = 1
	}
	if c.AckWait <= 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.MaxDeliver < 1 {
		c.MaxDeliver = 5
	}
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if c.Replicas < 1 {
		c.Replicas = 1
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 30 * 24 * time.Hour
	}
	if c.SceneTimeout <= 0 {
		c.SceneTimeout = 2 * time.Hour
	}
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.Observe == nil {
		c.Observe = func(string, time.Duration) {}
	}
}

// Subjects.
func (c Config) scenes() string                 { return c.Prefix + ".scenes" }
func (c Config) detections(class string) string { return c.Prefix + ".detections." + class }
func (c Config) sites(class string) string      { return c.Prefix + ".sites." + class }
func (c Config) events(scene string) string     { return c.Prefix + ".events." + scene }

// EventSubject is the subject of a scene's events.
func (c Config) EventSubject(scene string) string { c.defaults(); return c.events(scene) }
func (c Config) dead() string                     { return c.Prefix + ".dead" }

// Stream and consumer names of the design.
const (
	ScenesStream     = "METHANEMAP_SCENES"
	DetectionsStream = "METHANEMAP_DETECTIONS"
	EventsStream     = "METHANEMAP_EVENTS"
	DeadStream       = "METHANEMAP_DEAD"
	ConsumerName     = "workers"
	// SceneStateBucket is the KV bucket that remembers done scenes, one
	// key per scene id, for MaxAge (see Enqueue).
	SceneStateBucket = "methanemap-scene-state"
)

// EnsureStreams creates or updates the streams and the durable pull
// consumer; running it again with the same config changes nothing.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Consumer, error) {
	cfg.defaults()
	streams := []jetstream.StreamConfig{
		{Name: ScenesStream, Subjects: []string{cfg.scenes()}, Retention: jetstream.WorkQueuePolicy,
			Duplicates: 24 * time.Hour, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Name: DetectionsStream, Subjects: []string{cfg.Prefix + ".detections.>", cfg.Prefix + ".sites.>"},
			Retention: jetstream.LimitsPolicy, MaxAge: cfg.MaxAge, Duplicates: 24 * time.Hour, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Name: EventsStream, Subjects: []string{cfg.Prefix + ".events.>"}, Retention: jetstream.LimitsPolicy,
			MaxAge: cfg.MaxAge, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
		{Name: DeadStream, Subjects: []string{cfg.dead()}, Retention: jetstream.LimitsPolicy,
			MaxAge: cfg.MaxAge, Replicas: cfg.Replicas, Storage: jetstream.FileStorage},
	}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return nil, fmt.Errorf("worker: stream %s: %w", sc.Name, err)
		}
	}
	// the work-queue stream forgets acked jobs, and with them their
	// Nats-Msg-Id once its duplicate window (or a restart) is past: done
	// scenes are remembered here, as long as their events are kept
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SceneStateBucket, TTL: cfg.MaxAge,
		Replicas: cfg.Replicas, Storage: jetstream.FileStorage, Description: "methanemap: the scenes done, one key each"}); err != nil {
		return nil, fmt.Errorf("worker: KV bucket %s: %w", SceneStateBucket, err)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, ScenesStream, jetstream.ConsumerConfig{
		Durable:   ConsumerName,
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   cfg.AckWait,
		// One delivery more than may run the scene. A delivery that ends
		// (done, failed, released) acks, naks or terms its job, but a
		// worker killed by the scene itself (out of memory, a crash in
		// GDAL) says nothing: the job comes back after AckWait, kills the
		// next worker, and at MaxDeliver the stream would drop it without
		// a word. So delivery MaxDeliver+1 is never run: the worker
		// dead-letters it with a final failed event (handle). The stream's
		// own delivery count does this with no write per start, and holds
		// however many workers died.
		MaxDeliver:    cfg.MaxDeliver + 1,
		MaxAckPending: 1000,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: consumer %s: %w", ConsumerName, err)
	}
	return c, nil
}
