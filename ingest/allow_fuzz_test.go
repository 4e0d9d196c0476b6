package ingest

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzAllowed: whatever the href, Allowed does not panic, and what it
// allows is under a root: a URL's host, port and cleaned path are an
// allowed prefix's, with no userinfo; a local path resolves (links first)
// into the allowed directory.
func FuzzAllowed(f *testing.F) {
	root := f.TempDir()
	os.WriteFile(filepath.Join(root, "x.tif"), nil, 0o644)
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	os.Symlink("/etc", filepath.Join(root, "link"))
	allow := []string{root, "http://h.example:8080/ok/", "https://data.example.org/scenes"}
	for _, s := range []string{
		root + "/x.tif", root + "/sub/../x.tif", root + "/link/../x.tif", root + "/../x.tif", "file://" + root + "/x.tif",
		"http://h.example:8080/ok/a.tif", "http://h.example:8080/ok/../a.tif", "http://h.example:8080@evil/ok/a.tif",
		"http://H.EXAMPLE:8080/ok/%2e%2e/a", "/vsicurl/http://h.example:8080/ok/a.tif", "/vsizip//x.zip/a", "https://data.example.org/scenes/a",
		"https://data.example.org:443/scenesX/a", "s3://b/k", "relative/x.tif", "\x00", "http://[::1]:8080/ok/",
	} {
		f.Add(s)
	}
	al, err := parseAllow(allow)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, href string) {
		if al.check(href) != nil {
			return
		}
		h := href
		if strings.HasPrefix(h, "/vsi") {
			if h, err = vsiURL(h); err != nil {
				t.Fatalf("%q allowed, but its GDAL path is refused: %v", href, err)
			}
		}
		if strings.Contains(h, "://") && !strings.HasPrefix(strings.ToLower(h), "file:") {
			u, err := url.Parse(h)
			if err != nil || u.User != nil {
				t.Fatalf("%q allowed: parse %v, userinfo %v", href, err, u)
			}
			p := u.Port()
			ok := (strings.EqualFold(u.Hostname(), "h.example") && p == "8080" && strings.HasPrefix(cleanURLPath(u.Path)+"/", "/ok/")) ||
				(strings.EqualFold(u.Hostname(), "data.example.org") && (p == "" || p == "443") && strings.HasPrefix(cleanURLPath(u.Path)+"/", "/scenes/"))
			if !ok {
				t.Fatalf("%q allowed outside the prefixes", href)
			}
			return
		}
		p := h
		if strings.HasPrefix(strings.ToLower(h), "file:") {
			u, err := url.Parse(h)
			if err != nil {
				t.Fatalf("%q allowed but does not parse: %v", href, err)
			}
			p = u.Path
		}
		if !filepath.IsAbs(p) {
			wd, _ := os.Getwd()
			p = wd + "/" + p
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil || (real != resolveRoot(root) && !strings.HasPrefix(real, resolveRoot(root)+"/")) {
			t.Fatalf("%q allowed: resolves to %q (%v), outside %s", href, real, err, root)
		}
	})
}

func cleanURLPath(p string) string {
	c := filepath.Clean("/" + p)
	return strings.TrimSuffix(c, "/")
}
