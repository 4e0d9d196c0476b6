package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestServeOnExternalNATS runs Debian's nats-server (JetStream, user and
// password) as a separate process and serves through --nats URL.
func TestServeOnExternalNATS(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatal("nats-server not found: make deps installs Debian's nats-server")
	}
	port := freePort(t)
	srv := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", t.TempDir(), "--user", "mm", "--pass", "s3cret")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var nc *nats.Conn
	for i := 0; i < 50; i++ {
		if nc, err = nats.Connect(url, nats.UserInfo("mm", "s3cret")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("external nats-server: %v", err)
	}
	defer nc.Close()
	if _, err := nats.Connect(url); err == nil {
		t.Fatal("the server accepted a client without credentials")
	}
	fixtures := fixtureDir(t)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan int)
	var serveErr bytes.Buffer
	go func() {
		served <- run(ctx, []string{"serve", "--nats", url, "--nats-user", "mm", "--nats-password", "s3cret",
			"--http", "127.0.0.1:0", "--cutters", "1", "--allow", fixtures}, &bytes.Buffer{}, &serveErr)
	}()
	js, _ := jetstream.New(nc)
	var scenes jetstream.Stream
	for i := 0; i < 600 && scenes == nil; i++ {
		time.Sleep(100 * time.Millisecond)
		scenes, _ = js.Stream(context.Background(), worker.ScenesStream)
	}
	if scenes == nil {
		stop()
		t.Fatalf("serve did not create the streams: %s", serveErr.String())
	}
	code, stdout, stderr := cli(t, "enqueue", "--nats", url, "--nats-user", "mm", "--nats-password", "s3cret", filepath.Join(fixtures, "scene.json"))
	if code != 0 || !strings.Contains(stdout, "queued") {
		stop()
		t.Fatalf("enqueue: %d %s %s", code, stdout, stderr)
	}
	id := strings.Fields(stdout)[0]
	events, _ := js.Stream(context.Background(), worker.EventsStream)
	var last worker.Event
	for i := 0; i < 600 && last.Event != "done"; i++ {
		time.Sleep(100 * time.Millisecond)
		if m, err := events.GetLastMsgForSubject(context.Background(), "methanemap.events."+id); err == nil {
			json.Unmarshal(m.Data, &last)
		}
	}
	stop()
	if code := <-served; code != 0 {
		t.Errorf("serve exited %d: %s", code, serveErr.String())
	}
	if last.Event != "done" {
		t.Fatalf("last event %+v; serve: %s", last, serveErr.String())
	}
}

// TestWorkerKilledMidScene kills (SIGKILL) the only worker while it scores
// a scene; a second worker gets the scene after the ack wait and completes
// it, and the detections stream holds each detection id once.
func TestWorkerKilledMidScene(t *testing.T) {
	port := freePort(t)
	srv := exec.Command("nats-server", "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", t.TempDir())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	var nc *nats.Conn
	var err error
	for i := 0; i < 50; i++ {
		if nc, err = nats.Connect(url); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// the package's 3 km scene: it takes seconds in a worker built with
	// -race, and the worker is killed as soon as it is seen mid-scene
	dir := fixtureDir(t)
	worker := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainChild$")
		cmd.Env = append(os.Environ(), "METHANEMAP_MAIN_CHILD=serve --nats "+url+" --http 127.0.0.1:0 --cutters 1 --backend onnxgo --ack-wait 3s --allow "+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := worker()
	var events jetstream.Stream
	for i := 0; i < 600 && events == nil; i++ {
		time.Sleep(100 * time.Millisecond)
		events, _ = js.Stream(context.Background(), "METHANEMAP_EVENTS")
	}
	if code, stdout, stderr := cli(t, "enqueue", "--nats", url, filepath.Join(dir, "scene.json")); code != 0 {
		t.Fatalf("enqueue: %s %s", stdout, stderr)
	}
	id := "fixture_-93.6200_42.0300"
	last := func() (e struct {
		Event    string `json:"event"`
		Delivery uint64 `json:"delivery"`
		Done     int    `json:"done"`
		Total    int    `json:"total"`
	}) {
		if m, err := events.GetLastMsgForSubject(context.Background(), "methanemap.events."+id); err == nil {
			json.Unmarshal(m.Data, &e)
		}
		return e
	}
	// mid-scene: the last event is "started", or a "progress" with chips
	// still to do (the first progress event follows the first chips
	// scored, so "started" alone may never be seen as the last event)
	midScene := func() bool {
		e := last()
		return e.Event == "started" || (e.Event == "progress" && e.Done < e.Total)
	}
	for i := 0; i < 1200 && !midScene(); i++ { // up to two minutes on a loaded machine
		time.Sleep(50 * time.Millisecond)
	}
	if e := last(); !midScene() {
		t.Fatalf("never saw the first worker mid-scene: last event %+v", e)
	}
	first.Process.Kill()
	first.Wait()
	if e := last(); e.Event == "done" {
		t.Fatalf("the scene was done before its worker was killed (%+v): the scene is too short for this test", e)
	}
	second := worker()
	defer func() { second.Process.Signal(os.Interrupt); second.Wait() }()
	for i := 0; i < 1200 && last().Event != "done"; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if e := last(); e.Event != "done" {
		t.Fatalf("the scene did not complete after its worker was killed: last event %+v", e)
	}
	// the scene was started twice: by the killed worker, then redelivered
	redelivered := false
	for _, raw := range readAll(t, js, "METHANEMAP_EVENTS", "methanemap.events."+id) { // (worker is the process here)
		var e struct {
			Event    string `json:"event"`
			Delivery uint64 `json:"delivery"`
		}
		json.Unmarshal(raw, &e)
		redelivered = redelivered || (e.Event == "started" && e.Delivery >= 2)
	}
	if !redelivered {
		t.Error("no second delivery of the scene was started: the worker was not killed mid-scene")
	}
	if len(detectionsOnce(t, js)) == 0 {
		t.Fatal("no detections on the stream")
	}
}

// TestBrokerRestart stops the external nats-server under a running daemon
// and starts it again on the same port and store: the daemon reconnects,
// and a scene queued afterwards is scored.
func TestBrokerRestart(t *testing.T) {
	port, store := freePort(t), t.TempDir()
	start := func() *exec.Cmd {
		srv := exec.Command("nats-server", "-js", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-sd", store)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	defer func() { srv.Process.Kill(); srv.Wait() }()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	fixtures := fixtureDir(t)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan int)
	var serveErr bytes.Buffer
	time.Sleep(300 * time.Millisecond)
	go func() {
		served <- run(ctx, []string{"serve", "--nats", url, "--http", "127.0.0.1:0", "--cutters", "1", "--allow", fixtures}, &bytes.Buffer{}, &serveErr)
	}()
	defer func() {
		stop()
		<-served
	}()
	waitStream := func() {
		for i := 0; i < 600; i++ {
			time.Sleep(100 * time.Millisecond)
			nc, err := nats.Connect(url)
			if err != nil {
				continue
			}
			js, _ := jetstream.New(nc)
			_, err = js.Stream(context.Background(), worker.ScenesStream)
			nc.Close()
			if err == nil {
				return
			}
		}
		t.Fatalf("streams never appeared: %s", serveErr.String())
	}
	waitStream()
	srv.Process.Signal(os.Interrupt)
	srv.Wait()
	time.Sleep(time.Second)
	srv = start()
	waitStream()
	if code, stdout, stderr := cli(t, "enqueue", "--nats", url, filepath.Join(fixtures, "scene.json")); code != 0 {
		t.Fatalf("enqueue after the restart: %s %s", stdout, stderr)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	events, _ := js.Stream(context.Background(), worker.EventsStream)
	var last worker.Event
	for i := 0; i < 600 && last.Event != "done"; i++ {
		time.Sleep(100 * time.Millisecond)
		if m, err := events.GetLastMsgForSubject(context.Background(), "methanemap.events.fixture_-93.6200_42.0300"); err == nil {
			json.Unmarshal(m.Data, &last)
		}
	}
	if last.Event != "done" {
		t.Fatalf("after the broker restart the scene did not complete: %+v\n%s", last, serveErr.String())
	}
}
