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
	"github.com/paulmach/orb/geojson"
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
	brief := fs.Bool("brief", false, "one short human-readable line per feature instead of GeoJSON")
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
		line := string(msg.Data())
		if *brief {
			line = briefLine(msg.Data())
		}
		if _, err := fmt.Fprintln(stdout, line); err != nil {
			return err
		}
	}
}

// briefLine summarises a detection or site Feature: class, score, where
// (lon, lat of its centre) and id.
func briefLine(data []byte) string {
	f, err := geojson.UnmarshalFeature(data)
	if err != nil {
		return "unreadable feature: " + err.Error()
	}
	if f.Geometry == nil {
		return fmt.Sprintf("%-32v (no geometry) %v", f.Properties["class"], f.ID)
	}
	c := f.Geometry.Bound().Center()
	score, ok := f.Properties["score"].(float64)
	if !ok {
		score, _ = f.Properties["max_score"].(float64)
	}
	return fmt.Sprintf("%-32v %.3f %10.5f,%9.5f  %v", f.Properties["class"], score, c[0], c[1], f.ID)
}
