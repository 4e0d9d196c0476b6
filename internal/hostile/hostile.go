// Package hostile is the suite of hostile scenes that the daemon and
// `score` both run through: scene messages whose hrefs, rasters or
// references try to make GDAL read outside the allowed roots, declare
// absurd sizes, or are broken. Every case must end refused (score: exit 2
// naming the field) or dead-lettered with a reason, the process alive,
// and nothing read outside the roots: the loopback server outside the
// allow list counts requests (they must stay at zero), and the rasters
// placed outside are real, so only an escape could score them.
package hostile

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Case is one hostile scene message and what its refusal must say.
type Case struct {
	Name    string
	ID      string // the scene id ("" for a message that has none)
	Message []byte
	Want    string // a part of the reason
}

// Env is the ground the cases stand on.
type Env struct {
	Root    string   // the allowed directory, holding a good copy of the scene
	Outside string   // real rasters of the scene, outside every root
	Allow   []string // Root and the allowed URL prefix
	Cases   []Case

	served    *httptest.Server // serves servedDir: its /pub/ is allowed
	servedDir string
	forbidden *httptest.Server // serves Outside: not allowed
	hits      atomic.Int64
}

// ForbiddenHits is how many requests the server outside the allow list got.
func (e *Env) ForbiddenHits() int64 { return e.hits.Load() }

// scene is the fixture scene's message, as written by `methanemap fixtures`.
type scene struct {
	Version  int                       `json:"version"`
	ID       string                    `json:"id"`
	Acquired string                    `json:"acquired"`
	Assets   map[string]map[string]any `json:"assets"`
}

// New builds the cases over a fixture scene directory (scene.json,
// naip.tif, s1.tif, s2/*.tif), which it only reads.
func New(t testing.TB, fixture string) *Env {
	t.Helper()
	e := &Env{Root: t.TempDir(), Outside: t.TempDir()}
	served := t.TempDir()
	e.servedDir = served
	for _, dir := range []string{e.Root, e.Outside, filepath.Join(served, "pub")} {
		linkTree(t, fixture, dir)
	}
	e.forbidden = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		http.FileServer(http.Dir(e.Outside)).ServeHTTP(w, r)
	}))
	t.Cleanup(e.forbidden.Close)
	e.served = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/pub/redirect/") { // an allowed URL sending GDAL elsewhere
			http.Redirect(w, r, e.forbidden.URL+"/"+strings.TrimPrefix(r.URL.Path, "/pub/redirect/"), http.StatusFound)
			return
		}
		http.FileServer(http.Dir(served)).ServeHTTP(w, r)
	}))
	t.Cleanup(e.served.Close)
	pub := e.served.URL + "/pub/"
	e.Allow = []string{e.Root, pub}

	var base scene
	data, err := os.ReadFile(filepath.Join(fixture, "scene.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &base); err != nil {
		t.Fatal(err)
	}
	e.Cases = e.cases(t, base, pub)
	return e
}

// linkTree makes dst a copy of src's files (hard links where it can).
func linkTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if os.Link(p, to) == nil {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *Env) write(t testing.TB, name, body string) string {
	t.Helper()
	p := filepath.Join(e.Root, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// vrtOf writes GDAL's own VRT of src at name inside the root, with its
// source named as GDAL names it, then given sourceName instead.
func (e *Env) vrtOf(t testing.TB, name, src, sourceName, relative string) string {
	t.Helper()
	p := filepath.Join(e.Root, name)
	out, err := exec.Command("gdal_translate", "-q", "-of", "VRT", src, p).CombinedOutput()
	if err != nil {
		t.Fatalf("gdal_translate: %v: %s", err, out)
	}
	if sourceName == "" {
		return p
	}
	body, _ := os.ReadFile(p)
	s := string(body)
	for _, rel := range []string{"0", "1"} {
		for _, named := range []string{src, filepath.Base(src)} {
			s = strings.ReplaceAll(s, fmt.Sprintf(`<SourceFilename relativeToVRT="%s">%s</SourceFilename>`, rel, named),
				fmt.Sprintf(`<SourceFilename relativeToVRT="%s">%s</SourceFilename>`, relative, sourceName))
		}
	}
	if s == string(body) {
		t.Fatalf("no source to rename in GDAL's VRT of %s", src)
	}
	return e.write(t, name, s)
}

// message is the good scene (absolute hrefs into the root) with the NAIP
// href replaced: the first asset opened, so its refusal is the scene's.
func (e *Env) message(base scene, id, naipHref string) []byte {
	sc := base
	sc.ID = id
	sc.Assets = map[string]map[string]any{}
	for k, a := range base.Assets {
		c := map[string]any{}
		for f, v := range a {
			c[f] = v
		}
		if h, ok := c["href"].(string); ok {
			c["href"] = filepath.Join(e.Root, h)
		}
		if hs, ok := c["hrefs"].(map[string]any); ok {
			abs := map[string]any{}
			for b, h := range hs {
				abs[b] = filepath.Join(e.Root, h.(string))
			}
			c["hrefs"] = abs
		}
		sc.Assets[k] = c
	}
	sc.Assets["naip"]["href"] = naipHref
	data, _ := json.Marshal(sc)
	return data
}
