package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/jsonl"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxStdinLine is the longest JSON line enqueue - reads: a STAC
// ItemCollection of a few thousand Items fits.
const maxStdinLine = 16 << 20

// runEnqueue queues scene messages, STAC Items and ItemCollections (and
// JSON lines from stdin for "-"). Each valid scene is printed with queued
// or duplicate; a bad one is refused with the reason and the rest still go.
func runEnqueue(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	var auth natsAuth
	auth.flags(fs)
	wait := fs.Bool("wait", false, "after queueing, wait until every scene is done or has failed for good, printing each outcome")
	timeout := fs.Duration("timeout", 0, "with --wait, give up after this long (0: no limit)")
	force := fs.Bool("force", false, "queue each scene as a new run even when it is done or already queued (default: a done scene is reported done, not run again)")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usagef("enqueue: %v", err)
	}
	if fs.NArg() == 0 {
		return usagef("enqueue: give scene files, or - for JSON lines on stdin")
	}
	nopts, err := auth.options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL, append(nopts, nats.Name("methanemap enqueue"))...)
	if err != nil {
		return fmt.Errorf("enqueue: NATS %s: %w", *natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	bad := 0
	var queued []string
	queue := func(sc *mm.Scene) {
		r, err := worker.EnqueueScene(ctx, js, worker.Config{}, sc, worker.EnqueueOptions{Force: *force})
		switch {
		case err != nil:
			bad++
			fmt.Fprintf(stderr, "%s: %v\n", sc.ID, err)
			return
		case r.Done: // --wait prints its done event at once
			fmt.Fprintf(stdout, "%s duplicate: done already (--force runs it again)\n", sc.ID)
		case r.Duplicate:
			fmt.Fprintf(stdout, "%s duplicate\n", sc.ID)
		default:
			fmt.Fprintf(stdout, "%s queued\n", sc.ID)
		}
		queued = append(queued, sc.ID)
	}
	for _, f := range fs.Args() {
		if f == "-" {
			// every line is queued or refused with its number, a long one too
			err := jsonl.Each(os.Stdin, maxStdinLine, func(line int, data []byte, err error) {
				var scenes []*mm.Scene
				if err == nil {
					scenes, err = ingest.ParseMessage(data)
				}
				if err != nil {
					bad++
					fmt.Fprintf(stderr, "stdin line %d: %v\n", line, err)
				}
				for _, s := range scenes {
					queue(s)
				}
			})
			if err != nil {
				return fmt.Errorf("enqueue: reading stdin: %w", err)
			}
			continue
		}
		scenes, err := readSceneFile(f)
		if err != nil { // an ItemCollection's good Items still go
			bad++
			fmt.Fprintf(stderr, "%v\n", err)
		}
		for _, s := range scenes {
			queue(s)
		}
	}
	var waitErr error
	if *wait {
		waitErr = waitScenes(ctx, js, queued, *timeout, stdout)
	}
	if bad > 0 {
		return mm.Permanentf("enqueue: %d refused (see above)", bad)
	}
	return waitErr
}

// waitScenes follows the scenes' events until each is done or failed for
// good, and prints each outcome as it comes. It reads the last event per
// scene, which any JetStream server answers: a scene's as soon as its
// final event arrives (a core NATS subscription to the events tells it),
// every scene's every 250 ms (events that came before the subscription,
// or while it was down).
func waitScenes(ctx context.Context, js jetstream.JetStream, ids []string, timeout time.Duration, stdout io.Writer) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	events, err := js.Stream(ctx, worker.EventsStream)
	if err != nil {
		return fmt.Errorf("enqueue --wait: %w", err)
	}
	pending := map[string]bool{}
	for _, id := range ids {
		pending[id] = true
	}
	failed := 0
	// a scene whose final event just came: checked at once (dropped when
	// many come together: the next round checks every scene)
	finals := make(chan string, 64)
	prefix := worker.Config{}.EventSubject("")
	if nc := js.Conn(); nc != nil {
		sub, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
			var e worker.Event
			if json.Unmarshal(m.Data, &e) != nil || !e.Final() {
				return
			}
			select {
			case finals <- strings.TrimPrefix(m.Subject, prefix):
			default:
			}
		})
		if err == nil {
			defer sub.Unsubscribe()
		}
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	check := ids // every scene, the first time and on each tick
	for len(pending) > 0 {
		for _, id := range check {
			if !pending[id] {
				continue
			}
			m, err := events.GetLastMsgForSubject(ctx, worker.Config{}.EventSubject(id))
			if err != nil {
				continue // not yet, or the server is busy: ask again
			}
			var e worker.Event
			if json.Unmarshal(m.Data, &e) != nil || !e.Final() {
				continue
			}
			delete(pending, id)
			if e.Event == "done" {
				n := 0
				for _, v := range e.Detections {
					n += v
				}
				fmt.Fprintf(stdout, "%s done: %d detections (%s), %d sites\n", id, n, fmtCounts(e.Detections), e.Sites)
			} else {
				failed++
				fmt.Fprintf(stdout, "%s failed: %s\n", id, e.Reason)
			}
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("enqueue --wait: %d scenes not finished: %w", len(pending), ctx.Err())
		case <-tick.C:
			check = ids
		case id := <-finals:
			check = []string{id}
		}
	}
	if failed > 0 {
		return fmt.Errorf("enqueue --wait: %d of %d scenes failed", failed, len(ids))
	}
	return nil
}

// readSceneFile parses one file (or every .json file of a directory, via
// loadScenes) and returns its good scenes even when some Items are bad.
func readSceneFile(path string) ([]*mm.Scene, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return loadScenes(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, mm.Permanent(err)
	}
	scenes, err := ingest.ParseMessage(data)
	abs, aerr := filepath.Abs(filepath.Dir(path))
	if aerr != nil {
		return nil, aerr
	}
	for _, sc := range scenes {
		ingest.ResolveHrefs(sc, abs)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return scenes, err
}
