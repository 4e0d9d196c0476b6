package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/worker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsNode is one nats-server process of a test cluster.
type natsNode struct {
	name, conf, url string
	cmd             *exec.Cmd
}

// natsCluster starts three Debian nats-server processes on loopback as one
// JetStream cluster and waits until JetStream answers.
func natsCluster(t *testing.T) []*natsNode {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Fatal("nats-server not found: make deps installs Debian's nats-server")
	}
	dir := t.TempDir()
	client := []int{freePort(t), freePort(t), freePort(t)}
	route := []int{freePort(t), freePort(t), freePort(t)}
	var nodes []*natsNode
	for i := range 3 {
		var routes []string
		for j := range 3 {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", route[j]))
			}
		}
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), url: fmt.Sprintf("nats://127.0.0.1:%d", client[i])}
		n.conf = filepath.Join(dir, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster { name: methanemap-test, listen: 127.0.0.1:%d, routes: [%s] }
`, n.name, client[i], filepath.Join(dir, n.name), route[i], strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		n.cmd = exec.Command(bin, "-c", n.conf, "-l", filepath.Join(dir, n.name+".log"))
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.cmd.ProcessState == nil {
				n.cmd.Process.Kill()
				n.cmd.Wait()
			}
		}
	})
	// JetStream answers once the meta group has a leader
	for i := 0; i < 300; i++ {
		time.Sleep(100 * time.Millisecond)
		nc, err := nats.Connect(nodes[0].url)
		if err != nil {
			continue
		}
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = js.AccountInfo(ctx)
		cancel()
		nc.Close()
		if err == nil {
			return nodes
		}
	}
	t.Fatal("the three-node JetStream cluster did not form in 30 s")
	return nil
}

// TestClusterScaleOut runs two worker processes on a three-node JetStream
// cluster with R3 streams, queues 20 scenes, and kills (SIGKILL) one broker
// node and one worker mid-run: every scene ends done, and the detections
// stream holds each scene's detections exactly once.
func TestClusterScaleOut(t *testing.T) {
	nodes := natsCluster(t)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	all := strings.Join(urls, ",")
	// 20 scenes over the fixture rasters, each clipped by its AOI to the
	// ground around one planted facility: a few chips each
	dir := fixtureDir(t)
	truth, err := fixtures.ReadTruth(filepath.Join(dir, "truth.geojson"))
	if err != nil || len(truth) == 0 {
		t.Fatalf("truth: %d, %v", len(truth), err)
	}
	scenes, err := loadScenes(filepath.Join(dir, "scene.json"))
	if err != nil {
		t.Fatal(err)
	}
	queue := t.TempDir()
	var ids []string
	for i := range 20 {
		sc := *scenes[0]
		sc.ID = fmt.Sprintf("cluster-%02d", i)
		p := truth[i%len(truth)].LonLat
		d := 0.004
		aoi := fmt.Sprintf(`{"type":"Polygon","coordinates":[[[%f,%f],[%f,%f],[%f,%f],[%f,%f],[%f,%f]]]}`,
			p[0]-d, p[1]-d, p[0]+d, p[1]-d, p[0]+d, p[1]+d, p[0]-d, p[1]+d, p[0]-d, p[1]-d)
		b, _ := json.Marshal(sc)
		var m map[string]any
		json.Unmarshal(b, &m)
		m["aoi"] = json.RawMessage(aoi)
		b, _ = json.Marshal(m)
		if err := os.WriteFile(filepath.Join(queue, sc.ID+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sc.ID)
	}
	logs := t.TempDir()
	startWorker := func(name string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainChild$")
		cmd.Env = append(os.Environ(), "METHANEMAP_MAIN_CHILD=serve --nats "+all+" --replicas 3 --http 127.0.0.1:0 --cutters 1 --ack-wait 5s --grace 1s --allow "+dir)
		f, err := os.Create(filepath.Join(logs, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(os.Interrupt)
				cmd.Wait()
			}
			f.Close()
		})
		return cmd
	}
	dump := func() string {
		var b strings.Builder
		for _, name := range []string{"w1", "w2"} {
			data, _ := os.ReadFile(filepath.Join(logs, name+".log"))
			fmt.Fprintf(&b, "--- %s ---\n%s\n", name, data)
		}
		return b.String()
	}
	w1, w2 := startWorker("w1"), startWorker("w2")
	_ = w2
	// talk to the cluster through the two nodes that stay up
	nc, err := nats.Connect(urls[1]+","+urls[2], nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.Consumer(ctx, worker.ScenesStream, worker.ConsumerName)
		cancel()
		if err == nil {
			break
		}
		if i == 1800 { // serve retries stream creation for 2 minutes while the cluster elects leaders
			t.Fatalf("the workers did not create the consumer in 3 minutes: %v\n%s", err, dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, name := range []string{worker.ScenesStream, worker.DetectionsStream, worker.EventsStream, worker.DeadStream} {
		s, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
	if code, stdout, stderr := cli(t, "enqueue", "--nats", urls[1], queue); code != 0 || strings.Count(stdout, " queued") != 20 {
		t.Fatalf("enqueue: %d\n%s\n%s", code, stdout, stderr)
	}
	events, err := js.Stream(context.Background(), worker.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	final := func() map[string]worker.Event {
		out := map[string]worker.Event{}
		for _, id := range ids {
			var e worker.Event
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := events.GetLastMsgForSubject(ctx, "methanemap.events."+id)
			cancel()
			if err == nil && json.Unmarshal(m.Data, &e) == nil && e.Final() {
				out[id] = e
			}
		}
		return out
	}
	// mid-run: a few scenes done, the rest queued or in flight
	for i := 0; len(final()) < 3; i++ {
		if i == 1200 {
			t.Fatalf("no progress: %v\n%s", final(), dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(final()); n >= 15 {
		t.Logf("the scenes went fast: %d of 20 done before the kills", n)
	}
	t.Logf("%d of 20 scenes done: killing broker n1 and worker w1", len(final()))
	nodes[0].cmd.Process.Kill() // a broker node
	nodes[0].cmd.Wait()
	w1.Process.Kill() // a worker, mid-scene most likely
	w1.Wait()
	var done map[string]worker.Event
	for i := 0; ; i++ {
		if done = final(); len(done) == len(ids) {
			break
		}
		if i == 1800 {
			t.Fatalf("after the kills, %d of 20 scenes finished in 3 minutes\n%s", len(done), dump())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Log("all 20 scenes finished")
	want := map[string]int{} // detections per scene, by its done event
	for id, e := range done {
		if e.Event != "done" {
			t.Errorf("%s: %+v", id, e)
		}
		for _, n := range e.Detections {
			want[id] += n
		}
		if want[id] == 0 {
			t.Errorf("%s: done without detections: the AOI around a planted facility should hold one", id)
		}
	}
	per := map[string]int{}
	for scene, dets := range detectionsOnce(t, js) {
		per[scene] = len(dets)
	}
	for _, id := range ids {
		if per[id] != want[id] {
			t.Errorf("%s: %d detections on the stream, its done event counts %d", id, per[id], want[id])
		}
	}
	if t.Failed() {
		t.Log(dump())
	}
}
