package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/feed"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FeedBucket is the NATS KV bucket holding the feed's ledger: one key per
// scene queued.
const FeedBucket = "methanemap-feed"

// runFeed polls STAC APIs, pairs sensors into scenes and queues the new
// ones. Flags default to the config's feed section.
func runFeed(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	c := cfg.Feed
	fs := flag.NewFlagSet("feed", flag.ContinueOnError)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	var auth natsAuth
	auth.flags(fs)
	var stacURLs, colls, headers stringList
	fs.Var(&stacURLs, "stac", "a STAC API /search URL (repeatable; default: feed.stac)")
	fs.BoolVar(&c.Post, "post", c.Post, "search with POST (and follow POST next links) instead of GET")
	fs.Var(&colls, "collection", "SENSOR=COLLECTION[,COLLECTION] for naip, s2, s1 (repeatable; default: feed.collections)")
	fs.Var(&headers, "header", "'Name: value' sent with every search request (repeatable): API keys, tokens")
	bbox := fs.String("bbox", "", "minlon,minlat,maxlon,maxlat to search (default: feed.bbox, else anywhere)")
	fs.StringVar(&c.AOI, "aoi", c.AOI, "a GeoJSON file: the area of interest, searched by its bounds and set as each scene's AOI")
	fs.StringVar(&c.Datetime, "datetime", c.Datetime, "RFC 3339 interval of the primary sensor's Items, e.g. 2023-01-01T00:00:00Z/.. (default: the last 30 days)")
	fs.Float64Var(&c.MaxCloud, "max-cloud", c.MaxCloud, "Sentinel-2 Items cloudier than this (percent) are not used")
	fs.DurationVar(&c.PairWindow, "pair-window", c.PairWindow, "Sentinel-2 Items within this of the NAIP date")
	fs.DurationVar(&c.S1Window, "s1-window", c.S1Window, "Sentinel-1 Items within this of the NAIP date")
	fs.StringVar(&c.MosaicDir, "mosaic-dir", c.MosaicDir, "where mosaic VRTs are written (the workers must be allowed to read it)")
	fs.StringVar(&c.HrefQuery, "href-query", c.HrefQuery, "query string appended to every asset URL (a SAS token or signature)")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "time between passes")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "at most this many requests per second to the catalogues (0: no limit)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "per request")
	fs.IntVar(&c.Retries, "retries", c.Retries, "attempts per request on 429, 5xx and network errors")
	fs.IntVar(&c.Limit, "limit", c.Limit, "Items per page")
	once := fs.Bool("once", false, "one pass, then exit")
	dry := fs.Bool("dry-run", false, "print the scenes a pass would queue as JSON lines; queue nothing, write nothing")
	replicas := fs.Int("replicas", 1, "replicas of the ledger's KV bucket (3 on a cluster)")
	modelDir := fs.String("model", cfg.Model.Dir, "the model whose sensors are paired (default: the built-in demo model)")
	httpAddr := fs.String("http", "", "serve /metrics here (default: nowhere)")
	var allow stringList
	fs.Var(&allow, "allow", "directory or URL prefix the hrefs a mosaic names may point to (repeatable; default: ingest.allow, else anywhere: the workers still check what they open)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(allow) == 0 {
		allow = cfg.Ingest.Allow
	}
	if err := ingest.ValidateAllow(allow); err != nil {
		return usagef("feed: --allow: %v", err)
	}
	if err := ingest.Confine(allow); err != nil { // GDAL's HTTP too, redirects included
		return err
	}
	if len(stacURLs) > 0 {
		c.STAC = stacURLs
	}
	if len(colls) > 0 {
		c.Collections = map[string]string{}
		for k, v := range cfg.Feed.Collections {
			c.Collections[k] = v
		}
		for _, kv := range colls {
			name, list, ok := strings.Cut(kv, "=")
			if !ok {
				return usagef("feed: --collection %q: want naip=, s2= or s1=NAMES", kv)
			}
			c.Collections[strings.TrimSpace(name)] = list
		}
	}
	if len(headers) > 0 {
		c.Headers = map[string]string{}
		for _, h := range headers {
			k, v, ok := strings.Cut(h, ":")
			if !ok {
				return usagef("feed: --header %q: want 'Name: value'", h)
			}
			c.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if *bbox != "" {
		c.BBox = nil
		for _, p := range strings.Split(*bbox, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil {
				return usagef("feed: --bbox: %q is not a number", p)
			}
			c.BBox = append(c.BBox, v)
		}
	}
	if len(c.STAC) == 0 {
		return usagef("feed: give at least one --stac URL (a STAC API /search endpoint), or feed.stac in the config")
	}
	log := newLogger(cfg.Log, stderr)
	// a busy address is refused before the model loads or NATS is dialled
	var ln net.Listener
	if *httpAddr != "" {
		var err error
		if ln, err = net.Listen("tcp", *httpAddr); err != nil {
			return mm.Permanentf("feed: --http %s: %w", *httpAddr, err)
		}
		defer ln.Close()
	}
	m, err := loadModel(*modelDir)
	if err != nil {
		return err
	}
	met := newFeedMetrics()
	var js jetstream.JetStream
	if !*dry {
		nopts, err := auth.options()
		if err != nil {
			return err
		}
		nc, err := nats.Connect(*natsURL, append(nopts, nats.Name("methanemap feed"), nats.MaxReconnects(-1))...)
		if err != nil {
			return fmt.Errorf("feed: NATS %s: %w", *natsURL, err)
		}
		defer nc.Drain()
		if js, err = jetstream.New(nc); err != nil {
			return err
		}
	}
	f, err := newFeed(ctx, c, allow, m.Card.Chip.Sensors(), js, *replicas, met, log)
	if err != nil {
		return err
	}

	if ln != nil {
		log.Info("HTTP listening", "addr", ln.Addr().String())
		mux := http.NewServeMux()
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			met.write(w)
		})
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ln)
		defer hs.Close()
	}
	var printScene func(*mm.Scene)
	if *dry {
		printScene = func(sc *mm.Scene) {
			b, _ := json.Marshal(sc)
			fmt.Fprintf(stdout, "%s\n", b)
		}
	}
	return feedLoop(ctx, f, c.Interval, *once, printScene, met, log, stdout)
}

// newFeed builds a feed from its configuration; with js nil it can only
// run dry.
func newFeed(ctx context.Context, c configs.Feed, allow []string, sensors []mm.Sensor, js jetstream.JetStream, replicas int, met *feedMetrics, log *slog.Logger) (*feed.Feed, error) {
	fc := feed.Config{Allow: allow, Sensors: sensors, Collections: map[mm.Sensor][]string{}, BBox: c.BBox, Datetime: c.Datetime, MaxCloud: c.MaxCloud,
		Pairing:   feed.Pairing{Window: c.PairWindow, S1Window: c.S1Window, MaxCloud: c.MaxCloud},
		MosaicDir: c.MosaicDir, HrefQuery: strings.TrimPrefix(c.HrefQuery, "?"), Limit: c.Limit}
	for k, v := range c.Collections {
		s := mm.Sensor(k)
		if s != mm.NAIP && s != mm.Sentinel2 && s != mm.Sentinel1 {
			return nil, usagef("feed: collections: %q is not naip, s2 or s1", k)
		}
		fc.Collections[s] = strings.Split(v, ",")
	}
	if c.AOI != "" {
		data, err := os.ReadFile(c.AOI)
		if err != nil {
			return nil, mm.Permanentf("feed: aoi: %w", err)
		}
		if fc.AOI, err = mm.ParseAOI(data); err != nil {
			return nil, mm.Permanentf("feed: aoi %s: %w", c.AOI, err)
		}
	}
	if len(fc.BBox) != 0 && len(fc.BBox) != 4 {
		return nil, usagef("feed: bbox: want minlon,minlat,maxlon,maxlat")
	}
	for _, u := range c.STAC {
		fc.Endpoints = append(fc.Endpoints, feed.Endpoint{URL: u, Post: c.Post, Headers: c.Headers})
	}
	client := &feed.Client{HTTP: &http.Client{Timeout: c.Timeout}, Retries: c.Retries, Observe: met.request}
	if c.Rate > 0 {
		client.MinInterval = time.Duration(float64(time.Second) / c.Rate)
	}
	var ledger feed.Ledger
	var queue feed.Queue
	if js != nil {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: FeedBucket, Replicas: replicas,
			Description: "methanemap feed: the scenes queued, one key each"})
		if err != nil {
			return nil, fmt.Errorf("feed: KV bucket %s: %w", FeedBucket, err)
		}
		ledger = kvLedger{kv}
		queue = func(ctx context.Context, sc *mm.Scene) (bool, error) {
			return worker.Enqueue(ctx, js, worker.Config{}, sc)
		}
	}
	return feed.New(fc, client, ledger, queue, log), nil
}

// feedLoop runs passes every interval (or one, with once) until ctx ends.
// A failed pass is logged and the next one runs as scheduled, unless once.
func feedLoop(ctx context.Context, f *feed.Feed, interval time.Duration, once bool, dry func(*mm.Scene), met *feedMetrics, log *slog.Logger, stdout io.Writer) error {
	for {
		st, err := f.Pass(ctx, dry)
		met.pass(st)
		log.Info("feed pass", "items", st.Items, "bad_items", st.Bad, "queued", st.Queued, "already_queued", st.Already, "not_paired", st.Unpaired)
		if dry == nil && stdout != nil {
			fmt.Fprintf(stdout, "items %d (bad %d), queued %d, already queued %d, not paired %v\n", st.Items, st.Bad, st.Queued, st.Already, st.Unpaired)
		}
		if err != nil {
			if once || ctx.Err() != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			log.Error("feed pass failed, next pass as scheduled", "err", err)
		}
		if once || ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// kvLedger keeps the feed's ledger in a NATS KV bucket, one key per scene.
type kvLedger struct{ kv jetstream.KeyValue }

func (l kvLedger) Seen(ctx context.Context, id string) (bool, error) {
	_, err := l.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (l kvLedger) Record(ctx context.Context, id string) error {
	_, err := l.kv.Create(ctx, id, []byte(time.Now().UTC().Format(time.RFC3339)))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	return err
}
