package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/broker"
	"github.com/methanemap/methanemap/internal/datadir"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// proc is the CLI running as its own process: this test binary running
// TestMainChild, which runs main's run with the arguments given.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
}

// spawn runs methanemap args in a child process, stdin from stdin (nil:
// none). It is killed at the test's end if still running.
func spawn(t *testing.T, stdin io.Reader, args ...string) *proc {
	t.Helper()
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n") {
			t.Fatalf("argument %q: TestMainChild splits its arguments on spaces", a)
		}
	}
	p := &proc{cmd: exec.Command(os.Args[0], "-test.run=^TestMainChild$"), stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "METHANEMAP_MAIN_CHILD="+strings.Join(args, " "))
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = stdin, p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// wait waits for the process's end and returns its exit code.
func (p *proc) wait() int {
	<-p.exited
	return p.cmd.ProcessState.ExitCode()
}

// serving waits until the daemon says it serves (true) or exits (false).
func (p *proc) serving(t *testing.T) bool {
	t.Helper()
	for i := 0; i < 1800; i++ { // three minutes on a loaded machine
		select {
		case <-p.exited:
			return false
		case <-time.After(100 * time.Millisecond):
		}
		if strings.Contains(p.stderr.String(), "msg=serving") {
			return true
		}
	}
	t.Fatalf("serve neither served nor exited in three minutes:\n%s", p.stderr.String())
	return false
}

func serveArgs(data string, extra ...string) []string {
	return append([]string{"serve", "--data", data, "--nats-listen", "127.0.0.1:-1", "--http", "127.0.0.1:0", "--cutters", "1", "--backend", "onnxgo"}, extra...)
}

// TestServeDataDirLock: a second daemon on a data directory in use exits 2
// naming the directory and the process holding it, before touching the
// store; once the holder is killed (SIGKILL: its lock file stays, with
// its id) a new daemon starts on the directory.
func TestServeDataDirLock(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	first := spawn(t, nil, serveArgs(data)...)
	if !first.serving(t) {
		t.Fatalf("the first daemon exited %d:\n%s", first.wait(), first.stderr.String())
	}
	second := spawn(t, nil, serveArgs(data)...)
	if second.serving(t) {
		t.Fatalf("a second daemon serves from %s, in use by process %d", data, first.cmd.Process.Pid)
	}
	pid := strconv.Itoa(first.cmd.Process.Pid)
	if code, stderr := second.wait(), second.stderr.String(); code != 2 || !strings.Contains(stderr, data) || !strings.Contains(stderr, "process "+pid) {
		t.Errorf("second daemon: exit %d, want 2 naming %s and process %s:\n%s", code, data, pid, stderr)
	}
	first.cmd.Process.Signal(syscall.SIGKILL)
	first.wait()
	if held, _ := os.ReadFile(filepath.Join(data, datadir.LockFile)); strings.TrimSpace(string(held)) != pid {
		t.Fatalf("the killed daemon's lock file holds %q, want its id %s", held, pid)
	}
	third := spawn(t, nil, serveArgs(data)...)
	if !third.serving(t) {
		t.Fatalf("after the holder was killed, a daemon exited %d:\n%s", third.wait(), third.stderr.String())
	}
	if held, _ := os.ReadFile(filepath.Join(data, datadir.LockFile)); strings.TrimSpace(string(held)) != strconv.Itoa(third.cmd.Process.Pid) {
		t.Errorf("lock file holds %q, want the new daemon's id %d", held, third.cmd.Process.Pid)
	}
	third.cmd.Process.Signal(os.Interrupt)
	if code := third.wait(); code != 0 {
		t.Errorf("the new daemon exited %d on SIGINT:\n%s", code, third.stderr.String())
	}
}

// TestServeBusyAddresses: a --nats-listen or --http address another
// process holds is refused at once, naming the address and the cause,
// with exit 2, and nothing is started: no JetStream store is written.
func TestServeBusyAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().String()
	for _, flag := range []string{"--nats-listen", "--http"} {
		data := filepath.Join(t.TempDir(), "data")
		p := spawn(t, nil, serveArgs(data, flag, busy)...)
		if p.serving(t) {
			t.Fatalf("%s %s: serve started on a busy address", flag, busy)
		}
		code, stderr := p.wait(), p.stderr.String()
		if code != 2 || !strings.Contains(stderr, flag+" "+busy) || !strings.Contains(stderr, "address already in use") {
			t.Errorf("%s %s: exit %d, want 2 naming the address and its cause:\n%s", flag, busy, code, stderr)
		}
		if _, err := os.Stat(filepath.Join(data, "jetstream")); err == nil {
			t.Errorf("%s %s: the embedded server was started before the refusal", flag, busy)
		}
	}
	// feed's --http too, before it dials NATS (nothing listens at --nats)
	// or asks the catalogue anything
	var asked atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked.Add(1) }))
	defer api.Close()
	p := spawn(t, nil, "feed", "--stac", api.URL+"/search", "--once", "--http", busy, "--nats", "nats://"+busy)
	if code, stderr := p.wait(), p.stderr.String(); code != 2 || !strings.Contains(stderr, "--http "+busy) || !strings.Contains(stderr, "address already in use") || asked.Load() > 0 {
		t.Errorf("feed --http %s: exit %d after %d catalogue requests, want 2 naming the address and its cause at once:\n%s", busy, code, asked.Load(), stderr)
	}
}

// testBroker is an embedded NATS server with JetStream and the daemon's
// streams, and no worker: what is queued stays on the stream.
func testBroker(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	ns, err := broker.Start("127.0.0.1:-1", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := worker.EnsureStreams(context.Background(), js, worker.Config{}); err != nil {
		t.Fatal(err)
	}
	return ns.ClientURL(), js
}

// queuedScenes reads the scenes on the scenes stream, by id.
func queuedScenes(t *testing.T, js jetstream.JetStream) map[string]mm.Scene {
	t.Helper()
	out := map[string]mm.Scene{}
	for _, raw := range readAll(t, js, worker.ScenesStream, ">") {
		var sc mm.Scene
		if err := json.Unmarshal(raw, &sc); err != nil {
			t.Fatalf("scene on the stream: %v: %s", err, raw)
		}
		out[sc.ID] = sc
	}
	return out
}

// TestEnqueueStdinLongLine: `enqueue -` given a line over its 16 MiB cap
// between two good lines refuses that line with its number and the cap,
// queues both good ones and exits 2.
func TestEnqueueStdinLongLine(t *testing.T) {
	url, js := testBroker(t)
	scene := func(id string) string {
		return fmt.Sprintf(`{"id": %q, "assets": {"naip": {"href": "/data/naip/%s.tif"}}}`, id, id)
	}
	var in bytes.Buffer
	in.WriteString(scene("before-long") + "\n")
	in.WriteString(`{"id": "long", "pad": "` + strings.Repeat("x", 17<<20) + `"}` + "\n")
	in.WriteString(scene("after-long") + "\n")
	p := spawn(t, &in, "enqueue", "--nats", url, "-")
	code, stdout, stderr := p.wait(), p.stdout.String(), p.stderr.String()
	if code != 2 {
		t.Errorf("exit %d, want 2 (a line refused)", code)
	}
	if !strings.Contains(stderr, "stdin line 2:") || !strings.Contains(stderr, "16 MiB") {
		t.Errorf("stderr does not refuse line 2 naming the 16 MiB cap:\n%s", stderr)
	}
	for _, id := range []string{"before-long", "after-long"} {
		if !strings.Contains(stdout, id+" queued") {
			t.Errorf("%s not reported queued:\n%s", id, stdout)
		}
	}
	got := queuedScenes(t, js)
	if _, ok := got["after-long"]; !ok || len(got) != 2 {
		t.Errorf("scenes on the stream: %v, want before-long and after-long", len(got))
	}
}

// TestFeedStandaloneMosaic runs `feed --once` as its own process (no scene
// was opened in it, so no GDAL driver was registered by a read) against a
// loopback STAC API whose Sentinel-2 Items need a mosaic, and a real NATS
// server: the scene is queued, pointing at a mosaic VRT that GDAL opens.
func TestFeedStandaloneMosaic(t *testing.T) {
	fixture := fixtureDir(t)
	root := t.TempDir()
	srv := httptest.NewServer(feedCatalogue(t, fixture, root))
	defer srv.Close()
	url, js := testBroker(t)
	mosaics := filepath.Join(root, "mosaics")
	p := spawn(t, nil, append(feedArgs(srv.URL, mosaics), "--nats", url)...)
	code, stdout, stderr := p.wait(), p.stdout.String(), p.stderr.String()
	if code != 0 || !strings.Contains(stdout, "queued 2,") {
		t.Fatalf("feed --once: exit %d, want 0 queueing naip-a and naip-b\n%s\n%s", code, stdout, stderr)
	}
	sc, ok := queuedScenes(t, js)["naip-b"]
	if !ok {
		t.Fatal("naip-b (the scene needing a mosaic) is not on the scenes stream")
	}
	vrt := filepath.Join(mosaics, "naip-b", "s2-B04.vrt")
	if h := sc.Assets[mm.Sentinel2].Hrefs["B04"]; h != vrt {
		t.Errorf("naip-b's Sentinel-2 B04 is %s, want the mosaic %s", h, vrt)
	}
	out, err := exec.Command("gdalinfo", vrt).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "items/s2-west/B04.tif") || !strings.Contains(string(out), "items/s2-east/B04.tif") {
		t.Errorf("gdalinfo %s: %v\n%s", vrt, err, out)
	}
}

// TestServeFeedMosaicFirstPass: serve's feed loop, in a fresh daemon
// process, runs its first pass before any scene was opened there; the
// catalogue's first (and only) scene needs a Sentinel-2 mosaic, which the
// pass builds and queues.
func TestServeFeedMosaicFirstPass(t *testing.T) {
	fixture := fixtureDir(t)
	root := t.TempDir()
	api := feedCatalogue(t, fixture, root)
	var items []map[string]any
	for _, it := range api.items {
		switch it["id"] {
		case "naip-b", "s2-west", "s2-east", "s1-2024":
			items = append(items, it)
		}
	}
	api.items = items
	srv := httptest.NewServer(api)
	defer srv.Close()
	mosaics := filepath.Join(root, "mosaics")
	useFeedConfig(t, root, srv.URL+"/search", mosaics)
	p := spawn(t, nil, serveArgs(filepath.Join(root, "data"), "--allow", fixture, "--allow", root)...)
	for i := 0; !strings.Contains(p.stderr.String(), `msg="feed pass"`); i++ {
		select {
		case <-p.exited:
			t.Fatalf("serve exited %d before its first feed pass:\n%s", p.wait(), p.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if i == 1800 {
			t.Fatalf("no feed pass in three minutes:\n%s", p.stderr.String())
		}
	}
	log := p.stderr.String()
	if !strings.Contains(log, "queued=1 ") || strings.Contains(log, "feed pass failed") {
		t.Errorf("the first feed pass did not queue naip-b:\n%s", log)
	}
	vrt := filepath.Join(mosaics, "naip-b", "s2-B04.vrt")
	if out, err := exec.Command("gdalinfo", vrt).CombinedOutput(); err != nil {
		t.Errorf("gdalinfo %s: %v\n%s", vrt, err, out)
	}
}
