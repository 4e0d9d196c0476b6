package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// sceneState is a scene's record in SceneStateBucket. Only done scenes
// have one: a scene given up on loses it, so that the record and the
// scene's last final event agree.
type sceneState struct {
	State string    `json:"state"`   // "done"
	Seq   uint64    `json:"job_seq"` // the job that did it, in the scenes stream
	Time  time.Time `json:"time"`
}

// stateBucket is SceneStateBucket, looked up on first use.
func (w *Worker) stateBucket(ctx context.Context) (jetstream.KeyValue, error) {
	w.kvMu.Lock()
	defer w.kvMu.Unlock()
	if w.states == nil {
		kv, err := w.js.KeyValue(ctx, SceneStateBucket)
		if err != nil {
			return nil, fmt.Errorf("worker: KV bucket %s: %w", SceneStateBucket, err)
		}
		w.states = kv
	}
	return w.states, nil
}

// remember records j's scene as done. A failure is logged, not fatal:
// the scene is done all the same; enqueueing it again after a restart
// would only run it again.
func (w *Worker) remember(ctx context.Context, j job) {
	kv, err := w.stateBucket(ctx)
	if err == nil {
		data, _ := json.Marshal(sceneState{State: "done", Seq: j.seq, Time: time.Now().UTC()})
		_, err = kv.Put(ctx, j.scene, data)
	}
	if err != nil {
		w.log.Error("scene state not recorded", "scene", j.scene, "err", err)
	}
}

// forget removes a scene's done record, if it has one.
func (w *Worker) forget(ctx context.Context, scene string) {
	kv, err := w.stateBucket(ctx)
	if err == nil {
		err = kv.Delete(ctx, scene)
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		w.log.Error("scene state not removed", "scene", scene, "err", err)
	}
}

// sceneDone reports whether SceneStateBucket records the scene as done
// (false when there is no such bucket yet: no worker has run).
func sceneDone(ctx context.Context, js jetstream.JetStream, scene string) (bool, error) {
	kv, err := js.KeyValue(ctx, SceneStateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("KV bucket %s: %w", SceneStateBucket, err)
	}
	e, err := kv.Get(ctx, scene)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("KV bucket %s: %s: %w", SceneStateBucket, scene, err)
	}
	var st sceneState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return false, fmt.Errorf("KV bucket %s: %s: %w", SceneStateBucket, scene, err)
	}
	return st.State == "done", nil
}
