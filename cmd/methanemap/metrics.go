package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/methanemap/methanemap/feed"
	"github.com/methanemap/methanemap/pipeline"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go/jetstream"
)

// metrics are the daemon's numbers in Prometheus' text format.
type metrics struct {
	mu      sync.Mutex
	scored  int
	skipped map[string]int
	scenes  *histogram            // whole scenes, fetch to ack
	stages  map[string]*histogram // by stage

	outErrors int // scenes whose --out files failed
}

// stageNames are the stages timed per scene, in the order /metrics lists them.
var stageNames = []string{"open", "cut", "infer", "probe", "publish"}

// histogram counts observations in cumulative buckets, as Prometheus does.
type histogram struct {
	buckets []float64
	counts  []int
	sum     float64
	n       int
}

func newHistogram(buckets ...float64) *histogram {
	return &histogram{buckets: buckets, counts: make([]int, len(buckets))}
}

func (h *histogram) observe(s float64) {
	for i, b := range h.buckets {
		if s <= b {
			h.counts[i]++
		}
	}
	h.sum += s
	h.n++
}

// write prints the histogram's series; labels is "" or `stage="cut",`.
func (h *histogram) write(w io.Writer, name, labels string) {
	for i, b := range h.buckets {
		fmt.Fprintf(w, "%s_bucket{%sle=\"%g\"} %d\n", name, labels, b, h.counts[i])
	}
	fmt.Fprintf(w, "%s_bucket{%sle=\"+Inf\"} %d\n", name, labels, h.n)
	braces := ""
	if labels != "" {
		braces = "{" + strings.TrimSuffix(labels, ",") + "}"
	}
	fmt.Fprintf(w, "%s_sum%s %g\n%s_count%s %d\n", name, braces, round3(h.sum), name, braces, h.n)
}

func newMetrics() *metrics {
	m := &metrics{skipped: map[string]int{}, stages: map[string]*histogram{},
		scenes: newHistogram(1, 2, 5, 10, 30, 60, 120, 300, 600)}
	for _, s := range stageNames {
		m.stages[s] = newHistogram(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300)
	}
	return m
}

// scene records one scene's pipeline result and stage times.
func (m *metrics) scene(res pipeline.Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.scored += res.Scored
	for k, v := range res.Skipped {
		m.skipped[k] += v
	}
	st := res.Stages
	for name, d := range map[string]time.Duration{"open": st.Open, "cut": st.Cut, "infer": st.Infer, "probe": st.Probe} {
		m.stages[name].observe(d.Seconds())
	}
}

// outError counts a scene whose --out files could not be written.
func (m *metrics) outError() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outErrors++
}

// observe is the worker's hook: publish time, and whole scenes.
func (m *metrics) observe(stage string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if stage == "scene" {
		m.scenes.observe(d.Seconds())
	} else if h, ok := m.stages[stage]; ok {
		h.observe(d.Seconds())
	}
}

// write prints every metric; pending comes from the consumer.
func (m *metrics) write(ctx context.Context, w io.Writer, st worker.Stats, cons jetstream.Consumer) {
	info, infoErr := cons.Info(ctx) // a network call: not under the lock the workers need
	m.mu.Lock()
	defer m.mu.Unlock()
	counter := func(name, help string, v int) { writeCounter(w, name, help, v) }
	counter("methanemap_scenes_done_total", "Scenes scored and acked.", st.Done)
	counter("methanemap_scenes_retried_total", "Scene deliveries that failed transiently and were naked.", st.Retried)
	counter("methanemap_scenes_dead_total", "Messages given up on (dead letters).", st.Dead)
	counter("methanemap_chips_scored_total", "Chips scored.", m.scored)
	counter("methanemap_sites_total", "Sites published.", st.Sites)
	counter("methanemap_out_errors_total", "Scenes whose --out files could not be written (published all the same).", m.outErrors)
	writeCounters(w, "methanemap_chips_skipped_total", "Chips skipped, by reason.", "reason", m.skipped)
	writeCounters(w, "methanemap_detections_total", "Detections published, by class.", "class", st.Detections)
	fmt.Fprintf(w, "# HELP methanemap_scenes_in_flight Scenes being processed.\n# TYPE methanemap_scenes_in_flight gauge\nmethanemap_scenes_in_flight %d\n", st.InFlight)
	if infoErr == nil {
		fmt.Fprintf(w, "# HELP methanemap_consumer_pending Scene jobs waiting in the consumer.\n# TYPE methanemap_consumer_pending gauge\nmethanemap_consumer_pending %d\n", info.NumPending)
	}
	counter("methanemap_scenes_released_total", "Scenes handed back unfinished at shutdown.", st.Released)
	fmt.Fprintf(w, "# HELP methanemap_scene_seconds Time to handle a scene that was done, from fetch to ack.\n# TYPE methanemap_scene_seconds histogram\n")
	m.scenes.write(w, "methanemap_scene_seconds", "")
	fmt.Fprintf(w, "# HELP methanemap_stage_seconds Time per scene in each stage (cut sums the cutters' busy time; cut and infer overlap).\n# TYPE methanemap_stage_seconds histogram\n")
	for _, s := range stageNames {
		m.stages[s].write(w, "methanemap_stage_seconds", fmt.Sprintf("stage=%q,", s))
	}
}

// writeCounter prints one counter in Prometheus' text format.
func writeCounter(w io.Writer, name, help string, v int) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
}

// writeCounters prints a counter with one label, a series per key.
func writeCounters(w io.Writer, name, help, label string, vs map[string]int) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
	for _, k := range sortedKeys(vs) {
		fmt.Fprintf(w, "%s{%s=%q} %d\n", name, label, k, vs[k])
	}
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

// feedMetrics are the feed's numbers: Items, scenes queued, pairing
// failures by reason, and the catalogues' latency.
type feedMetrics struct {
	mu       sync.Mutex
	items    int
	bad      int
	queued   int
	already  int
	unpaired map[string]int
	status   map[string]int
	latency  *histogram
}

func newFeedMetrics() *feedMetrics {
	return &feedMetrics{unpaired: map[string]int{}, status: map[string]int{},
		latency: newHistogram(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)}
}

func (m *feedMetrics) request(d time.Duration, status int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.latency.observe(d.Seconds())
	code := "none"
	if status > 0 {
		code = fmt.Sprint(status)
	}
	m.status[code]++
}

func (m *feedMetrics) pass(st feed.Stats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.items += st.Items
	m.bad += st.Bad
	m.queued += st.Queued
	m.already += st.Already
	for k, v := range st.Unpaired {
		m.unpaired[k] += v
	}
}

func (m *feedMetrics) write(w io.Writer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	counter := func(name, help string, v int) { writeCounter(w, name, help, v) }
	counter("methanemap_feed_items_total", "STAC Items read.", m.items)
	counter("methanemap_feed_bad_items_total", "STAC Items skipped as unreadable.", m.bad)
	counter("methanemap_feed_scenes_queued_total", "Scenes queued.", m.queued)
	counter("methanemap_feed_scenes_already_queued_total", "Scenes found in the ledger (queued before, or by another feed).", m.already)
	writeCounters(w, "methanemap_feed_not_paired_total", "Primary Items not paired, by reason.", "reason", m.unpaired)
	writeCounters(w, "methanemap_feed_requests_total", "Catalogue requests, by HTTP status (none: no answer).", "status", m.status)
	fmt.Fprintf(w, "# HELP methanemap_feed_request_seconds Catalogue request latency.\n# TYPE methanemap_feed_request_seconds histogram\n")
	m.latency.write(w, "methanemap_feed_request_seconds", "")
}
