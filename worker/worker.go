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
	Raw      string          `json:"raw,omitempty"` // the message when it is not JSON
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

// handle applies the ack policy to one message. ctx ends only when the
// shutdown grace is over: the scene is then handed back unfinished.
func (w *Worker) handle(hard context.Context, msg jetstream.Msg) {
	t0 := time.Now()
	ctx := context.WithoutCancel(hard) // for acks, events and dead letters
	meta, _ := msg.Metadata()
	delivery := uint64(1)
	if meta != nil {
		delivery = meta.NumDelivered
	}
	scenes, err := ingest.ParseMessage(msg.Data())
	if err == nil && len(scenes) != 1 {
		err = mm.Permanentf("a scene job holds one scene, this message holds %d", len(scenes))
	}
	if err != nil {
		w.giveUp(ctx, msg, "", delivery, err)
		return
	}
	sc := scenes[0]
	log := w.log.With("scene", sc.ID, "delivery", delivery)
	w.count(func(s *Stats) { s.InFlight++ })
	defer w.count(func(s *Stats) { s.InFlight-- })
	w.event(ctx, Event{Scene: sc.ID, Event: "started", Delivery: delivery})
	stop := w.heartbeat(msg)
	defer stop()
	dets, sites, err := w.process(hard, sc, func(done, total int) {
		w.event(ctx, Event{Scene: sc.ID, Event: "progress", Done: done, Total: total})
	})
	if err == nil {
		p0 := time.Now()
		err = w.publish(ctx, dets, sites)
		w.cfg.Observe("publish", time.Since(p0))
	}
	switch {
	case hard.Err() != nil && err != nil && delivery >= uint64(w.cfg.MaxDeliver):
		// a Nak would still use up the last delivery: the stream would drop
		// the scene without a word, so it is given up on, with the reason
		w.giveUp(ctx, msg, sc.ID, delivery, fmt.Errorf("worker shutting down during the scene's last delivery (%d of %d): %w", delivery, w.cfg.MaxDeliver, err))
	case hard.Err() != nil && err != nil:
		// shutting down: not the scene's fault; another worker takes it now
		log.Warn("shutdown: scene handed back unfinished", "err", err)
		w.count(func(s *Stats) { s.Released++ })
		w.finalEvent(ctx, Event{Scene: sc.ID, Event: "released", Reason: "worker shutting down", Delivery: delivery})
		if err := msg.Nak(); err != nil {
			log.Warn("nak", "err", err)
		}
	case err == nil:
		counts := map[string]int{}
		for _, d := range dets {
			counts[string(d.Class)]++
		}
		// the done event before the ack: a worker dying in between only
		// makes the scene run again, never a done scene without its event
		w.finalEvent(ctx, Event{Scene: sc.ID, Event: "done", Detections: counts, Sites: len(sites), Delivery: delivery})
		if err := msg.DoubleAck(ctx); err != nil {
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
	case mm.IsPermanent(err) || delivery >= uint64(w.cfg.MaxDeliver):
		w.giveUp(ctx, msg, sc.ID, delivery, err)
	default:
		delay := w.cfg.Backoff[min(int(delivery)-1, len(w.cfg.Backoff)-1)]
		log.Warn("scene failed, will retry", "err", err, "in", delay)
		w.count(func(s *Stats) { s.Retried++ })
		w.finalEvent(ctx, Event{Scene: sc.ID, Event: "failed", Reason: err.Error(), Delivery: delivery, Retry: true})
		msg.NakWithDelay(delay)
	}
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

// giveUp terminates the message and writes a dead letter with the reason.
func (w *Worker) giveUp(ctx context.Context, msg jetstream.Msg, scene string, delivery uint64, err error) {
	reason := err.Error()
	w.log.Error("scene given up", "scene", scene, "delivery", delivery, "reason", reason)
	w.count(func(s *Stats) { s.Dead++ })
	dl := DeadLetter{Scene: scene, Reason: reason, Delivery: delivery, Time: time.Now().UTC()}
	if json.Valid(msg.Data()) {
		dl.Message = msg.Data()
	} else {
		dl.Raw = string(msg.Data())
	}
	data, _ := json.Marshal(dl)
	// one dead letter per message and delivery, however often it is retried
	id := fmt.Sprintf("dead:%d:%d", delivery, msgSeq(msg))
	if perr := w.publishRetry(ctx, w.cfg.dead(), data, id); perr != nil {
		w.log.Error("dead letter", "err", perr)
	}
	if scene != "" {
		w.finalEvent(ctx, Event{Scene: scene, Event: "failed", Reason: reason, Delivery: delivery})
	}
	msg.TermWithReason(truncate(reason, 200))
}

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

// msgSeq is a message's sequence in its stream (0 when unknown).
func msgSeq(msg jetstream.Msg) uint64 {
	if meta, err := msg.Metadata(); err == nil {
		return meta.Sequence.Stream
	}
	return 0
}

// finalEvent publishes an event that ends a delivery (done, failed,
// released), retrying as publishRetry does: `enqueue --wait` and other
// watchers rely on it. Progress events are best effort (event).
func (w *Worker) finalEvent(ctx context.Context, e Event) {
	e.Time = time.Now().UTC()
	data, _ := json.Marshal(e)
	id := fmt.Sprintf("%s:%s:%d", e.Scene, e.Event, e.Delivery)
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

// Enqueue publishes a scene job with the scene id as Nats-Msg-Id and
// reports whether the stream already held it. A new job gets an
// "accepted" event, unless a worker has already reported on it (a worker
// can take, and finish, the scene before that event is published: the
// scene's last event must stay the worker's).
func Enqueue(ctx context.Context, js jetstream.JetStream, cfg Config, sc *mm.Scene) (duplicate bool, err error) {
	cfg.defaults()
	data, err := json.Marshal(sc)
	if err != nil {
		return false, err
	}
	// the scene's last event before the job: "accepted" goes after it only
	var last uint64
	if events, err := js.Stream(ctx, EventsStream); err == nil {
		m, err := events.GetLastMsgForSubject(ctx, cfg.events(sc.ID))
		switch {
		case err == nil:
			last = m.Sequence
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return false, fmt.Errorf("worker: enqueue %s: events: %w", sc.ID, err)
		}
	}
	ack, err := js.Publish(ctx, cfg.scenes(), data, jetstream.WithMsgID(sc.ID))
	if err != nil {
		return false, fmt.Errorf("worker: enqueue %s: %w", sc.ID, err)
	}
	if !ack.Duplicate {
		ev, _ := json.Marshal(Event{Scene: sc.ID, Event: "accepted", Time: time.Now().UTC()})
		var apiErr *jetstream.APIError
		_, err := js.Publish(ctx, cfg.events(sc.ID), ev, jetstream.WithExpectLastSequencePerSubject(last))
		if err != nil && !(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)) {
			return false, fmt.Errorf("worker: enqueue %s: event: %w", sc.ID, err)
		}
	}
	return ack.Duplicate, nil
}
