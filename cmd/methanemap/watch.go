package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runWatch prints the detection stream as GeoJSON lines (one Feature per
// line), from the stream's start or --since ago, then live until stopped:
// `methanemap watch > live.geojsonl` feeds a GIS layer.
func runWatch(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	var auth natsAuth
	auth.flags(fs)
	class := fs.String("class", "", "only this class")
	since := fs.Duration("since", 0, "only detections published this long ago or later (0: all the stream holds)")
	sites := fs.Bool("sites", false, "print sites instead of detections")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	subject := "methanemap.detections."
	if *sites {
		subject = "methanemap.sites."
	}
	if *class == "" {
		subject += "*"
	} else if _, err := mm.ParseClass(*class); err != nil {
		return usagef("watch: --class: %v", err)
	} else {
		subject += *class
	}
	nopts, err := auth.options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL, append(nopts, nats.Name("methanemap watch"))...)
	if err != nil {
		return fmt.Errorf("watch: NATS %s: %w", *natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}
	if *since > 0 {
		start := time.Now().Add(-*since)
		occ.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		occ.OptStartTime = &start
	}
	cons, err := js.OrderedConsumer(ctx, worker.DetectionsStream, occ)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch: %w", err)
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", msg.Data()); err != nil {
			return err
		}
	}
}
