package main

import (
	"bytes"
	"context"
	"encoding/json"

	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/methanemap/methanemap/worker"
)

// classColours are the map page's class colours (web/static/map.js).
var classColours = map[string][3]uint8{
	"cafo": {0xe6, 0x55, 0x0d}, "coal_mine": {0x3f, 0x3f, 0x8f}, "landfill": {0x8c, 0x6d, 0x31},
	"natural_gas_processing_plant": {0xd6, 0x27, 0x28}, "oil_refinery_petroleum_terminal": {0x9c, 0x3f, 0x9c},
	"wastewater_treatment_plant": {0x1f, 0x77, 0xb4},
}

// TestMapPage loads /map in headless Debian chromium: the scene's
// detections and sites are drawn (checked in the page's DOM and in a
// screenshot, by their class colours), clicking a site shows its
// properties, and a detection published afterwards appears without a
// reload.
func TestMapPage(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: make deps installs Debian's chromium")
	}
	dir := fixtureDir(t)
	d := startDaemon(t, "--allow", dir)
	first := sceneID(t, filepath.Join(dir, "scene.json"))
	if code, stdout, stderr := cli(t, "enqueue", "--nats", d.url, filepath.Join(dir, "scene.json")); code != 0 {
		t.Fatalf("enqueue: %d %s %s", code, stdout, stderr)
	}
	d.waitFinal(t, first)
	dets := readAll(t, d.js, worker.DetectionsStream, "methanemap.detections.>")
	sites := readAll(t, d.js, worker.DetectionsStream, "methanemap.sites.>")
	classes := map[string]bool{}
	for _, raw := range sites {
		var f struct{ Properties struct{ Class string } }
		json.Unmarshal(raw, &f)
		classes[f.Properties.Class] = true
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1200, 800))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	// the first action starts the browser: no timeout on it (it would stop the browser)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+d.http+"/map")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`body[data-loaded]`))); err != nil {
		t.Fatalf("the map page never finished loading: %v", err)
	}
	loaded, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`body`), "data-loaded"))
	if err != nil {
		t.Fatal(err)
	}
	const drawnIDs = `Array.from(document.querySelectorAll('[data-collection=detections]')).map(e => e.dataset.id)`
	drawn, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](drawnIDs))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if len(drawn) != len(dets) || len(dets) == 0 {
		t.Errorf("the map draws %d detections, the stream holds %d", len(drawn), len(dets))
	}
	for _, id := range drawn {
		if !strings.HasPrefix(id, first+"/") {
			t.Errorf("drawn: %s", id)
		}
	}
	// the screenshot shows each site's class colour (sites are solid dots)
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	os.WriteFile(filepath.Join(t.TempDir(), "map.png"), shot, 0o644)
	for class := range classes {
		if n := colourPixels(img, classColours[class]); n < 20 {
			t.Errorf("the screenshot has %d pixels of %s's colour", n, class)
		}
	}
	// click a site: its properties appear in the panel
	err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`[data-collection=sites]`)), chromedp.WaitVisible(chromedp.CSS(`#props table`)))
	props, terr := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#props`)))
	if err != nil || terr != nil || !strings.Contains(props, "max_score") || !strings.Contains(props, "scene_ids") {
		t.Errorf("clicking a site: %v %v, panel %q", err, terr, props)
	}
	// a new scene's detections arrive live, without a reload
	second := remoteSceneCopy(t, dir, "map-live")
	if code, stdout, stderr := cli(t, "enqueue", "--nats", d.url, second); code != 0 {
		t.Fatalf("enqueue: %d %s %s", code, stdout, stderr)
	}
	var live []string
	var after chromedp.AttributeResult
	for i := 0; i < 240; i++ {
		if live, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](drawnIDs+`.filter(id => id.startsWith('map-live/'))`)); err != nil || len(live) > 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err == nil {
		after, err = chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`body`), "data-loaded"))
	}
	if err != nil || len(live) == 0 {
		t.Fatalf("no detection of the second scene appeared on the map: %v\n%s", err, d.log.String())
	}
	if after.Value != loaded.Value || loaded.Value == "" {
		t.Errorf("the page reloaded (loaded at %q, now %q)", loaded.Value, after.Value)
	}
	sort.Strings(live)
	t.Logf("live on the map: %d new detections, e.g. %s", len(live), live[0])
}

// colourPixels counts pixels within a small distance of c.
func colourPixels(img image.Image, c [3]uint8) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			dr, dg, db := int(r>>8)-int(c[0]), int(g>>8)-int(c[1]), int(bl>>8)-int(c[2])
			if dr*dr+dg*dg+db*db < 3*6*6 {
				n++
			}
		}
	}
	return n
}
