package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress counts chips done out of the total known so far and reports at
// most once per interval: a bar redrawn in place on a terminal, a log line
// every 10 s otherwise, nothing when quiet (newProgress), or a callback
// such as the daemon's progress events (newEventProgress).
type progress struct {
	mu           sync.Mutex
	every        time.Duration
	atEnd        bool // also report when the last chip is done
	emit         func(now time.Time)
	done_, total int
	start, last  time.Time

	w   io.Writer
	tty bool
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, every: 10 * time.Second, atEnd: true, start: time.Now(), last: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.every = true, 200*time.Millisecond
		}
	}
	p.emit = p.print
	if quiet {
		p.emit, p.tty = func(time.Time) {}, false
	}
	return p
}

// newEventProgress calls report(done, total) at most once per interval.
func newEventProgress(report func(done, total int), every time.Duration) *progress {
	p := &progress{every: every, start: time.Now()}
	p.emit = func(time.Time) { report(p.done_, p.total) }
	return p
}

// Add counts more chips to do.
func (p *progress) Add(n int) {
	p.mu.Lock()
	p.total += n
	p.mu.Unlock()
}

// Tick counts chips done.
func (p *progress) Tick(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done_ += n
	now := time.Now()
	if now.Sub(p.last) < p.every && !(p.atEnd && p.done_ >= p.total) {
		return
	}
	p.last = now
	p.emit(now)
}

func (p *progress) print(now time.Time) {
	el := now.Sub(p.start).Seconds()
	rate := float64(p.done_) / max(el, 1e-9)
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(p.total-p.done_)/rate) * time.Second).Round(time.Second).String()
	}
	if p.tty {
		const width = 30
		fill := 0
		if p.total > 0 {
			fill = width * p.done_ / p.total
		}
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = '.'
			if i < fill {
				bar[i] = '='
			}
		}
		fmt.Fprintf(p.w, "\r[%s] %d/%d chips  %.1f chips/s  ETA %s ", bar, p.done_, p.total, rate, eta)
		return
	}
	fmt.Fprintf(p.w, "progress: %d/%d chips, %.1f chips/s, ETA %s\n", p.done_, p.total, rate, eta)
}

// done ends the bar's line.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.print(time.Now())
		fmt.Fprintln(p.w)
	}
}
