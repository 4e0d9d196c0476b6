package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/broker"
	"github.com/methanemap/methanemap/internal/datadir"
	"github.com/methanemap/methanemap/oapi"
	"github.com/methanemap/methanemap/pipeline"
	"github.com/methanemap/methanemap/publisher"
	"github.com/methanemap/methanemap/tiles"
	"github.com/methanemap/methanemap/web"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func runServe(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	natsURL := fs.String("nats", "", "NATS server URL(s), comma-separated (default: an embedded server with JetStream)")
	var auth natsAuth
	auth.flags(fs)
	replicas := fs.Int("replicas", 1, "stream replicas (3 on a JetStream cluster)")
	ackWait := fs.Duration("ack-wait", 2*time.Minute, "redeliver a scene whose worker went silent for this long")
	maxDeliver := fs.Int("max-deliver", 5, "deliveries of a scene before it is dead-lettered")
	maxAge := fs.Duration("max-age", 30*24*time.Hour, "how long the detections, events and dead-letter streams keep messages")
	dataDir := fs.String("data", "./data", "data directory (the embedded server's JetStream store; one daemon at a time: locked by "+datadir.LockFile+" in it)")
	natsListen := fs.String("nats-listen", "127.0.0.1:4222", "where the embedded NATS server listens")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP address for the OGC API, the map page (/map), /healthz, /readyz and /metrics (port 0: any free port)")
	concurrency := fs.Int("concurrency", 1, "scenes in flight")
	modelDir := fs.String("model", cfg.Model.Dir, "model directory (default: the built-in demo model)")
	backend := fs.String("backend", cfg.Model.Backend, "auto, onnxruntime or onnxgo")
	cutters := fs.Int("cutters", runtime.NumCPU(), "chip-cutting goroutines per scene")
	sceneTimeout := fs.Duration("scene-timeout", 2*time.Hour, "give up on a scene (dead letter) that runs longer than this")
	grace := fs.Duration("grace", 30*time.Second, "on SIGTERM, how long scenes in flight may finish before they are handed back to the stream")
	outDir := fs.String("out", "", "also write each scene's detections and sites to files in this directory (SCENE.detections.EXT, SCENE.sites.EXT)")
	outFormat := fs.String("format", "geojson", "file format for --out: geojson, geojsonl, gpkg or fgb")
	mapTiles := fs.String("map-tiles", "", "XYZ tile URL template ({z}/{x}/{y}) for the map page's background (default: none, a graticule)")
	mapAttribution := fs.String("map-attribution", "", "attribution text for --map-tiles")
	anyRes := fs.Bool("allow-resolution", false, "accept rasters whose pixel size is implausible for their sensor (NAIP 0.05-10 m, Sentinel-2 and -1 5-100 m)")
	var allow stringList
	fs.Var(&allow, "allow", "directory or URL prefix scene hrefs may point to (repeatable; default: ingest.allow, else the data directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	if *outDir != "" {
		if _, err := publisher.FormatOf("x." + *outFormat); err != nil {
			return usagef("serve: --format: %v", err)
		}
		if err := os.MkdirAll(*outDir, 0o755); err != nil {
			return mm.Permanentf("serve: --out: %w", err)
		}
		if n := publisher.CleanStaging(*outDir, time.Hour); n > 0 {
			log.Info("--out: removed the staging directories of writes that never ended", "dir", *outDir, "removed", n)
		}
	}
	if len(allow) == 0 {
		allow = cfg.Ingest.Allow
	}
	if len(allow) == 0 {
		allow = stringList{*dataDir}
	}
	if err := ingest.ValidateAllow(allow); err != nil {
		return usagef("serve: --allow: %v", err)
	}
	if err := ingest.Confine(allow); err != nil { // GDAL's HTTP too, redirects included
		return err
	}
	log.Info("scene hrefs allowed under", "allow", []string(allow))
	url := *natsURL
	if url == "" {
		// one daemon per store, checked before anything is written to it
		lock, err := datadir.Acquire(*dataDir)
		if err != nil {
			return mm.Permanentf("serve: --data: %w", err)
		}
		defer lock.Release()
	}
	// a busy address is refused before the broker starts or the model loads
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return mm.Permanentf("serve: --http %s: %w", *httpAddr, err)
	}
	defer ln.Close()
	if url == "" {
		ns, err := broker.Start(*natsListen, filepath.Join(*dataDir, "jetstream"))
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		url = ns.ClientURL()
		log.Info("embedded NATS server with JetStream", "url", url, "store", filepath.Join(*dataDir, "jetstream"))
	}
	nopts, err := auth.options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, append(nopts, nats.Name("methanemap serve"), nats.MaxReconnects(-1))...)
	if err != nil {
		return fmt.Errorf("serve: NATS %s: %w", url, err)
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	met := newMetrics()
	wcfg := worker.Config{Concurrency: *concurrency, Replicas: *replicas, AckWait: *ackWait, MaxDeliver: *maxDeliver, MaxAge: *maxAge,
		Grace: *grace, SceneTimeout: *sceneTimeout, Observe: met.observe}
	cons, err := ensureStreams(ctx, js, wcfg, log)
	if err != nil {
		return err
	}
	// the OGC API serves what the detections stream holds: replay, then follow
	store := oapi.NewStore(oapi.Detections, oapi.Sites)
	fol, err := follow(ctx, js, store, *maxAge, log)
	if err != nil {
		return fmt.Errorf("serve: following %s: %w", worker.DetectionsStream, err)
	}
	scorer, err := newScorer(cfg, *modelDir, *backend, cfg.Model.BatchSize, log)
	if err != nil {
		return err
	}
	defer scorer.Close()
	opts := pipeline.Options{Cutters: *cutters, Allow: allow, MaxChips: cfg.Tiles.MaxChips, AnyResolution: *anyRes, Cut: tiles.CutOptions{MinValid: cfg.Tiles.MinValid, MaxCloud: cfg.Tiles.MaxCloud}, Stride: cfg.Tiles.StrideM}
	process := func(ctx context.Context, sc *mm.Scene, progress func(int, int)) ([]mm.Detection, []mm.Site, error) {
		o := opts
		o.Progress = newEventProgress(progress, 5*time.Second)
		for _, note := range pipeline.Assumptions(sc, scorer.Model.Card) {
			log.Warn(note, "scene", sc.ID)
		}
		res, err := pipeline.Run(ctx, sc, scorer, o)
		if err != nil {
			return nil, nil, err
		}
		met.scene(res)
		log.Info("chip grid", "scene", sc.ID, "epsg", res.GridEPSG, "why", res.GridWhy)
		sites := res.Sites()
		// the files are an extra: a disk that fails them must not keep the
		// scene from the stream (it would be retried, then dead-lettered)
		if *outDir != "" {
			if err := publisher.WriteSceneFiles(*outDir, sc.ID, *outFormat, res.Detections, sites); err != nil {
				log.Error("--out: the scene's files were not written; publishing all the same", "scene", sc.ID, "dir", *outDir, "err", err)
				met.outError()
			}
		}
		return res.Detections, sites, nil
	}
	log.Info("HTTP listening", "addr", ln.Addr().String())
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !nc.IsConnected() {
			http.Error(w, "not connected to NATS", http.StatusServiceUnavailable)
			return
		}
		if _, err := js.Stream(r.Context(), worker.ScenesStream); err != nil {
			http.Error(w, "stream "+worker.ScenesStream+": "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if !fol.ready() {
			http.Error(w, "replaying "+worker.DetectionsStream+" into the OGC API store", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	w := worker.New(js, cons, wcfg, process, log)
	// the feed follower, when the config names STAC APIs
	var fmet *feedMetrics
	if len(cfg.Feed.STAC) > 0 {
		fmet = newFeedMetrics()
		f, err := newFeed(ctx, cfg.Feed, allow, scorer.Model.Card.Chip.Sensors(), js, *replicas, fmet, log)
		if err != nil {
			return err
		}
		log.Info("following STAC APIs", "stac", cfg.Feed.STAC, "interval", cfg.Feed.Interval)
		go feedLoop(ctx, f, cfg.Feed.Interval, false, nil, fmet, log, nil)
	}
	mux.HandleFunc("/metrics", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; version=0.0.4")
		met.write(r.Context(), rw, w.Stats(), cons)
		if fmet != nil {
			fmet.write(rw)
		}
	})
	oapi.Register(mux, store, oapi.Options{Title: "methanemap",
		Description: "Methane-emitting facilities found in NAIP, Sentinel-2 and Sentinel-1 imagery: detections (720 m chips) and sites, live from the detection stream.",
		Extra:       []oapi.Link{{Href: "/map", Rel: "related", Type: "text/html", Title: "The map of detections and sites"}}})
	web.Register(mux, store, web.Options{TilesURL: *mapTiles, TilesAttribution: *mapAttribution})
	// requests run on a context cancelled before shutdown, so that open
	// event streams (the map page's) end instead of holding it up
	httpCtx, httpStop := context.WithCancel(context.WithoutCancel(ctx))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return httpCtx }}
	go hs.Serve(ln)
	log.Info("serving", "model", scorer.Model.Card.ID(), "concurrency", *concurrency)
	err = w.Run(ctx) // returns when ctx ends, after the scenes in flight
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	httpStop()
	hs.Shutdown(sctx)
	log.Info("stopped")
	return err
}

// ensureStreams creates or updates the streams, waiting up to two minutes
// for a JetStream that is still starting (a cluster electing its leaders,
// as when a whole deployment starts at once). A server without JetStream
// is an error at once.
func ensureStreams(ctx context.Context, js jetstream.JetStream, cfg worker.Config, log *slog.Logger) (jetstream.Consumer, error) {
	deadline := time.Now().Add(2 * time.Minute)
	wait := time.Second
	for {
		cons, err := worker.EnsureStreams(ctx, js, cfg)
		if err == nil || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
			ctx.Err() != nil || time.Now().After(deadline) {
			return cons, err
		}
		log.Warn("JetStream not ready, retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}
