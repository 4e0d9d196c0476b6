package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
	"github.com/paulmach/orb"
)

// Ledger remembers, for every feed process sharing it, which scenes were
// queued: a restart resumes from it. (Two feeds racing on one scene both
// queue it; the queue's message id keeps one.)
type Ledger interface {
	Seen(ctx context.Context, sceneID string) (bool, error)
	// Record notes the scene as queued (again is fine).
	Record(ctx context.Context, sceneID string) error
}

// Queue hands a scene to the workers; duplicate says the queue already
// had it (its id is the message id).
type Queue func(ctx context.Context, sc *mm.Scene) (duplicate bool, err error)

// Config is what a feed follows.
type Config struct {
	Endpoints   []Endpoint
	Collections map[mm.Sensor][]string // the collections holding each sensor's Items
	Sensors     []mm.Sensor            // what the model needs
	BBox        []float64              // minlon, minlat, maxlon, maxlat; none: anywhere
	// AOI, when set, limits the search to its bounds, drops primary Items
	// that do not touch it, and becomes each scene's AOI (chips outside it
	// are not scored).
	AOI       orb.Geometry
	Datetime  string  // the primary sensor's time window (RFC 3339 interval; "": the 30 days before each pass)
	MaxCloud  float64 // Sentinel-2 cloud cover limit, percent (0: none)
	Pairing   Pairing
	MosaicDir string // where mosaic VRTs are written (must be readable by the workers)
	HrefQuery string // appended to every asset href: a token or a signature ("" none)
	// Allow is where the hrefs a mosaic names may point (ingest.Allowed;
	// none: anywhere). GDAL opens each to write the mosaic, so a catalogue
	// could otherwise make the feed read any file or URL.
	Allow []string
	Limit int // Items per page
}

// Stats count one pass.
type Stats struct {
	Items    int            // Items read (all sensors)
	Bad      int            // Items skipped as unreadable
	Queued   int            // scenes queued by this pass
	Already  int            // scenes found in the ledger
	Unpaired map[string]int // primary Items not paired, by reason
}

// Feed runs passes over its endpoints.
type Feed struct {
	cfg    Config
	client *Client
	ledger Ledger
	queue  Queue
	log    *slog.Logger
}

// New makes a feed.
func New(cfg Config, client *Client, ledger Ledger, queue Queue, log *slog.Logger) *Feed {
	return &Feed{cfg: cfg, client: client, ledger: ledger, queue: queue, log: log}
}

// primary is the sensor whose Items become scenes: NAIP when the model
// uses it, else Sentinel-2, else Sentinel-1.
func primary(sensors []mm.Sensor) mm.Sensor {
	for _, s := range []mm.Sensor{mm.NAIP, mm.Sentinel2, mm.Sentinel1} {
		for _, n := range sensors {
			if n == s {
				return s
			}
		}
	}
	return ""
}

// Pass searches every endpoint once, pairs and queues what is new. With
// dry set, scenes go to dry instead of the ledger and the queue (no
// mosaic is written). One bad Item is counted and skipped; an endpoint
// that fails ends the pass with its error, after the others were read.
func (f *Feed) Pass(ctx context.Context, dry func(*mm.Scene)) (Stats, error) {
	st := Stats{Unpaired: map[string]int{}}
	prim := primary(f.cfg.Sensors)
	if prim == "" {
		return st, errors.New("feed: the model needs no sensor the feed knows (naip, s2, s1)")
	}
	items := map[mm.Sensor]map[string]ingest.Item{}
	var errs []error
	for _, s := range f.cfg.Sensors {
		items[s] = map[string]ingest.Item{}
		colls := f.cfg.Collections[s]
		if len(colls) == 0 {
			return st, fmt.Errorf("feed: no collection configured for %s", s)
		}
		dt := f.cfg.Datetime
		if dt == "" {
			dt = time.Now().Add(-30*24*time.Hour).UTC().Format(time.RFC3339) + "/.."
		}
		if s != prim {
			dt = widen(dt, f.cfg.Pairing.window(s))
		}
		search := Search{Collections: colls, BBox: f.cfg.BBox, Datetime: dt, Limit: f.cfg.Limit}
		if f.cfg.AOI != nil {
			b := f.cfg.AOI.Bound()
			search.BBox = []float64{b.Min[0], b.Min[1], b.Max[0], b.Max[1]}
		}
		if s == mm.Sentinel2 {
			search.MaxCloud = f.cfg.MaxCloud
		}
		for _, ep := range f.cfg.Endpoints {
			_, err := f.client.Search(ctx, ep, search, func(raw json.RawMessage) error {
				st.Items++
				it, err := ingest.ParseItem(raw)
				if err == nil && it.Sensor != s {
					err = fmt.Errorf("STAC Item %s: a %s Item in a search for %s", it.ID, it.Sensor, s)
				}
				if err != nil {
					st.Bad++
					f.log.Warn("feed: Item skipped", "endpoint", ep.URL, "err", err)
					return nil
				}
				items[s][it.ID] = it
				return nil
			})
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	if len(errs) > 0 {
		// pairing on part of the candidates could pick a worse Item for
		// good (the ledger keeps it): nothing is queued this pass
		return st, errors.Join(errs...)
	}
	ids := make([]string, 0, len(items[prim]))
	for id, it := range items[prim] {
		if f.cfg.AOI != nil && !touches(it.Footprint, f.cfg.AOI) {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p := items[prim][id]
		if dry == nil {
			seen, err := f.ledger.Seen(ctx, p.SceneID)
			if err != nil {
				return st, fmt.Errorf("feed: ledger: %w", err)
			}
			if seen {
				st.Already++
				continue
			}
		}
		chosen := map[mm.Sensor][]ingest.Item{prim: {p}}
		reason := ""
		for _, s := range f.cfg.Sensors {
			if s == prim {
				continue
			}
			cands := make([]ingest.Item, 0, len(items[s]))
			for _, it := range items[s] {
				cands = append(cands, it)
			}
			sel, why := choose(p, cands, s, f.cfg.Pairing)
			if why != "" {
				reason = string(s) + "_" + why
				break
			}
			chosen[s] = sel
		}
		if reason != "" {
			st.Unpaired[reason]++
			f.log.Info("feed: not paired", "item", p.ID, "reason", reason)
			continue
		}
		sc, mosaics, reason := f.scene(p, chosen)
		if reason != "" {
			st.Unpaired[reason]++
			f.log.Info("feed: not paired", "item", p.ID, "reason", reason)
			continue
		}
		if dry != nil {
			dry(sc)
			continue
		}
		// queue first, then record: a feed dying in between queues the
		// scene again next time, and the message id makes that a no-op
		if err := f.writeMosaics(mosaics); err != nil {
			if mm.IsPermanent(err) { // an href refused: this scene only, not the pass
				st.Unpaired["mosaic_refused"]++
				f.log.Warn("feed: mosaic refused", "item", p.ID, "scene", sc.ID, "err", err)
				continue
			}
			return st, fmt.Errorf("feed: mosaic for %s: %w", sc.ID, err)
		}
		dup, err := f.queue(ctx, sc)
		if err != nil {
			return st, fmt.Errorf("feed: queue %s: %w", sc.ID, err)
		}
		if err := f.ledger.Record(ctx, sc.ID); err != nil {
			return st, fmt.Errorf("feed: ledger: %w", err)
		}
		if dup {
			st.Already++
			continue
		}
		st.Queued++
		f.log.Info("feed: queued", "scene", sc.ID, "items", itemIDs(chosen))
	}
	return st, nil
}

func itemIDs(chosen map[mm.Sensor][]ingest.Item) map[string][]string {
	out := map[string][]string{}
	for s, its := range chosen {
		for _, it := range its {
			out[string(s)] = append(out[string(s)], it.ID)
		}
	}
	return out
}

// mosaic is a VRT to write before its scene is queued.
type mosaic struct {
	path  string
	hrefs []string
}

// scene assembles a scene: one Item's asset as it is, several Items' as
// mosaics (one VRT per band file), best Item on top. unpaired is why the
// Items cannot make one scene ("" when they can): "<sensor>_band_missing"
// when they do not all have the same bands, "<sensor>_radiometry_differs"
// when their values are not on one scale (Sentinel-2 DNs with and without
// the +1000 of baseline 04.00, Sentinel-1 in other units),
// "s1_uncalibrated" for Sentinel-1 GRD numbers.
func (f *Feed) scene(p ingest.Item, chosen map[mm.Sensor][]ingest.Item) (sc *mm.Scene, ms []mosaic, unpaired string) {
	sc = &mm.Scene{ID: p.SceneID, Acquired: p.Acquired, AOI: f.cfg.AOI, Assets: map[mm.Sensor]mm.Asset{}}
	for s, its := range chosen {
		if s == mm.Sentinel1 && its[0].Asset.BackscatterUnits() == mm.S1DN {
			return nil, nil, string(s) + "_uncalibrated" // GRD numbers: ingest refuses them
		}
		if len(its) == 1 {
			sc.Assets[s] = f.signed(its[0].Asset)
			continue
		}
		dir := filepath.Join(f.cfg.MosaicDir, sc.ID)
		first := its[0].Asset
		a, same := sameRadiometry(its)
		if !same {
			return nil, nil, string(s) + "_radiometry_differs"
		}
		a.Bands = first.Bands
		if first.Href != "" {
			m := mosaic{path: filepath.Join(dir, string(s)+".vrt")}
			for _, it := range its {
				m.hrefs = append(m.hrefs, f.sign(it.Asset.Href))
			}
			a.Href = m.path
			ms = append(ms, m)
		} else {
			a.Hrefs = map[string]string{}
			for band := range first.Hrefs {
				m := mosaic{path: filepath.Join(dir, string(s)+"-"+band+".vrt")}
				for _, it := range its {
					if h := it.Asset.Hrefs[band]; h != "" {
						m.hrefs = append(m.hrefs, f.sign(h))
					}
				}
				if len(m.hrefs) != len(its) {
					return nil, nil, string(s) + "_band_missing" // a band some Items lack: no mosaic of it
				}
				a.Hrefs[band] = m.path
				ms = append(ms, m)
			}
		}
		sc.Assets[s] = a
	}
	return sc, ms, ""
}

// writeMosaics writes a scene's mosaics, all or none.
func (f *Feed) writeMosaics(ms []mosaic) error {
	for i, m := range ms {
		if err := ingest.BuildMosaic(m.path, m.hrefs, f.cfg.Allow); err != nil {
			for _, done := range ms[:i] {
				os.Remove(done.path)
			}
			return err
		}
	}
	return nil
}

// sameRadiometry reports whether the Items' values are on one scale (an
// Item that does not say its Sentinel-2 offset counts as the offset it is
// assumed to have), and returns an asset (no hrefs) that says which: the
// Sentinel-2 BOA offset when every Item says it (the baseline too when
// they share it), the Sentinel-1 units.
func sameRadiometry(its []ingest.Item) (mm.Asset, bool) {
	first := its[0].Asset
	off, known := first.BOAOffset()
	out := mm.Asset{ProcessingBaseline: first.ProcessingBaseline, Units: first.Units}
	for _, it := range its[1:] {
		o, k := it.Asset.BOAOffset()
		if o != off || it.Asset.BackscatterUnits() != first.BackscatterUnits() {
			return mm.Asset{}, false
		}
		known = known && k
		if it.Asset.ProcessingBaseline != out.ProcessingBaseline {
			out.ProcessingBaseline = ""
		}
	}
	if known {
		out.BOAAddOffset = &off
	} else {
		out.ProcessingBaseline = "" // a mosaic not all of whose Items say: the scene says nothing
	}
	return out, true
}

// signed applies HrefQuery to an asset's hrefs.
func (f *Feed) signed(a mm.Asset) mm.Asset {
	out := a
	out.Href = f.sign(a.Href)
	out.Hrefs = nil
	if a.Hrefs != nil {
		out.Hrefs = map[string]string{}
		for k, v := range a.Hrefs {
			out.Hrefs[k] = f.sign(v)
		}
	}
	return out
}

func (f *Feed) sign(href string) string {
	if f.cfg.HrefQuery == "" || href == "" || !strings.Contains(href, "://") {
		return href
	}
	u, err := url.Parse(href)
	if err != nil {
		return href
	}
	if u.RawQuery == "" {
		u.RawQuery = f.cfg.HrefQuery
	} else {
		u.RawQuery += "&" + f.cfg.HrefQuery
	}
	return u.String()
}

// widen extends a datetime interval by w at both closed ends.
func widen(dt string, w time.Duration) string {
	a, b, ok := strings.Cut(dt, "/")
	if !ok {
		if t, err := time.Parse(time.RFC3339, dt); err == nil {
			return t.Add(-w).UTC().Format(time.RFC3339) + "/" + t.Add(w).UTC().Format(time.RFC3339)
		}
		return dt
	}
	if t, err := time.Parse(time.RFC3339, a); err == nil {
		a = t.Add(-w).UTC().Format(time.RFC3339)
	}
	if t, err := time.Parse(time.RFC3339, b); err == nil {
		b = t.Add(w).UTC().Format(time.RFC3339)
	}
	return a + "/" + b
}

// touches reports whether a footprint and an area of interest meet,
// judged on points spread over each (enough for footprints and AOIs of
// a few vertices) and on their bounds.
func touches(footprint, aoi orb.Geometry) bool {
	if !footprint.Bound().Intersects(aoi.Bound()) {
		return false
	}
	for _, p := range samples(footprint) {
		if contains(aoi, p) {
			return true
		}
	}
	for _, p := range samples(aoi) {
		if contains(footprint, p) {
			return true
		}
	}
	return false
}
