package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/feed"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FeedBucket is the NATS KV bucket holding the feed's ledger: one key per
// scene queued.
const FeedBucket = "methanemap-feed"

// defaultCollections are the collection names of the big public
// catalogues (Planetary Computer's naip, Earth Search's sentinel-2-l2a and
// Planetary Computer's sentinel-1-rtc).
var defaultCollections = map[mm.Sensor]string{mm.NAIP: "naip", mm.Sentinel2: "sentinel-2-l2a", mm.Sentinel1: "sentinel-1-rtc"}

// runFeed polls STAC APIs, pairs sensors into scenes and queues the new ones.
func runFeed(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("feed", flag.ContinueOnError)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	var auth natsAuth
	auth.flags(fs)
	var stacURLs, colls, headers stringList
	fs.Var(&stacURLs, "stac", "a STAC API /search URL (repeatable)")
	post := fs.Bool("post", false, "search with POST (and follow POST next links) instead of GET")
	fs.Var(&colls, "collection", "SENSOR=COLLECTION[,COLLECTION] for naip, s2, s1 (repeatable; defaults naip, sentinel-2-l2a, sentinel-1-rtc)")
	fs.Var(&headers, "header", "'Name: value' sent with every search request (repeatable): API keys, tokens")
	bbox := fs.String("bbox", "", "minlon,minlat,maxlon,maxlat to search (default: anywhere)")
	datetime := fs.String("datetime", "", "RFC 3339 interval of the primary sensor's Items, e.g. 2023-01-01T00:00:00Z/.. (default: the last 30 days)")
	maxCloud := fs.Float64("max-cloud", 20, "Sentinel-2 Items cloudier than this (percent) are not used")
	window := fs.Duration("pair-window", 30*24*time.Hour, "Sentinel-2 Items within this of the NAIP date")
	s1Window := fs.Duration("s1-window", 30*24*time.Hour, "Sentinel-1 Items within this of the NAIP date")
	mosaicDir := fs.String("mosaic-dir", "./data/mosaics", "where mosaic VRTs are written (the workers must be allowed to read it)")
	hrefQuery := fs.String("href-query", "", "query string appended to every asset URL (a SAS token or signature)")
	interval := fs.Duration("interval", 10*time.Minute, "time between passes")
	once := fs.Bool("once", false, "one pass, then exit")
	dry := fs.Bool("dry-run", false, "print the scenes a pass would queue as JSON lines; queue nothing, write nothing")
	rate := fs.Float64("rate", 2, "at most this many requests per second to the catalogues")
	timeout := fs.Duration("timeout", 30*time.Second, "per request")
	retries := fs.Int("retries", 5, "attempts per request on 429, 5xx and network errors")
	limit := fs.Int("limit", 100, "Items per page")
	replicas := fs.Int("replicas", 1, "replicas of the ledger's KV bucket (3 on a cluster)")
	modelDir := fs.String("model", cfg.Model.Dir, "the model whose sensors are paired (default: the built-in demo model)")
	httpAddr := fs.String("http", "", "serve /metrics here (default: nowhere)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(stacURLs) == 0 {
		return usagef("feed: give at least one --stac URL (a STAC API /search endpoint)")
	}
	log := newLogger(cfg.Log, stderr)
	m, err := loadModel(*modelDir)
	if err != nil {
		return err
	}
	fc := feed.Config{Sensors: m.Card.Chip.Sensors(), Collections: map[mm.Sensor][]string{}, MaxCloud: *maxCloud,
		Pairing:   feed.Pairing{Window: *window, S1Window: *s1Window, MaxCloud: *maxCloud},
		MosaicDir: *mosaicDir, HrefQuery: strings.TrimPrefix(*hrefQuery, "?"), Limit: *limit, Datetime: *datetime}
	if fc.Datetime == "" {
		fc.Datetime = time.Now().Add(-30*24*time.Hour).UTC().Format(time.RFC3339) + "/.."
	}
	for s, c := range defaultCollections {
		fc.Collections[s] = []string{c}
	}
	for _, c := range colls {
		name, list, ok := strings.Cut(c, "=")
		s := mm.Sensor(strings.TrimSpace(name))
		if !ok || (s != mm.NAIP && s != mm.Sentinel2 && s != mm.Sentinel1) {
			return usagef("feed: --collection %q: want naip=, s2= or s1=NAME", c)
		}
		fc.Collections[s] = strings.Split(list, ",")
	}
	if *bbox != "" {
		for _, p := range strings.Split(*bbox, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil {
				return usagef("feed: --bbox: %q is not a number", p)
			}
			fc.BBox = append(fc.BBox, v)
		}
		if len(fc.BBox) != 4 {
			return usagef("feed: --bbox: want minlon,minlat,maxlon,maxlat")
		}
	}
	hdr := map[string]string{}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return usagef("feed: --header %q: want 'Name: value'", h)
		}
		hdr[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	for _, u := range stacURLs {
		fc.Endpoints = append(fc.Endpoints, feed.Endpoint{URL: u, Post: *post, Headers: hdr})
	}
	met := newFeedMetrics()
	client := &feed.Client{HTTP: httpClient(*timeout), Retries: *retries, Observe: met.request}
	if *rate > 0 {
		client.MinInterval = time.Duration(float64(time.Second) / *rate)
	}
	var ledger feed.Ledger
	var queue feed.Queue
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
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: FeedBucket, Replicas: *replicas,
			Description: "methanemap feed: the scenes queued, one key each"})
		if err != nil {
			return fmt.Errorf("feed: KV bucket %s: %w", FeedBucket, err)
		}
		ledger = kvLedger{kv}
		queue = func(ctx context.Context, sc *mm.Scene) error {
			_, err := worker.Enqueue(ctx, js, worker.Config{}, sc)
			return err
		}
	}
	if *httpAddr != "" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return mm.Permanentf("feed: --http %s: %w", *httpAddr, err)
		}
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
	f := feed.New(fc, client, ledger, queue, log)
	for {
		var printScene func(*mm.Scene)
		if *dry {
			printScene = func(sc *mm.Scene) {
				b, _ := json.Marshal(sc)
				fmt.Fprintf(stdout, "%s\n", b)
			}
		}
		st, err := f.Pass(ctx, printScene)
		met.pass(st)
		log.Info("feed pass", "items", st.Items, "bad_items", st.Bad, "queued", st.Queued, "already_queued", st.Already, "not_paired", st.Unpaired)
		if !*dry {
			fmt.Fprintf(stdout, "items %d (bad %d), queued %d, already queued %d, not paired %v\n", st.Items, st.Bad, st.Queued, st.Already, st.Unpaired)
		}
		if err != nil {
			if *once || errors.Is(err, context.Canceled) {
				return err
			}
			log.Error("feed pass failed, next pass as scheduled", "err", err)
		}
		if *once || ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

// kvLedger keeps the feed's ledger in a NATS KV bucket: Create is atomic,
// so of two feeds claiming one scene exactly one wins.
type kvLedger struct{ kv jetstream.KeyValue }

func (l kvLedger) Seen(ctx context.Context, id string) (bool, error) {
	_, err := l.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (l kvLedger) Claim(ctx context.Context, id string) (bool, error) {
	_, err := l.kv.Create(ctx, id, []byte(time.Now().UTC().Format(time.RFC3339)))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	return err == nil, err
}

func (l kvLedger) Release(ctx context.Context, id string) error { return l.kv.Delete(ctx, id) }

func httpClient(timeout time.Duration) *http.Client { return &http.Client{Timeout: timeout} }
