package oapi

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"sort"
)

// The HTML pages: plain, no scripts, links between the resources.
var pages = template.Must(template.New("page").Funcs(template.FuncMap{
	"json": func(v any) string { b, _ := json.MarshalIndent(v, "", "  "); return string(b) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} - methanemap</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;max-width:70em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}pre{background:#f5f5f5;padding:.5em;overflow:auto}
nav a{margin-right:1em}</style></head><body>
<nav><a href="/?f=html">Home</a><a href="/collections?f=html">Collections</a><a href="/map">Map</a><a href="/api">API</a></nav>
<h1>{{.Title}}</h1>
{{- with .Body}}{{if eq $.Kind "items"}}
<p>{{.Matched}} features match; {{if .Rows}}showing {{.From}}–{{.To}}{{else}}none on this page{{end}}.</p>
<table><tr><th>id</th><th>class</th><th>score</th><th>scenes</th><th>centre (lon, lat)</th></tr>
{{range .Rows}}<tr><td><a href="{{.Href}}">{{.ID}}</a></td><td>{{.Class}}</td><td>{{printf "%.3f" .Score}}</td><td>{{.Scenes}}</td><td>{{printf "%.5f, %.5f" .Lon .Lat}}</td></tr>
{{end}}</table>
{{else}}<pre>{{json .}}</pre>{{end}}{{end}}
<h2>Links</h2><ul>{{range .Links}}<li><a href="{{.Href}}">{{if .Title}}{{.Title}}{{else}}{{.Rel}}{{end}}</a> ({{.Rel}}{{if .Type}}, {{.Type}}{{end}})</li>{{end}}</ul>
</body></html>`))

type page struct {
	Kind, Title string
	Body        any
	Links       []Link
}

// renderHTML draws body; its "links" (if any) are listed at the bottom.
func renderHTML(w http.ResponseWriter, kind, title string, body any) {
	p := page{Kind: kind, Title: title, Body: body}
	switch b := body.(type) {
	case map[string]any:
		if l, ok := b["links"].([]Link); ok {
			p.Links = l
			rest := map[string]any{}
			for k, v := range b {
				if k != "links" {
					rest[k] = v
				}
			}
			p.Body = rest
		}
	case itemsPage:
		p.Links = b.Links
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pages.Execute(w, p); err != nil {
		fmt.Fprintf(w, "<p>error: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

type itemsPage struct {
	Matched, From, To int
	Rows              []itemRow
	Links             []Link
}

type itemRow struct {
	ID, Href, Class, Scenes string
	Score, Lon, Lat         float64
}

func itemsView(info Info, p Page, q Query, links []Link) itemsPage {
	// parseItems bounds the offset by MaxOffset, so these sums cannot wrap
	v := itemsPage{Matched: p.Matched, From: q.Offset + 1, To: q.Offset + len(p.Features), Links: links}
	for _, raw := range p.Features {
		var f struct {
			ID       string `json:"id"`
			Geometry struct {
				Type        string          `json:"type"`
				Coordinates json.RawMessage `json:"coordinates"`
			} `json:"geometry"`
			Properties map[string]any `json:"properties"`
		}
		json.Unmarshal(raw, &f)
		row := itemRow{ID: f.ID, Href: "items/" + escapeID(f.ID) + "?f=html"}
		row.Class, _ = f.Properties["class"].(string)
		row.Score, _ = f.Properties[info.ScoreProperty].(float64)
		if s, ok := f.Properties["scene_id"].(string); ok {
			row.Scenes = s
		} else if ss, ok := f.Properties["scene_ids"].([]any); ok {
			names := make([]string, 0, len(ss))
			for _, s := range ss {
				names = append(names, fmt.Sprint(s))
			}
			sort.Strings(names)
			row.Scenes = fmt.Sprint(names)
		}
		row.Lon, row.Lat = centre(f.Geometry.Type, f.Geometry.Coordinates)
		v.Rows = append(v.Rows, row)
	}
	return v
}

// centre of a Point, or of a Polygon's exterior ring's bounds.
func centre(typ string, coords json.RawMessage) (float64, float64) {
	switch typ {
	case "Point":
		var p [2]float64
		json.Unmarshal(coords, &p)
		return p[0], p[1]
	case "Polygon":
		var rings [][][2]float64
		json.Unmarshal(coords, &rings)
		if len(rings) == 0 || len(rings[0]) == 0 {
			return 0, 0
		}
		minx, miny, maxx, maxy := rings[0][0][0], rings[0][0][1], rings[0][0][0], rings[0][0][1]
		for _, p := range rings[0] {
			minx, maxx = min(minx, p[0]), max(maxx, p[0])
			miny, maxy = min(miny, p[1]), max(maxy, p[1])
		}
		return (minx + maxx) / 2, (miny + maxy) / 2
	}
	return 0, 0
}
