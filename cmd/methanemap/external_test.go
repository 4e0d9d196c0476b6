package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	for i := 0; i < 100 && scenes == nil; i++ {
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
