// Package feed follows satellite feeds published as STAC APIs: it searches
// /search endpoints page by page (GET or POST paging, politely: a rate
// limit, back-off on 429 and 5xx honouring Retry-After, timeouts), pairs
// the Items of the sensors a model needs into scenes (mosaicking several
// Items of one sensor when none covers alone), and hands each new scene to
// a queue once, as a shared ledger decides. It knows no broker: the caller
// supplies the ledger and the queue.
package feed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Endpoint is one STAC API search endpoint.
type Endpoint struct {
	URL     string            // the /search URL
	Post    bool              // search with POST (JSON body) instead of GET
	Headers map[string]string // sent with every request (API keys, tokens)
}

// Search is what to ask an endpoint for.
type Search struct {
	Collections []string
	BBox        []float64 // minlon, minlat, maxlon, maxlat
	Datetime    string    // RFC 3339 instant or interval (START/END, ".." open)
	MaxCloud    float64   // eo:cloud_cover below this (query extension); 0: no filter
	Limit       int       // Items per page (default 100)
}

// Client talks to STAC APIs.
type Client struct {
	HTTP        *http.Client  // default: 30 s timeout
	MinInterval time.Duration // at least this between two requests (rate limit)
	Retries     int           // attempts on 429/5xx/network errors before giving up (default 5)
	MaxBackoff  time.Duration // longest wait between attempts (default 1 min)
	// Observe, when set, hears each request's latency and status (0: no answer).
	Observe func(d time.Duration, status int)

	mu   sync.Mutex
	last time.Time
}

// ErrNotSTAC marks an endpoint whose answers are not STAC ItemCollections.
var ErrNotSTAC = errors.New("not a STAC API search endpoint")

// HTTPError is a status the client gave up on.
type HTTPError struct {
	URL      string
	Status   int
	Attempts int
	Body     string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("STAC API %s: HTTP %d after %d attempt(s): %s", e.URL, e.Status, e.Attempts, e.Body)
}

type link struct {
	Rel    string          `json:"rel"`
	Href   string          `json:"href"`
	Method string          `json:"method"`
	Body   json.RawMessage `json:"body"`
	Merge  bool            `json:"merge"`
}

type page struct {
	Type     string            `json:"type"`
	Features []json.RawMessage `json:"features"`
	Links    []link            `json:"links"`
}

// Search runs s on ep and calls each for every Item of every page,
// following next links, until the last page, ctx ends or each fails. It
// returns the number of pages read.
func (c *Client) Search(ctx context.Context, ep Endpoint, s Search, each func(item json.RawMessage) error) (int, error) {
	if s.Limit <= 0 {
		s.Limit = 100
	}
	method, url := http.MethodGet, ep.URL
	var body []byte
	if ep.Post {
		method = http.MethodPost
		b := map[string]any{"collections": s.Collections, "limit": s.Limit}
		if len(s.BBox) == 4 {
			b["bbox"] = s.BBox
		}
		if s.Datetime != "" {
			b["datetime"] = s.Datetime
		}
		if s.MaxCloud > 0 {
			b["query"] = map[string]any{"eo:cloud_cover": map[string]float64{"lt": s.MaxCloud}}
		}
		body, _ = json.Marshal(b)
	} else {
		url += sep(url) + searchQuery(s)
	}
	seen := map[string]bool{} // a catalogue whose next link loops is not followed forever
	pages := 0
	for url != "" {
		if seen[method+" "+url+" "+string(body)] {
			return pages, fmt.Errorf("STAC API %s: the next link repeats a page already read", ep.URL)
		}
		seen[method+" "+url+" "+string(body)] = true
		p, err := c.page(ctx, ep, method, url, body)
		if err != nil {
			return pages, err
		}
		pages++
		for _, f := range p.Features {
			if err := each(f); err != nil {
				return pages, err
			}
		}
		url = ""
		for _, l := range p.Links {
			if l.Rel != "next" || l.Href == "" {
				continue
			}
			url = l.Href
			if strings.EqualFold(l.Method, http.MethodPost) {
				method = http.MethodPost
				if len(l.Body) > 0 {
					body = mergeBody(body, l.Body, l.Merge)
				}
			} else {
				method, body = http.MethodGet, nil
			}
			break
		}
		if len(p.Features) == 0 {
			break // an empty page ends the search, whatever its links say
		}
	}
	return pages, nil
}

func sep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

// searchQuery is a GET search's query string, encoded; the cloud filter
// goes as the query extension's JSON, as for POST.
func searchQuery(s Search) string {
	q := neturl.Values{}
	if len(s.Collections) > 0 {
		q.Set("collections", strings.Join(s.Collections, ","))
	}
	if len(s.BBox) == 4 {
		q.Set("bbox", fmt.Sprintf("%g,%g,%g,%g", s.BBox[0], s.BBox[1], s.BBox[2], s.BBox[3]))
	}
	if s.Datetime != "" {
		q.Set("datetime", s.Datetime)
	}
	if s.MaxCloud > 0 {
		q.Set("query", fmt.Sprintf(`{"eo:cloud_cover":{"lt":%g}}`, s.MaxCloud))
	}
	q.Set("limit", fmt.Sprint(s.Limit))
	return q.Encode()
}

// mergeBody applies a next link's body: merged into the previous one, or
// instead of it.
func mergeBody(prev, next json.RawMessage, merge bool) []byte {
	if !merge {
		return next
	}
	var a, b map[string]any
	json.Unmarshal(prev, &a)
	if json.Unmarshal(next, &b) != nil {
		return prev
	}
	if a == nil {
		a = map[string]any{}
	}
	for k, v := range b {
		a[k] = v
	}
	out, _ := json.Marshal(a)
	return out
}

// page fetches one page, with the rate limit and retries.
func (c *Client) page(ctx context.Context, ep Endpoint, method, url string, body []byte) (*page, error) {
	retries := c.Retries
	if retries <= 0 {
		retries = 5
	}
	maxWait := c.MaxBackoff
	if maxWait <= 0 {
		maxWait = time.Minute
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		if err := c.wait(ctx); err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("STAC API %s: %w", ep.URL, err)
		}
		req.Header.Set("Accept", "application/geo+json, application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range ep.Headers {
			req.Header.Set(k, v)
		}
		t0 := time.Now()
		resp, err := hc.Do(req)
		status := 0
		var data []byte
		if err == nil {
			status = resp.StatusCode
			data, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20))
			resp.Body.Close()
		}
		if c.Observe != nil {
			c.Observe(time.Since(t0), status)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		retryable := err != nil || status == http.StatusTooManyRequests || status >= 500
		if !retryable && (status < 200 || status > 299) {
			return nil, &HTTPError{URL: ep.URL, Status: status, Attempts: attempt, Body: excerpt(data)}
		}
		if !retryable {
			return parsePage(ep.URL, resp.Header.Get("Content-Type"), data)
		}
		if attempt >= retries {
			if err != nil {
				return nil, fmt.Errorf("STAC API %s: no answer after %d attempt(s): %w", ep.URL, attempt, err)
			}
			return nil, &HTTPError{URL: ep.URL, Status: status, Attempts: attempt, Body: excerpt(data)}
		}
		wait := backoff
		if resp != nil {
			if ra, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
				wait = ra
			}
		}
		wait = min(wait, maxWait)
		backoff = min(2*backoff, maxWait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// wait keeps MinInterval between requests.
func (c *Client) wait(ctx context.Context) error {
	c.mu.Lock()
	next := c.last.Add(c.MinInterval)
	now := time.Now()
	if next.Before(now) {
		next = now
	}
	c.last = next
	c.mu.Unlock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(next)):
		return nil
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t)), true
	}
	return 0, false
}

func parsePage(url, contentType string, data []byte) (*page, error) {
	var p page
	if err := json.Unmarshal(data, &p); err != nil {
		mt, _, _ := mime.ParseMediaType(contentType)
		if mt == "" {
			mt = "no content type"
		}
		return nil, fmt.Errorf("STAC API %s: %w: the answer (%s) is not JSON: %s", url, ErrNotSTAC, mt, excerpt(data))
	}
	if p.Type != "FeatureCollection" {
		return nil, fmt.Errorf("STAC API %s: %w: want an ItemCollection (type FeatureCollection), got type %q", url, ErrNotSTAC, p.Type)
	}
	return &p, nil
}

func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
