package oapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Media types.
const (
	mediaJSON    = "application/json"
	mediaGeoJSON = "application/geo+json"
	mediaHTML    = "text/html"
	mediaOpenAPI = "application/vnd.oai.openapi+json;version=3.0"
	mediaSchema  = "application/schema+json"
)

// Conformance classes the API implements.
var conformance = []string{
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
	"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
}

// Options describe the service on its landing page.
type Options struct {
	Title       string
	Description string
	// Extra are more links for the landing page (the map page, say), with
	// hrefs relative to the service root.
	Extra []Link
}

// Link is an OGC API link.
type Link struct {
	Href  string `json:"href"`
	Rel   string `json:"rel"`
	Type  string `json:"type,omitempty"`
	Title string `json:"title,omitempty"`
}

type api struct {
	st   *Store
	opts Options
}

// Register adds the API's routes to mux, at the root of the server.
func Register(mux *http.ServeMux, st *Store, opts Options) {
	a := &api{st: st, opts: opts}
	mux.HandleFunc("GET /{$}", a.landing)
	mux.HandleFunc("GET /conformance", a.conformance)
	mux.HandleFunc("GET /api", a.openapi)
	mux.HandleFunc("GET /collections", a.collections)
	mux.HandleFunc("GET /collections/{cid}", a.collection)
	mux.HandleFunc("GET /collections/{cid}/items", a.items)
	mux.HandleFunc("GET /collections/{cid}/schema", a.schema)
	mux.HandleFunc("GET /collections/{cid}/items/{fid}", a.feature)
}

// base is the URL the client used to reach the server, without a trailing
// slash (proxies may say so with X-Forwarded-Proto and -Host; of a list,
// the first, the client's side, counts). The links built from it are
// echoed into JSON and HTML, so a header that is not an http(s) scheme or
// a host[:port] is refused, naming the header, rather than passed on.
func base(r *http.Request) (string, error) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := firstOf(r.Header.Get("X-Forwarded-Proto")); p != "" {
		if p = strings.ToLower(p); p != "http" && p != "https" {
			return "", &paramError{"X-Forwarded-Proto", "want http or https, got " + quote(p)}
		}
		scheme = p
	}
	host, name := r.Host, "Host"
	if h := firstOf(r.Header.Get("X-Forwarded-Host")); h != "" {
		host, name = h, "X-Forwarded-Host"
	}
	if !validHost(host) {
		return "", &paramError{name, "want host[:port] (a DNS name, an IPv4 address or a bracketed IPv6 one), got " + quote(host)}
	}
	return scheme + "://" + host, nil
}

// firstOf is the first element of a comma-separated header value.
func firstOf(h string) string {
	first, _, _ := strings.Cut(h, ",")
	return strings.TrimSpace(first)
}

// validHost reports whether h is host[:port]: a DNS name (letters,
// digits, '-', '_' in dot-separated labels; an IPv4 address is one too)
// or a bracketed IPv6 address, and an optional port from 1 to 65535.
func validHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		addr, rest, ok := strings.Cut(h[1:], "]")
		ip, err := netip.ParseAddr(addr)
		if !ok || err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
		return rest == "" || (rest[0] == ':' && validPort(rest[1:]))
	}
	name := h
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !validPort(h[i+1:]) {
			return false
		}
		name = h[:i]
	}
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func validPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0 && len(p) <= 5
}

// wantsHTML decides the format: f=html|json, else a browser's Accept.
func wantsHTML(f, accept string) (bool, error) {
	switch f {
	case "html":
		return true, nil
	case "json", "geojson":
		return false, nil
	case "":
	default:
		return false, &paramError{"f", fmt.Sprintf("want json or html, got %s", quote(f))}
	}
	h := strings.Index(accept, "text/html")
	if h < 0 {
		return false, nil
	}
	j := strings.Index(accept, "json")
	return j < 0 || h < j, nil
}

func writeJSON(w http.ResponseWriter, status int, media string, v any) {
	w.Header().Set("Content-Type", media)
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// fail answers with the OGC exception body: a code and a description.
func fail(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, mediaJSON, map[string]string{"code": code, "description": desc})
}

func badParam(w http.ResponseWriter, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		fail(w, http.StatusBadRequest, "InvalidParameterValue", pe.Error())
		return
	}
	fail(w, http.StatusBadRequest, "InvalidParameterValue", err.Error())
}

// call is what every request starts from: its query, the format it
// wants and the base URL of its links.
type call struct {
	query url.Values
	html  bool
	base  string
}

// onlyF is the parameter list of resources that take none but f.
var onlyF = map[string]bool{"f": true}

// begin reads the query (refusing malformed pairs, parameters not in
// known, repeats), the format and the base URL; false means it has
// answered 400 already.
func begin(w http.ResponseWriter, r *http.Request, known map[string]bool, list string) (call, bool) {
	c, err := readCall(r, known, list)
	if err != nil {
		badParam(w, err)
		return c, false
	}
	return c, true
}

func readCall(r *http.Request, known map[string]bool, list string) (c call, err error) {
	if c.query, err = parseQuery(r.URL.RawQuery); err != nil {
		return c, err
	}
	if err = checkNames(c.query, known, list); err != nil {
		return c, err
	}
	if c.html, err = wantsHTML(c.query.Get("f"), r.Header.Get("Accept")); err != nil {
		return c, err
	}
	c.base, err = base(r)
	return c, err
}

// lookup finds a collection, or answers 404.
func (a *api) lookup(w http.ResponseWriter, id string) (Info, bool) {
	info, ok := a.st.Collection(id)
	if !ok {
		fail(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no collection %q (there are detections and sites)", id))
	}
	return info, ok
}

// respond writes body as an HTML page or as JSON of the given media type.
func respond(w http.ResponseWriter, html bool, kind, title, media string, body any) {
	if html {
		renderHTML(w, kind, title, body)
		return
	}
	writeJSON(w, http.StatusOK, media, body)
}

// selfLinks are a resource's self and alternate links, in the format
// served first.
func selfLinks(u, title string, html bool, jsonType string) []Link {
	js := Link{Href: u + "?f=json", Type: jsonType, Title: title + " as JSON"}
	ht := Link{Href: u + "?f=html", Type: mediaHTML, Title: title + " as HTML"}
	if html {
		ht.Rel, js.Rel = "self", "alternate"
		return []Link{ht, js}
	}
	js.Rel, ht.Rel = "self", "alternate"
	return []Link{js, ht}
}

func (a *api) landing(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, onlyF, "f")
	if !ok {
		return
	}
	html, b := c.html, c.base
	links := append(selfLinks(b+"/", "This document", html, mediaJSON),
		Link{Href: b + "/api", Rel: "service-desc", Type: mediaOpenAPI, Title: "The API definition (OpenAPI 3.0)"},
		Link{Href: b + "/conformance", Rel: "conformance", Type: mediaJSON, Title: "Conformance classes"},
		Link{Href: b + "/collections", Rel: "data", Type: mediaJSON, Title: "The collections"})
	for _, l := range a.opts.Extra {
		l.Href = b + "/" + strings.TrimPrefix(l.Href, "/")
		links = append(links, l)
	}
	body := map[string]any{"title": a.opts.Title, "description": a.opts.Description, "links": links}
	respond(w, html, "landing", a.opts.Title, mediaJSON, body)
}

func (a *api) conformance(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, onlyF, "f")
	if !ok {
		return
	}
	body := map[string]any{"conformsTo": conformance, "links": selfLinks(c.base+"/conformance", "Conformance", c.html, mediaJSON)}
	respond(w, c.html, "conformance", "Conformance", mediaJSON, body)
}

// collectionJSON describes a collection with its links and real extents.
func collectionJSON(b string, info Info) map[string]any {
	u := b + "/collections/" + url.PathEscape(info.ID)
	c := map[string]any{
		"id": info.ID, "title": info.Title, "description": info.Description,
		"itemType": "feature", "crs": []string{CRS84},
		"links": []Link{
			{Href: u + "?f=json", Rel: "self", Type: mediaJSON, Title: info.Title},
			{Href: u + "?f=html", Rel: "alternate", Type: mediaHTML, Title: info.Title + " as HTML"},
			{Href: u + "/items?f=json", Rel: "items", Type: mediaGeoJSON, Title: info.Title + " as GeoJSON"},
			{Href: u + "/items?f=html", Rel: "items", Type: mediaHTML, Title: info.Title + " as HTML"},
			{Href: u + "/schema", Rel: "describedby", Type: mediaSchema, Title: "JSON Schema of the features"},
			// the same: relation types are case-insensitive (RFC 8288), but
			// GDAL's OAPIF driver (3.6) looks for this spelling only
			{Href: u + "/schema", Rel: "describedBy", Type: mediaSchema, Title: "JSON Schema of the features"},
		},
	}
	extent := map[string]any{}
	if info.Populated {
		bb := info.Bound
		extent["spatial"] = map[string]any{"bbox": [][]float64{{bb.Min[0], bb.Min[1], bb.Max[0], bb.Max[1]}}, "crs": CRS84}
	}
	if !info.TMin.IsZero() {
		extent["temporal"] = map[string]any{
			"interval": [][]string{{info.TMin.UTC().Format(time.RFC3339), info.TMax.UTC().Format(time.RFC3339)}},
			"trs":      "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
		}
	}
	if len(extent) > 0 {
		c["extent"] = extent
	}
	c["numberOfFeatures"] = info.Count
	return c
}

func (a *api) collections(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, onlyF, "f")
	if !ok {
		return
	}
	html, b := c.html, c.base
	var cols []map[string]any
	for _, info := range a.st.Collections() {
		cols = append(cols, collectionJSON(b, info))
	}
	body := map[string]any{"links": selfLinks(b+"/collections", "The collections", html, mediaJSON), "collections": cols}
	respond(w, html, "collections", "Collections", mediaJSON, body)
}

func (a *api) collection(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, onlyF, "f")
	if !ok {
		return
	}
	info, ok := a.lookup(w, r.PathValue("cid"))
	if !ok {
		return
	}
	body := collectionJSON(c.base, info)
	if c.html {
		body["links"] = selfLinks(c.base+"/collections/"+url.PathEscape(info.ID), info.Title, true, mediaJSON)
	}
	respond(w, c.html, "collection", info.Title, mediaJSON, body)
}

func (a *api) items(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, itemParams, itemParamList)
	if !ok {
		return
	}
	html, params := c.html, c.query
	info, ok := a.lookup(w, r.PathValue("cid"))
	if !ok {
		return
	}
	q, err := parseItems(params, info.Collection)
	if err != nil {
		badParam(w, err)
		return
	}
	page, err := a.st.Query(info.ID, q)
	if err != nil { // the collection exists and parseItems refuses what Query would: a bug
		fail(w, http.StatusInternalServerError, "ServerError", err.Error())
		return
	}
	u := c.base + "/collections/" + url.PathEscape(info.ID) + "/items"
	link := func(rel, typ, f string, offset int, title string) Link {
		v := url.Values{}
		for k, vs := range params {
			v[k] = vs
		}
		v.Set("f", f)
		if offset > 0 {
			v.Set("offset", fmt.Sprint(offset))
		} else {
			v.Del("offset")
		}
		v.Set("limit", fmt.Sprint(q.Limit))
		return Link{Href: u + "?" + v.Encode(), Rel: rel, Type: typ, Title: title}
	}
	self, alt := link("self", mediaGeoJSON, "json", q.Offset, "This page as GeoJSON"), link("alternate", mediaHTML, "html", q.Offset, "This page as HTML")
	if html {
		self, alt = link("self", mediaHTML, "html", q.Offset, "This page as HTML"), link("alternate", mediaGeoJSON, "json", q.Offset, "This page as GeoJSON")
	}
	links := []Link{self, alt}
	f, typ := "json", mediaGeoJSON
	if html {
		f, typ = "html", mediaHTML
	}
	if q.Offset+len(page.Features) < page.Matched {
		links = append(links, link("next", typ, f, q.Offset+len(page.Features), "Next page"))
	}
	if q.Offset > 0 {
		links = append(links, link("prev", typ, f, max(0, q.Offset-q.Limit), "Previous page"))
	}
	links = append(links, Link{Href: c.base + "/collections/" + url.PathEscape(info.ID) + "?f=json", Rel: "collection", Type: mediaJSON, Title: info.Title})
	feats := page.Features
	if feats == nil {
		feats = []json.RawMessage{}
	}
	body := map[string]any{
		"type": "FeatureCollection", "features": feats,
		"numberMatched": page.Matched, "numberReturned": len(page.Features),
		"timeStamp": time.Now().UTC().Format(time.RFC3339), "links": links,
	}
	if html {
		respond(w, true, "items", info.Title, mediaGeoJSON, itemsView(info, page, q, links))
		return
	}
	respond(w, false, "items", info.Title, mediaGeoJSON, body)
}

func (a *api) feature(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, onlyF, "f")
	if !ok {
		return
	}
	html := c.html
	cid, fid := r.PathValue("cid"), r.PathValue("fid")
	info, ok := a.lookup(w, cid)
	if !ok {
		return
	}
	raw, ok := a.st.Feature(cid, fid)
	if !ok {
		fail(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no feature %q in %s", fid, cid))
		return
	}
	var f map[string]any
	if err := json.Unmarshal(raw, &f); err != nil {
		fail(w, http.StatusInternalServerError, "ServerError", err.Error())
		return
	}
	u := c.base + "/collections/" + url.PathEscape(cid)
	links := append(selfLinks(u+"/items/"+url.PathEscape(fid), "This feature", html, mediaGeoJSON),
		Link{Href: u + "?f=json", Rel: "collection", Type: mediaJSON, Title: info.Title})
	f["links"] = links
	respond(w, html, "feature", fid, mediaGeoJSON, f)
}

//go:embed openapi.json
var openapiDoc []byte

func (a *api) openapi(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, onlyF, "f")
	if !ok {
		return
	}
	// the URL goes in as a JSON string, quoted and escaped, whatever it holds
	u, _ := json.Marshal(c.base)
	w.Header().Set("Content-Type", mediaOpenAPI)
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Write(bytes.Replace(openapiDoc, []byte(`"SERVER_URL"`), u, 1))
}

// escapeID percent-encodes a feature id for a path segment.
func escapeID(id string) string { return url.PathEscape(id) }

// schema is the JSON Schema of a collection's features.
func (a *api) schema(w http.ResponseWriter, r *http.Request) {
	c, ok := begin(w, r, onlyF, "f")
	if !ok {
		return
	}
	info, ok := a.lookup(w, r.PathValue("cid"))
	if !ok {
		return
	}
	geom := "Polygon"
	if info.ID == Sites.ID {
		geom = "Point"
	}
	writeJSON(w, http.StatusOK, mediaSchema, map[string]any{
		"$schema": "https://json-schema.org/draft/2019-09/schema",
		"$id":     c.base + "/collections/" + url.PathEscape(info.ID) + "/schema",
		"title":   info.Title, "type": "object", "required": []string{"type", "id", "geometry", "properties"},
		"properties": map[string]any{
			"type":       map[string]any{"type": "string", "enum": []string{"Feature"}},
			"id":         map[string]any{"type": "string"},
			"geometry":   map[string]any{"type": "object", "description": "a GeoJSON " + geom + " in CRS84"},
			"properties": map[string]any{"type": "object", "properties": info.Properties},
		},
	})
}
