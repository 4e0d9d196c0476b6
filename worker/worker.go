package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/publisher"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Processor runs one scene and returns its detections and sites. It calls
// progress as chips are done.
type Processor func(ctx context.Context, sc *mm.Scene, progress func(done, total int)) ([]mm.Detection, []mm.Site, error)

// Worker consumes scene jobs.
type Worker struct {
	js      jetstream.JetStream
	cons    jetstream.Consumer
	cfg     Config
	process Processor
	log     *slog.Logger

	mu    sync.Mutex
	stats Stats

	kvMu   sync.Mutex
	states jetstream.KeyValue // SceneStateBucket, once looked up
}

// Stats counts what a worker did since it started.
type Stats struct {
	Done       int            // scenes acked
	Retried    int            // transient failures naked for redelivery
	Dead       int            // messages given up on (dead letters)
	Released   int            // scenes naked unfinished at shutdown, for another worker
	Detections map[string]int // published, by class
	Sites      int
	InFlight   int
}

// Stats returns a copy of the worker's counters.
func (w *Worker) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stats
	st.Detections = map[string]int{}
	for k, v := range w.stats.Detections {
		st.Detections[k] = v
	}
	return st
}

func (w *Worker) count(f func(*Stats)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stats.Detections == nil {
		w.stats.Detections = map[string]int{}
	}
	f(&w.stats)
}

// New makes a worker on the consumer EnsureStreams returned.
func New(js jetstream.JetStream, cons jetstream.Consumer, cfg Config, process Processor, log *slog.Logger) *Worker {
	cfg.defaults()
	return &Worker{js: js, cons: cons, cfg: cfg, process: process, log: log}
}

// Event is a scene status event on <prefix>.events.<scene_id>.
type Event struct {
	Scene      string         `json:"scene_id"`
	Event      string         `json:"event"` // accepted, started, progress, done, failed, released
	Time       time.Time      `json:"time"`
	Done       int            `json:"chips_done,omitempty"`
	Total      int            `json:"chips_total,omitempty"`
	Detections map[string]int `json:"detections,omitempty"`
	Sites      int            `json:"sites,omitempty"`
	Reason     string         `json:"reason,omitempty"`
	Delivery   uint64         `json:"delivery,omitempty"`
	// Retry marks a failed delivery the scene will be retried after; a
	// failed event without it is final (the scene went to the dead letters).
	Retry bool `json:"retry,omitempty"`
}

// Final reports whether e ends its scene's story: done, or failed for good.
func (e Event) Final() bool { return e.Event == "done" || (e.Event == "failed" && !e.Retry) }

// DeadLetter is what <prefix>.dead receives for a scene given up on.
type DeadLetter struct {
	Scene    string          `json:"scene_id,omitempty"`
	Reason   string          `json:"reason"`
	Delivery uint64          `json:"delivery"`
	Time     time.Time       `json:"time"`
	Message  json.RawMessage `json:"message,omitempty"`
	Raw      string          `json:"raw,omitempty"` // the message when it is UTF-8 but not JSON
	// RawBase64 is the message when it is not UTF-8, in base64, or its
	// first 64 KiB when it is larger (Truncated).
	RawBase64 []byte `json:"raw_base64,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	Size      int    `json:"size"` // the message's size in bytes
}

// Run fetches and processes scenes, Concurrency at a time, until ctx is
// done; then it stops fetching and gives the scenes in flight Grace to
// finish before cancelling them and handing them back (Nak) to the stream.
func (w *Worker) Run(ctx context.Context) error {
	slots := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	// in-flight scenes run on their own context, cancelled Grace after ctx
	hard, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
		case <-hard.Done():
			return
		}
		t := time.NewTimer(w.cfg.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			w.log.Warn("grace period over: releasing the scenes in flight", "grace", w.cfg.Grace)
			cancel()
		case <-hard.Done():
		}
	}()
	defer wg.Wait()
	for {
		select { // a free slot, unless we are stopping
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		batch, err := w.cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				break
			}
			w.log.Warn("fetch", "err", err)
			time.Sleep(time.Second)
			continue
		}
		got := false
		for msg := range batch.Messages() {
			got = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				w.handle(hard, msg)
			}()
		}
		if !got {
			<-slots
		}
	}
	return nil
}

// job is one delivery of a scene message.
type job struct {
	msg      jetstream.Msg
	scene    string // "" while (or when) the message names no scene
	delivery uint64
	// seq is the message's sequence in the scenes stream: redeliveries
	// share it, each enqueueing of a scene has its own. Event ids carry
	// it, so that the events of a scene run again (enqueue --force, or
	// queued again once it has left the duplicate window) are not taken
	// for duplicates of its earlier run's.
	seq uint64
}

func newJob(msg jetstream.Msg) job {
	j := job{msg: msg, delivery: 1}
	if meta, err := msg.Metadata(); err == nil {
		j.delivery, j.seq = meta.NumDelivered, meta.Sequence.Stream
	}
	return j
}

// handle applies the ack policy to one message. ctx ends only when the
// shutdown grace is over: the scene is then handed back unfinished.
func (w *Worker) handle(hard context.Context, msg jetstream.Msg) {
	t0 := time.Now()
	ctx := context.WithoutCancel(hard) // for acks, events and dead letters
	j := newJob(msg)
	scenes, err := ingest.ParseMessage(msg.Data())
	if err == nil && len(scenes) != 1 {
		err = mm.Permanentf("a scene job holds one scene, this message holds %d", len(scenes))
	}
	if err != nil {
		// a message whose id can be read names its scene, so that the
		// scene's watchers (enqueue --wait) hear of the failure
		j.scene = readableID(msg.Data())
		w.giveUp(ctx, j, err)
		return
	}
	sc := scenes[0]
	j.scene = sc.ID
	if j.delivery > uint64(w.cfg.MaxDeliver) {
		// the consumer delivers once more than MaxDeliver (EnsureStreams):
		// this delivery only comes when the one before never ended
		w.giveUp(ctx, j, fmt.Errorf("worker: scene %s: delivery %d never ended (the worker running it died or went silent for the ack wait: out of memory? a crash?); after %d deliveries it is not run again",
			sc.ID, j.delivery-1, w.cfg.MaxDeliver))
		return
	}
	log := w.log.With("scene", sc.ID, "delivery", j.delivery)
	w.count(func(s *Stats) { s.InFlight++ })
	defer w.count(func(s *Stats) { s.InFlight-- })
	w.event(ctx, Event{Scene: sc.ID, Event: "started", Delivery: j.delivery})
	stop := w.heartbeat(msg)
	defer stop()
	dets, sites, err := w.run(hard, sc, func(done, total int) {
		w.event(ctx, Event{Scene: sc.ID, Event: "progress", Done: done, Total: total})
	})
	if err == nil {
		p0 := time.Now()
		err = w.publish(ctx, dets, sites)
		w.cfg.Observe("publish", time.Since(p0))
	}
	switch {
	case err == nil:
		w.done(ctx, j, log, t0, dets, sites)
	case hard.Err() != nil && j.delivery >= uint64(w.cfg.MaxDeliver):
		// a Nak would bring the delivery that is not run: the scene is
		// given up on now, with the true reason
		w.giveUp(ctx, j, fmt.Errorf("worker shutting down during the scene's last delivery (%d of %d): %w", j.delivery, w.cfg.MaxDeliver, err))
	case hard.Err() != nil:
		w.release(ctx, j, log, err)
	case mm.IsPermanent(err) || j.delivery >= uint64(w.cfg.MaxDeliver):
		w.giveUp(ctx, j, err)
	default:
		delay := w.cfg.Backoff[min(int(j.delivery)-1, len(w.cfg.Backoff)-1)]
		log.Warn("scene failed, will retry", "err", err, "in", delay)
		w.count(func(s *Stats) { s.Retried++ })
		w.finalEvent(ctx, j, Event{Scene: sc.ID, Event: "failed", Reason: err.Error(), Delivery: j.delivery, Retry: true})
		msg.NakWithDelay(delay)
	}
}

// done records a scene done, publishes its done event and acks its job.
func (w *Worker) done(ctx context.Context, j job, log *slog.Logger, t0 time.Time, dets []mm.Detection, sites []mm.Site) {
	counts := map[string]int{}
	for _, d := range dets {
		counts[string(d.Class)]++
	}
	// remembered before its done event, whose expiry then comes after
	// the record's; the done event before the ack: a worker dying in
	// between only makes the scene run again, never a done scene without
	// its event
	w.remember(ctx, j)
	w.finalEvent(ctx, j, Event{Scene: j.scene, Event: "done", Detections: counts, Sites: len(sites), Delivery: j.delivery})
	if err := j.msg.DoubleAck(ctx); err != nil {
		log.Warn("ack", "err", err)
	}
	w.cfg.Observe("scene", time.Since(t0))
	w.count(func(s *Stats) {
		s.Done++
		s.Sites += len(sites)
		for k, v := range counts {
			s.Detections[k] += v
		}
	})
	log.Info("scene done", "detections", len(dets), "sites", len(sites))
}

// release hands a scene cut short by shutdown back to the stream: not
// the scene's fault; another worker takes it now.
func (w *Worker) release(ctx context.Context, j job, log *slog.Logger, err error) {
	log.Warn("shutdown: scene handed back unfinished", "err", err)
	w.count(func(s *Stats) { s.Released++ })
	w.finalEvent(ctx, j, Event{Scene: j.scene, Event: "released", Reason: "worker shutting down", Delivery: j.delivery})
	if err := j.msg.Nak(); err != nil {
		log.Warn("nak", "err", err)
	}
}

// readableID is the "id" of a message that is JSON with a valid scene id
// there, else "".
func readableID(data []byte) string {
	var v struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(data, &v) != nil || !mm.ValidSceneID(v.ID) {
		return ""
	}
	return v.ID
}

// heartbeat keeps a long scene from being redelivered while it runs.
func (w *Worker) heartbeat(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(max(time.Second, w.cfg.AckWait/3))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

// giveUp terminates the message and writes a dead letter with the reason;
// a message that names its scene gets a final failed event too.
func (w *Worker) giveUp(ctx context.Context, j job, err error) {
	reason := err.Error()
	w.log.Error("scene given up", "scene", j.scene, "delivery", j.delivery, "reason", reason)
	w.count(func(s *Stats) { s.Dead++ })
	dl := DeadLetter{Scene: j.scene, Reason: truncate(reason, 4096), Delivery: j.delivery, Time: time.Now().UTC(), Size: len(j.msg.Data())}
	switch data := j.msg.Data(); {
	case len(data) > maxDeadMessage:
		dl.RawBase64, dl.Truncated = data[:maxDeadMessage], true
	case !utf8.Valid(data):
		// as a string it would not be valid JSON (RFC 8259 is UTF-8), and
		// encoding/json would swap its bytes for U+FFFD
		dl.RawBase64 = data
	case json.Valid(data):
		dl.Message = data
	default:
		dl.Raw = string(data)
	}
	data, _ := json.Marshal(dl)
	// one dead letter per message and delivery, however often it is retried
	id := fmt.Sprintf("dead:%d:%d", j.delivery, j.seq)
	if perr := w.publishRetry(ctx, w.cfg.dead(), data, id); perr != nil {
		w.log.Error("dead letter", "err", perr)
	}
	if j.scene != "" {
		w.forget(ctx, j.scene)
		w.finalEvent(ctx, j, Event{Scene: j.scene, Event: "failed", Reason: reason, Delivery: j.delivery})
	}
	j.msg.TermWithReason(truncate(reason, 200))
}

// run is the Processor on a scene, within SceneTimeout: the heartbeat
// keeps a scene in progress as long as it runs, so a scene that never
// ends (a raster whose chips cost hours) would hold its worker for ever.
// Running out of time is permanent: the same scene takes as long again.
func (w *Worker) run(hard context.Context, sc *mm.Scene, progress func(done, total int)) ([]mm.Detection, []mm.Site, error) {
	ctx, cancel := context.WithTimeout(hard, w.cfg.SceneTimeout)
	defer cancel()
	dets, sites, err := w.process(ctx, sc, progress)
	if err != nil && hard.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, nil, mm.Permanentf("the scene took longer than the %v a scene may take (--scene-timeout): %v", w.cfg.SceneTimeout, err)
	}
	return dets, sites, err
}

// maxDeadMessage is how much of a message a dead letter carries: the
// letter must fit the server's maximum payload (1 MB by default), or it is
// lost and the scene with it. encoding/json may write a byte as six.
const maxDeadMessage = 64 << 10

// SiteMsgID is a site's Nats-Msg-Id: its id, which names the place
// ("<class>/<first chip>") and so comes again in every scene over it,
// and the scenes it was seen in. A scene processed again publishes the
// same ids; another scene over the same place is not taken for a
// duplicate.
func SiteMsgID(s mm.Site) string { return s.ID + "@" + strings.Join(s.Scenes, "+") }

// publish sends every detection with its id as Nats-Msg-Id, and every
// site with SiteMsgID.
func (w *Worker) publish(ctx context.Context, dets []mm.Detection, sites []mm.Site) error {
	for _, d := range dets {
		data, err := publisher.Feature(d).MarshalJSON()
		if err != nil {
			return err
		}
		if err := w.publishRetry(ctx, w.cfg.detections(string(d.Class)), data, d.ID); err != nil {
			return fmt.Errorf("worker: publish %s: %w", d.ID, err)
		}
	}
	for _, s := range sites {
		data, err := publisher.SiteFeature(s).MarshalJSON()
		if err != nil {
			return err
		}
		if err := w.publishRetry(ctx, w.cfg.sites(string(s.Class)), data, SiteMsgID(s)); err != nil {
			return fmt.Errorf("worker: publish site %s: %w", s.ID, err)
		}
	}
	return nil
}

// publishRetry publishes with a message id, retrying for up to a minute
// while the stream does not answer (a cluster electing a new leader after
// losing a node). The id makes a retry of a publish that did land a no-op.
func (w *Worker) publishRetry(ctx context.Context, subject string, data []byte, id string) error {
	deadline := time.Now().Add(time.Minute)
	wait := 250 * time.Millisecond
	for {
		_, err := w.js.Publish(ctx, subject, data, jetstream.WithMsgID(id))
		if err == nil || !retryable(err) || time.Now().After(deadline) {
			return err
		}
		w.log.Warn("publish, retrying", "subject", subject, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// retryable tells the errors a cluster electing a leader or a broker
// coming back gives from the ones retrying cannot mend (no stream for the
// subject, a message too large, a closed connection).
func retryable(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected)
}

// finalEvent publishes an event that ends a delivery (done, failed,
// released), retrying as publishRetry does: `enqueue --wait` and other
// watchers rely on it. Progress events are best effort (event).
func (w *Worker) finalEvent(ctx context.Context, j job, e Event) {
	e.Time = time.Now().UTC()
	data, _ := json.Marshal(e)
	id := fmt.Sprintf("%s:%s:%d:%d", e.Scene, e.Event, e.Delivery, j.seq)
	if err := w.publishRetry(ctx, w.cfg.events(e.Scene), data, id); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		w.log.Error("event lost", "scene", e.Scene, "event", e.Event, "err", err)
	}
}

func (w *Worker) event(ctx context.Context, e Event) {
	e.Time = time.Now().UTC()
	data, _ := json.Marshal(e)
	if _, err := w.js.Publish(ctx, w.cfg.events(e.Scene), data); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		w.log.Warn("event", "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
