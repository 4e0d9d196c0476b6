package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	mm "github.com/methanemap/methanemap"
)

// TestConfinedHTTPS: with the process confined, GDAL's https reads go
// through the proxy's CONNECT tunnel to an allowed host and are read as
// without it; a redirect to another https host is refused by the proxy,
// which that host never hears of.
func TestConfinedHTTPS(t *testing.T) {
	dir := t.TempDir()
	writeTestTIFF(t, dir, "x.tif", 4, "Byte", "")
	var other atomic.Int64
	forbidden := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other.Add(1)
		http.FileServer(http.Dir(dir)).ServeHTTP(w, r)
	}))
	defer forbidden.Close()
	allowed := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/away/") {
			http.Redirect(w, r, forbidden.URL+"/x.tif", http.StatusFound)
			return
		}
		http.FileServer(http.Dir(dir)).ServeHTTP(w, r)
	}))
	defer allowed.Close()
	setConfig("GDAL_HTTP_UNSAFESSL", "YES") // the test servers' certificates are their own
	defer setConfig("GDAL_HTTP_UNSAFESSL", "")
	allow := []string{allowed.URL + "/"}
	if err := Confine(allow); err != nil {
		t.Fatal(err)
	}
	defer Confine(nil)
	src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: allowed.URL + "/x.tif"}}), Options{Allow: allow, AnyResolution: true})
	if err != nil {
		t.Fatalf("an allowed https file through the tunnel: %v", err)
	}
	w := Window{EPSG: 32615, Bounds: [4]float64{440000, 4644000, 446000, 4650000}, Width: 60, Height: 60}
	if _, err := src.Rasters[0].Warp(context.Background(), w, Average); err != nil {
		t.Errorf("warp through the tunnel: %v", err)
	}
	src.Close()
	_, err = Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: allowed.URL + "/away/x.tif"}}), Options{Allow: allow, AnyResolution: true})
	if err == nil || !mm.IsPermanent(err) {
		t.Errorf("a redirect to another https host: %v, want a permanent refusal", err)
	}
	if n := other.Load(); n != 0 {
		t.Errorf("the host outside the allow list got %d requests", n)
	}
}
