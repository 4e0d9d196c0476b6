package main

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/methanemap/methanemap/oapi"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go/jetstream"
)

// follower replays the detections stream into the OGC API's store and then
// follows it, so every daemon serves what the stream holds.
type follower struct {
	once     sync.Once
	caughtUp chan struct{} // closed once the replay reached the stream's end
}

// follow starts replaying METHANEMAP_DETECTIONS from its first message
// (an ordered consumer: it resumes by itself after a broker restart).
// Features older than maxAge (the stream's own limit) are dropped from the
// store every few minutes, as the stream drops them.
func follow(ctx context.Context, js jetstream.JetStream, st *oapi.Store, maxAge time.Duration, log *slog.Logger) (*follower, error) {
	f := &follower{caughtUp: make(chan struct{})}
	s, err := js.Stream(ctx, worker.DetectionsStream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		f.done()
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		col := oapi.Detections.ID
		if strings.Contains(msg.Subject(), ".sites.") {
			col = oapi.Sites.ID
		}
		at := time.Now()
		meta, merr := msg.Metadata()
		if merr == nil {
			at = meta.Timestamp
		}
		if err := st.AddAt(col, msg.Data(), at); err != nil {
			log.Warn("OGC API store: feature skipped", "subject", msg.Subject(), "err", err)
		}
		if merr == nil && meta.NumPending == 0 {
			f.done()
		}
	})
	if err != nil {
		return nil, err
	}
	go func() {
		sweep := time.NewTicker(5 * time.Minute)
		defer sweep.Stop()
		for {
			select {
			case <-ctx.Done():
				cc.Stop()
				return
			case <-sweep.C:
				if n := st.Expire(time.Now().Add(-maxAge)); n > 0 {
					log.Info("OGC API store: features aged out of the stream dropped", "features", n)
				}
			}
		}
	}()
	return f, nil
}

func (f *follower) done() { f.once.Do(func() { close(f.caughtUp) }) }

// ready reports whether the replay has caught up with the stream.
func (f *follower) ready() bool {
	select {
	case <-f.caughtUp:
		return true
	default:
		return false
	}
}
