package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/nats-io/nats.go/jetstream"
)

// EnqueueOptions change what EnqueueScene does.
type EnqueueOptions struct {
	// Force queues the scene as a new run even when it is done or already
	// queued: its job's Nats-Msg-Id is the scene id and a run id
	// ("<scene>@<run>"), so the stream takes it, and its events are told
	// from the earlier runs' (their ids carry the job's stream sequence).
	Force bool
}

// Enqueued says what EnqueueScene did with a scene.
type Enqueued struct {
	// Duplicate: not queued, the stream already holds this job (within
	// its duplicate window) or the scene is done.
	Duplicate bool
	// Done: not queued because the scene is done; its done event is the
	// last on its events subject.
	Done bool
}

// Enqueue is EnqueueScene without options: it reports whether the scene
// was not queued (a duplicate, or done already).
func Enqueue(ctx context.Context, js jetstream.JetStream, cfg Config, sc *mm.Scene) (duplicate bool, err error) {
	r, err := EnqueueScene(ctx, js, cfg, sc, EnqueueOptions{})
	return r.Duplicate, err
}

// EnqueueScene publishes a scene job with the scene id as Nats-Msg-Id.
//
// A scene done within the streams' MaxAge (SceneStateBucket says so) is
// not queued again: the work-queue stream deletes acked jobs, so its
// Nats-Msg-Id de-duplication ends with its duplicate window (24 h) or a
// server restart, while the scene's done event stays MaxAge. Force runs
// it again all the same.
//
// A new job gets an "accepted" event, unless a worker has already
// reported on it (a worker can take, and finish, the scene before that
// event is published: the scene's last event must stay the worker's).
func EnqueueScene(ctx context.Context, js jetstream.JetStream, cfg Config, sc *mm.Scene, opts EnqueueOptions) (Enqueued, error) {
	cfg.defaults()
	data, err := json.Marshal(sc)
	if err != nil {
		return Enqueued{}, err
	}
	if !opts.Force {
		done, err := sceneDone(ctx, js, sc.ID)
		if err != nil {
			return Enqueued{}, fmt.Errorf("worker: enqueue %s: %w", sc.ID, err)
		}
		if done {
			return Enqueued{Duplicate: true, Done: true}, nil
		}
	}
	last, err := lastEventSeq(ctx, js, cfg, sc.ID)
	if err != nil {
		return Enqueued{}, fmt.Errorf("worker: enqueue %s: events: %w", sc.ID, err)
	}
	id := sc.ID
	if opts.Force {
		id += "@" + runID()
	}
	ack, err := js.Publish(ctx, cfg.scenes(), data, jetstream.WithMsgID(id))
	if err != nil {
		return Enqueued{}, fmt.Errorf("worker: enqueue %s: %w", sc.ID, err)
	}
	if !ack.Duplicate {
		ev, _ := json.Marshal(Event{Scene: sc.ID, Event: "accepted", Time: time.Now().UTC()})
		var apiErr *jetstream.APIError
		_, err := js.Publish(ctx, cfg.events(sc.ID), ev, jetstream.WithExpectLastSequencePerSubject(last))
		if err != nil && !(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)) {
			return Enqueued{}, fmt.Errorf("worker: enqueue %s: event: %w", sc.ID, err)
		}
	}
	return Enqueued{Duplicate: ack.Duplicate}, nil
}

// lastEventSeq is the sequence of the scene's last event (0: none, or no
// events stream yet): "accepted" goes after it only.
func lastEventSeq(ctx context.Context, js jetstream.JetStream, cfg Config, scene string) (uint64, error) {
	events, err := js.Stream(ctx, EventsStream)
	if err != nil {
		return 0, nil
	}
	m, err := events.GetLastMsgForSubject(ctx, cfg.events(scene))
	switch {
	case err == nil:
		return m.Sequence, nil
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	}
	return 0, err
}

// runID names a forced run: 16 random hex digits.
func runID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
