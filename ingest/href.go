package ingest

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	mm "github.com/methanemap/methanemap"
)

// GDALPath maps an asset href to the path GDAL opens: http(s) URLs to
// /vsicurl/, s3:// to /vsis3/, gs:// to /vsigs/, file:// URLs to local paths.
// Local paths and /vsi…/ paths are returned as they are.
func GDALPath(href string) (string, error) {
	if href == "" {
		return "", mm.Permanentf("empty href")
	}
	if strings.HasPrefix(href, "/vsi") || !strings.Contains(href, "://") {
		return href, nil
	}
	u, err := url.Parse(href)
	if err != nil {
		return "", mm.Permanentf("href %q: %v", href, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return "/vsicurl/" + href, nil
	case "s3":
		return "/vsis3/" + u.Host + u.Path, nil
	case "gs":
		return "/vsigs/" + u.Host + u.Path, nil
	case "file":
		return u.Path, nil
	}
	return "", mm.Permanentf("href %q: unsupported scheme %q (want a path, http, https, s3, gs or file)", href, u.Scheme)
}

// isRemote reports whether a GDAL path reads over the network.
func isRemote(path string) bool {
	for _, p := range []string{"/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsihdfs", "/vsiwebhdfs"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// describe names a href in errors without leaking query strings (signed URLs).
func describe(href string) string {
	if i := strings.IndexByte(href, '?'); i >= 0 {
		return href[:i] + "?…"
	}
	return href
}

func fieldErr(field, href string, err error) error {
	if mm.IsPermanent(err) {
		return mm.Permanentf("%s: %s: %w", field, describe(href), err)
	}
	return fmt.Errorf("%s: %s: %w", field, describe(href), err)
}

// ResolveHrefs makes the scene's relative hrefs absolute against base: the
// directory or URL of the file the scene came from. Hrefs that are already
// absolute (a path starting with /, or a URL) are left as they are.
func ResolveHrefs(sc *mm.Scene, base string) {
	res := func(h string) string {
		if h == "" || strings.HasPrefix(h, "/") || strings.Contains(h, "://") {
			return h
		}
		if strings.Contains(base, "://") {
			return strings.TrimSuffix(base, "/") + "/" + h
		}
		return filepath.Join(base, h)
	}
	for sn, a := range sc.Assets {
		a.Href = res(a.Href)
		if len(a.Hrefs) > 0 {
			m := make(map[string]string, len(a.Hrefs))
			for b, h := range a.Hrefs {
				m[b] = res(h)
			}
			a.Hrefs = m
		}
		sc.Assets[sn] = a
	}
}
