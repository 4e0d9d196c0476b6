package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/methanemap/methanemap/pipeline"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go/jetstream"
)

// metrics are the daemon's numbers in Prometheus' text format.
type metrics struct {
	mu      sync.Mutex
	scored  int
	skipped map[string]int
	// scene processing seconds, as a histogram
	buckets []float64
	counts  []int
	sum     float64
	n       int
}

func newMetrics() *metrics {
	b := []float64{1, 2, 5, 10, 30, 60, 120, 300, 600}
	return &metrics{skipped: map[string]int{}, buckets: b, counts: make([]int, len(b))}
}

// scene records one scene's pipeline result and duration.
func (m *metrics) scene(res pipeline.Result, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.scored += res.Scored
	for k, v := range res.Skipped {
		m.skipped[k] += v
	}
	s := d.Seconds()
	for i, b := range m.buckets {
		if s <= b {
			m.counts[i]++
		}
	}
	m.sum += s
	m.n++
}

// write prints every metric; pending comes from the consumer.
func (m *metrics) write(ctx context.Context, w io.Writer, st worker.Stats, cons jetstream.Consumer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	counter := func(name, help string, v int) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("methanemap_scenes_done_total", "Scenes scored and acked.", st.Done)
	counter("methanemap_scenes_retried_total", "Scene deliveries that failed transiently and were naked.", st.Retried)
	counter("methanemap_scenes_dead_total", "Messages given up on (dead letters).", st.Dead)
	counter("methanemap_chips_scored_total", "Chips scored.", m.scored)
	counter("methanemap_sites_total", "Sites published.", st.Sites)
	fmt.Fprintf(w, "# HELP methanemap_chips_skipped_total Chips skipped, by reason.\n# TYPE methanemap_chips_skipped_total counter\n")
	for _, k := range sortedKeys(m.skipped) {
		fmt.Fprintf(w, "methanemap_chips_skipped_total{reason=%q} %d\n", k, m.skipped[k])
	}
	fmt.Fprintf(w, "# HELP methanemap_detections_total Detections published, by class.\n# TYPE methanemap_detections_total counter\n")
	for _, k := range sortedKeys(st.Detections) {
		fmt.Fprintf(w, "methanemap_detections_total{class=%q} %d\n", k, st.Detections[k])
	}
	fmt.Fprintf(w, "# HELP methanemap_scenes_in_flight Scenes being processed.\n# TYPE methanemap_scenes_in_flight gauge\nmethanemap_scenes_in_flight %d\n", st.InFlight)
	if info, err := cons.Info(ctx); err == nil {
		fmt.Fprintf(w, "# HELP methanemap_consumer_pending Scene jobs waiting in the consumer.\n# TYPE methanemap_consumer_pending gauge\nmethanemap_consumer_pending %d\n", info.NumPending)
	}
	fmt.Fprintf(w, "# HELP methanemap_scene_seconds Time to score a scene.\n# TYPE methanemap_scene_seconds histogram\n")
	for i, b := range m.buckets {
		fmt.Fprintf(w, "methanemap_scene_seconds_bucket{le=\"%g\"} %d\n", b, m.counts[i])
	}
	fmt.Fprintf(w, "methanemap_scene_seconds_bucket{le=\"+Inf\"} %d\nmethanemap_scene_seconds_sum %g\nmethanemap_scene_seconds_count %d\n", m.n, round3(m.sum), m.n)
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
