package ingest

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	mm "github.com/methanemap/methanemap"
)

// Allowed checks an href against allowed roots and URL prefixes (none:
// everything is allowed). It takes what a scene gives (a path, a URL) and
// what a VRT names (GDAL paths such as /vsicurl/URL), and says why when
// it refuses; the error is permanent.
//
// URLs are compared parsed, never as strings: scheme, host and port (the
// scheme's default when absent) must equal an allowed prefix's, and the
// path, decoded and with its dot segments removed as curl and servers
// remove them, must be the prefix's path or lie below it. URLs with
// userinfo, encoded slashes or backslashes are refused. Local paths have
// their symbolic links resolved before ".." is applied (as the kernel does:
// /allowed/link/../x is beside link's target, not in /allowed) and must
// lie under an allowed directory, itself resolved. Of GDAL's virtual file
// systems only /vsicurl/ (http and https), /vsis3/ and /vsigs/ can be
// allowed, as the URLs they stand for.
func Allowed(href string, allow []string) error {
	if len(allow) == 0 {
		return nil
	}
	al, err := parseAllow(allow)
	if err != nil {
		return mm.Permanent(err)
	}
	return al.check(href)
}

// ValidateAllow checks an allow list's entries (directories, or URL
// prefixes with a scheme and host).
func ValidateAllow(allow []string) error {
	_, err := parseAllow(allow)
	return err
}

// allowList is an allow list parsed once for many checks.
type allowList struct {
	raw  []string
	dirs []string     // resolved absolute directories
	urls []allowedURL // scheme, host, port and cleaned path
}

type allowedURL struct{ scheme, host, port, path string }

func parseAllow(allow []string) (*allowList, error) {
	al := &allowList{raw: allow}
	for _, a := range allow {
		if a == "" {
			return nil, errors.New("ingest: allow: an empty entry")
		}
		if strings.Contains(a, "://") {
			u, err := parseURL(a)
			if err != nil {
				return nil, fmt.Errorf("ingest: allow %q: %w", a, err)
			}
			if u.scheme == "file" {
				al.dirs = append(al.dirs, resolveRoot(u.path))
				continue
			}
			al.urls = append(al.urls, u)
			continue
		}
		if strings.HasPrefix(a, "/vsi") {
			return nil, fmt.Errorf("ingest: allow %q: give the URL (http, https, s3, gs), not a GDAL path", a)
		}
		al.dirs = append(al.dirs, resolveRoot(a))
	}
	return al, nil
}

// resolveRoot makes an allowed directory absolute with its links resolved
// (a root that does not exist is kept as written: nothing resolves into it).
func resolveRoot(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

var defaultPorts = map[string]string{"http": "80", "https": "443", "s3": "", "gs": ""}

// parseURL reads a URL into what is compared. The path is decoded and its
// dot segments removed.
func parseURL(raw string) (allowedURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return allowedURL{}, err
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case u.Opaque != "":
		return allowedURL{}, errors.New("not a hierarchical URL")
	case u.User != nil:
		return allowedURL{}, errors.New("userinfo (user@ or user:password@) in a URL is refused: it hides the host")
	case strings.ContainsAny(u.Path, "\\\x00"):
		return allowedURL{}, errors.New("a backslash or NUL in the URL path")
	case strings.Contains(strings.ToLower(u.EscapedPath()), "%2f"), strings.Contains(strings.ToLower(u.EscapedPath()), "%5c"):
		return allowedURL{}, errors.New("an encoded slash in the URL path")
	}
	if scheme == "file" {
		if h := u.Hostname(); h != "" && h != "localhost" {
			return allowedURL{}, fmt.Errorf("file URL on host %q", h)
		}
		return allowedURL{scheme: "file", path: u.Path}, nil
	}
	def, ok := defaultPorts[scheme]
	if !ok {
		return allowedURL{}, fmt.Errorf("unsupported scheme %q (want http, https, s3, gs or file)", u.Scheme)
	}
	if u.Hostname() == "" {
		return allowedURL{}, errors.New("no host")
	}
	port := u.Port()
	if port == "" {
		port = def
	}
	p := path.Clean("/" + u.Path)
	return allowedURL{scheme: scheme, host: strings.ToLower(u.Hostname()), port: port, path: p}, nil
}

// under reports whether p is root or lies below it (both cleaned, slash-separated).
func under(p, root string) bool {
	root = strings.TrimSuffix(root, "/")
	return root == "" || p == root || strings.HasPrefix(p, root+"/")
}

// refuse says what was refused (kind: "directory" or "URL prefix");
// resolved is what the href came to, when that is not what it says.
func (al *allowList) refuse(kind, href, resolved string) error {
	if resolved != href {
		return mm.Permanentf("resolves to %s: not under an allowed %s (%s)", resolved, kind, strings.Join(al.raw, ", "))
	}
	return mm.Permanentf("not under an allowed %s (%s)", kind, strings.Join(al.raw, ", "))
}

// check is Allowed for a parsed list.
func (al *allowList) check(href string) error {
	_, err := al.resolve(href)
	return err
}

// resolve checks an href and returns the GDAL path that reads what was
// checked: a local file's resolved path (links and ".." applied), a URL's
// GDAL path as it is.
func (al *allowList) resolve(href string) (string, error) {
	u := href
	if strings.HasPrefix(href, "/vsi") {
		var err error
		if u, err = vsiURL(href); err != nil {
			return "", mm.Permanentf("%v", err)
		}
	}
	if !strings.Contains(u, "://") {
		return al.checkLocal(u)
	}
	pu, err := parseURL(u)
	if err != nil {
		return "", mm.Permanentf("%v", err)
	}
	if pu.scheme == "file" {
		return al.checkLocal(pu.path)
	}
	for _, a := range al.urls {
		if a.scheme == pu.scheme && a.host == pu.host && a.port == pu.port && under(pu.path, a.path) {
			if strings.HasPrefix(href, "/vsi") {
				return href, nil
			}
			return GDALPath(href)
		}
	}
	return "", al.refuse("URL prefix", href, href)
}

// vsiURL turns the GDAL virtual file systems that can be allowed back
// into the URLs they read; any other is refused.
func vsiURL(p string) (string, error) {
	switch {
	case strings.HasPrefix(p, "/vsicurl/"):
		rest := strings.TrimPrefix(p, "/vsicurl/")
		if l := strings.ToLower(rest); !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://") {
			return "", fmt.Errorf("%s: /vsicurl/ takes an http or https URL", describe(p))
		}
		return rest, nil
	case strings.HasPrefix(p, "/vsis3/"):
		return "s3://" + strings.TrimPrefix(p, "/vsis3/"), nil
	case strings.HasPrefix(p, "/vsigs/"):
		return "gs://" + strings.TrimPrefix(p, "/vsigs/"), nil
	}
	name, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return "", fmt.Errorf("%s: GDAL's /%s is not a file system scene rasters may use (only /vsicurl/, /vsis3/, /vsigs/)", describe(p), name)
}

// checkLocal resolves a local path as the kernel would (links first, then
// ".."), checks it lies under an allowed directory, and returns it resolved.
func (al *allowList) checkLocal(p string) (string, error) {
	given := p
	if p == "" || strings.ContainsRune(p, 0) {
		return "", mm.Permanentf("an empty path or one with a NUL")
	}
	if !filepath.IsAbs(p) {
		wd, err := os.Getwd()
		if err != nil {
			return "", mm.Permanentf("%s: %v", p, err)
		}
		p = wd + string(filepath.Separator) + p // not Join: it would apply ".." before the links
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		// missing: said only of a path that would lie in a root, so that
		// whether a file exists outside them is not told
		if errors.Is(err, fs.ErrNotExist) && al.inDirs(existingPrefix(p)) {
			return "", mm.Permanentf("no such file (%s)", p)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return "", al.refuse("directory", given, given)
		}
		return "", mm.Permanentf("%s: %v", p, err)
	}
	if al.inDirs(real) {
		return real, nil
	}
	return "", al.refuse("directory", given, real)
}

// inDirs reports whether a resolved path lies in an allowed directory.
func (al *allowList) inDirs(real string) bool {
	for _, root := range al.dirs {
		if rel, err := filepath.Rel(root, real); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// existingPrefix resolves the longest part of p that exists (links, then
// ".."), and adds the rest cleaned: where p would be if it existed.
func existingPrefix(p string) string {
	dir, rest := p, ""
	for {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return filepath.Clean(p)
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}
