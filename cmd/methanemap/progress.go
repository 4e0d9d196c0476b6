package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress reports chips done out of the total known so far: a bar
// redrawn in place on a terminal, a log line every 10 s otherwise, nothing
// when quiet.
type progress struct {
	mu           sync.Mutex
	w            io.Writer
	tty, quiet   bool
	done_, total int
	start, last  time.Time
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, start: time.Now(), last: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
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
	if p.quiet {
		return
	}
	now := time.Now()
	every := 10 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every && p.done_ < p.total {
		return
	}
	p.last = now
	p.print(now)
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
	if p.tty && !p.quiet {
		p.print(time.Now())
		fmt.Fprintln(p.w)
	}
}
