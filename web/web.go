// Package web serves the map page: detections and sites drawn by class
// over an optional background tile layer, with a legend, a class filter, a
// score slider, feature properties on click, and live updates by
// server-sent events. Everything the page needs is embedded; it reads the
// features from the OGC API of package oapi.
package web

import (
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/methanemap/methanemap/oapi"
)

//go:embed static
var static embed.FS

// Options configure the page.
type Options struct {
	// TilesURL is an XYZ tile URL template ({z}/{x}/{y}) for a background
	// layer; "" draws a graticule only, so the page needs no network.
	TilesURL string
	// TilesAttribution is shown under the map when tiles are drawn.
	TilesAttribution string
}

var page = template.Must(template.ParseFS(static, "static/map.html"))

// Register adds /map, its assets under /map/static/ and the event stream
// /map/events to mux.
func Register(mux *http.ServeMux, st *oapi.Store, opts Options) {
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /map/static/", http.StripPrefix("/map/static/", http.FileServerFS(sub)))
	mux.HandleFunc("GET /map", func(w http.ResponseWriter, r *http.Request) {
		cfg, _ := json.Marshal(map[string]string{"tiles": opts.TilesURL, "attribution": opts.TilesAttribution})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page.Execute(w, map[string]any{"Config": template.JS(cfg)})
	})
	mux.HandleFunc("GET /map/events", func(w http.ResponseWriter, r *http.Request) { events(w, r, st) })
}

// events streams every feature added to the store as a server-sent event
// ("feature", data {"collection": ..., "feature": {...}}), with a comment
// every 15 s to keep proxies from closing the connection.
func events(w http.ResponseWriter, r *http.Request, st *oapi.Store) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	updates, stop := st.Subscribe()
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	fmt.Fprint(w, "retry: 2000\n: connected\n\n")
	flusher.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keep.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case u := <-updates:
			data, _ := json.Marshal(map[string]any{"collection": u.Collection, "feature": u.Feature})
			fmt.Fprintf(w, "event: feature\ndata: %s\n\n", data)
		}
		flusher.Flush()
	}
}
