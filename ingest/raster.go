package ingest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/airbusgeo/godal"
	mm "github.com/methanemap/methanemap"
)

// MaxRasterSide is the largest width or height accepted. A header claiming
// more is refused before any pixel is read (a 0.3 m NAIP quad is ~25,000 px).
const MaxRasterSide = 1 << 20

// MaxBlockBytes is the largest block (tile or strip, all bands) a raster
// may have: GDAL reads and caches whole blocks.
const MaxBlockBytes = 256 << 20

// Raster is one opened file of one sensor. It belongs to one goroutine.
type Raster struct {
	Sensor   mm.Sensor
	Field    string   // the scene field it came from, e.g. "assets.s2.hrefs.B04"
	Href     string   // as the scene gave it
	Path     string   // as GDAL opened it
	Bands    []string // canonical band name of each band, in file order
	Width    int
	Height   int
	DataType string
	// GeoTransform is GDAL's affine transform from pixel to CRS coordinates.
	GeoTransform [6]float64
	EPSG         int  // 0 when GDAL cannot identify one
	Projected    bool // false for geographic CRSs such as EPSG:4326
	HasNodata    bool
	Nodata       float64

	wkt    string
	remote bool
	masked bool // a band has a mask band of its own (not nodata, not alpha)
	// groundRes is the pixel size in metres at the raster's centre
	groundRes float64
	ds        *godal.Dataset
	vrt       string // a VRT file written for a band group, removed on close
	// source is the name a VRT of ours gives this raster by (confined:
	// one that cannot become another format, see vetter); "": Path
	source string
	temps  []string   // files written for it (frozen VRTs), removed on close
	files  []*os.File // descriptors GDAL reads it and its sources by, closed on close
	warps  *warpCache // prepared warps (positions.go)
}

// Source holds the opened rasters of one scene.
type Source struct {
	Scene   *mm.Scene
	Rasters []*Raster
}

// Options tune Open.
type Options struct {
	// Sensors limits which sensors are opened (default: all the scene has).
	Sensors []mm.Sensor
	// Allow, when not empty, is the only places hrefs may point to: local
	// directories (a path must lie under one) and URL prefixes (a URL must
	// start with one). Anything else fails permanently before it is read.
	// Scene messages from a network get this; a local user's files need not.
	Allow []string
	// AnyResolution accepts rasters whose pixel size is outside their
	// sensor's plausible range (mm.Sensor.PlausibleResolution).
	AnyResolution bool
}

// Open opens and checks every raster of the scene (or of opts.Sensors).
// On error nothing stays open. The error names the scene field and href at
// fault and is marked permanent unless retrying may help.
func Open(ctx context.Context, sc *mm.Scene, opts Options) (*Source, error) {
	register()
	src := &Source{Scene: sc}
	sensors := opts.Sensors
	if len(sensors) == 0 {
		sensors = sc.Sensors()
	}
	for _, sn := range sensors {
		a, ok := sc.Assets[sn]
		if !ok {
			src.Close()
			return nil, mm.Permanentf("assets.%s: the scene has no %s imagery", sn, sn)
		}
		if err := src.openAsset(ctx, sn, a, opts.Allow); err != nil {
			src.Close()
			return nil, err
		}
	}
	for _, r := range src.Rasters {
		if err := r.checkResolution(opts.AnyResolution); err != nil {
			src.Close()
			return nil, err
		}
	}
	return src, nil
}

func (s *Source) openAsset(ctx context.Context, sn mm.Sensor, a mm.Asset, allow []string) error {
	field := "assets." + string(sn)
	if sn == mm.Sentinel1 && a.BackscatterUnits() == mm.S1DN {
		return mm.Permanentf("%s.units: dn: uncalibrated GRD digital numbers in radar geometry are no backscatter to score; "+
			"give calibrated, terrain-corrected values (dB, power or amplitude), such as Planetary Computer's sentinel-1-rtc", field)
	}
	if a.Href != "" {
		r, err := openRaster(ctx, sn, field+".href", a.Href, allow)
		if err != nil {
			return err
		}
		s.Rasters = append(s.Rasters, r)
		return r.assignBands(a.Bands)
	}
	var opened []*Raster
	defer func() { // on error, what is not in s.Rasters yet
		for _, r := range opened {
			r.close()
		}
	}()
	for _, band := range a.BandNames() {
		r, err := openRaster(ctx, sn, field+".hrefs."+band, a.Hrefs[band], allow)
		if err != nil {
			return err
		}
		opened = append(opened, r)
		if err := r.assignBands([]string{band}); err != nil {
			return err
		}
	}
	grouped, err := groupBands(opened)
	if err != nil {
		return err
	}
	opened = nil
	s.Rasters = append(s.Rasters, grouped...)
	return nil
}

// groupBands reads one-band files that share a grid (size, geotransform,
// CRS, data type, nodata) as one multi-band VRT, so that a chip takes one
// warp per group (Sentinel-2's 10, 20 and 60 m bands) instead of one per
// band. Class bands (SCL) stay alone: they are resampled differently.
func groupBands(rs []*Raster) ([]*Raster, error) {
	type key struct {
		w, h     int
		gt       [6]float64
		wkt, dt  string
		hasND    bool
		nd       float64
		isRemote bool
	}
	var order []key
	groups := map[key][]*Raster{}
	var out []*Raster
	for _, r := range rs {
		if len(r.Bands) != 1 || mm.IsClassBand(r.Sensor, r.Bands[0]) {
			out = append(out, r)
			continue
		}
		k := key{r.Width, r.Height, r.GeoTransform, r.wkt, r.DataType, r.HasNodata, r.Nodata, r.remote}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	for _, k := range order {
		g := groups[k]
		if len(g) == 1 {
			out = append(out, g[0])
			continue
		}
		r, err := vrtOf(g)
		if err != nil {
			for _, m := range out {
				m.close()
			}
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// vrtOf writes a VRT stacking the group's files as bands and opens it in
// their place (their datasets are closed).
func vrtOf(g []*Raster) (*Raster, error) {
	dir, err := tempDir()
	if err != nil {
		return nil, fmt.Errorf("ingest: temporary directory: %w", err)
	}
	f, err := os.CreateTemp(dir, "bands-*.vrt")
	if err != nil {
		return nil, err
	}
	f.Close()
	paths := make([]string, len(g))
	fields := make([]string, len(g))
	hrefs := make([]string, len(g))
	for i, m := range g {
		paths[i], fields[i], hrefs[i] = m.Path, m.Field, m.Href
		if m.source != "" {
			paths[i] = m.source
		}
	}
	ec := &errCollector{remote: g[0].remote}
	// the files share one grid, so each band's source covers the whole
	// band: a simple source with the nodata on the band reads the same
	// values as the complex source gdalbuildvrt makes for a source with
	// nodata, without its per-pixel nodata test in double precision
	args := []string{"-separate"}
	if g[0].HasNodata {
		args = append(args, "-srcnodata", "None", "-vrtnodata", strconv.FormatFloat(g[0].Nodata, 'g', -1, 64))
	}
	ds, err := godal.BuildVRT(f.Name(), paths, args, godal.ErrLogger(ec.handler()))
	if err == nil {
		err = ds.Close() // writes the file
	}
	if err == nil { // and opened again, as the file other tools can read too
		ds, err = godal.Open(f.Name(), godal.RasterOnly(), godal.ErrLogger(ec.handler()))
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, ec.wrap(fmt.Sprintf("ingest: band group %v", fields), err)
	}
	r := *g[0]
	r.Field = strings.Join(fields, ", ")
	r.Href = strings.Join(hrefs, ", ")
	r.Path, r.vrt, r.ds = f.Name(), f.Name(), ds
	r.Bands = nil
	r.temps, r.files = nil, nil
	for _, m := range g {
		r.Bands = append(r.Bands, m.Bands[0])
		r.temps = append(r.temps, m.temps...) // the group's VRT names them
		r.files = append(r.files, m.files...)
		m.temps, m.files = nil, nil
		m.close()
	}
	return &r, nil
}

// assignBands names the raster's bands from the scene, or from the sensor's
// defaults, and checks the count.
func (r *Raster) assignBands(names []string) error {
	n := len(r.Bands)
	switch {
	case len(names) == n:
		copy(r.Bands, names)
	case len(names) == 0:
		def, ok := r.Sensor.DefaultBands(n)
		if !ok {
			return mm.Permanentf("%s: %s: wrong band count: the file has %d bands and %s has no default order for that; list them in assets.%s.bands", r.Field, describe(r.Href), n, r.Sensor, r.Sensor)
		}
		copy(r.Bands, def)
	default:
		return mm.Permanentf("%s: %s: wrong band count: the scene names %d band(s) %v, the file has %d", r.Field, describe(r.Href), len(names), names, n)
	}
	for i, b := range r.Bands {
		if err := checkDataType(r.Sensor, b, r.DataType); err != nil {
			return mm.Permanentf("%s: %s: band %d (%s:%s): %v", r.Field, describe(r.Href), i+1, r.Sensor, b, err)
		}
	}
	return nil
}

// allowedTypes lists the GDAL data types each sensor's products come in.
var allowedTypes = map[mm.Sensor][]string{
	mm.NAIP:      {"Byte", "UInt16"},
	mm.Sentinel2: {"UInt16", "Int16", "Float32", "Float64"},
	mm.Sentinel1: {"Float32", "Float64", "UInt16", "Int16"},
}

func checkDataType(sn mm.Sensor, band, dtype string) error {
	allowed := allowedTypes[sn]
	if mm.IsClassBand(sn, band) {
		allowed = []string{"Byte", "UInt16", "Int16"}
	}
	if !slices.Contains(allowed, dtype) {
		return fmt.Errorf("data type %s is not one %s can have (want %v)", dtype, sn, allowed)
	}
	return nil
}

// openRaster opens one file. With an allow list, what GDAL will open on
// its behalf is checked first (confine.go) and only the driver of the
// file's format may open it.
func openRaster(ctx context.Context, sn mm.Sensor, field, href string, allow []string) (*Raster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path, err := GDALPath(href)
	if err != nil {
		return nil, fieldErr(field, href, err)
	}
	r := &Raster{Sensor: sn, Field: field, Href: href, Path: path, remote: isRemote(path)}
	opts := []godal.OpenOption{godal.RasterOnly()}
	if len(allow) > 0 { // before anything touches the path: whether it exists outside is not told
		v, err := vetRaster(href, allow, true)
		if err != nil {
			return nil, fieldErr(field, href, err)
		}
		r.Path, r.source, r.temps, r.files = v.open, v.source, v.temps, v.files
		opts = append(opts, godal.Drivers(v.driver))
	}
	if !r.remote && !hasVSIPrefix(path) {
		if fi, err := os.Stat(path); err != nil {
			r.close()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, mm.Permanentf("%s: %s: no such file", field, describe(href))
			}
			return nil, mm.Permanentf("%s: %w", field, err)
		} else if fi.IsDir() {
			r.close()
			return nil, mm.Permanentf("%s: %s: is a directory, not a raster", field, describe(href))
		}
	}
	ec := &errCollector{remote: r.remote}
	ds, err := godal.Open(r.Path, append(opts, godal.ErrLogger(ec.handler()))...)
	if err != nil {
		r.close()
		return nil, ec.wrap(field+": "+describe(href)+": not a readable raster", err)
	}
	r.ds = ds
	if err := r.inspect(); err != nil {
		r.close()
		return nil, mm.Permanentf("%s: %s: %w", field, describe(href), err)
	}
	return r, nil
}

func hasVSIPrefix(p string) bool { return len(p) >= 4 && p[:4] == "/vsi" }

// inspect reads the raster's structure and georeferencing and checks them.
func (r *Raster) inspect() error {
	st := r.ds.Structure()
	if st.NBands < 1 {
		return errors.New("has no raster bands")
	}
	if st.SizeX < 1 || st.SizeY < 1 || st.SizeX > MaxRasterSide || st.SizeY > MaxRasterSide {
		return fmt.Errorf("absurd dimensions %dx%d (limit %d per side)", st.SizeX, st.SizeY, MaxRasterSide)
	}
	r.Width, r.Height = st.SizeX, st.SizeY
	r.DataType = st.DataType.String()
	r.Bands = make([]string, st.NBands)
	bands := r.ds.Bands()
	for i, b := range bands {
		bs := b.Structure()
		if dt := bs.DataType.String(); dt != r.DataType {
			return fmt.Errorf("band %d is %s but band 1 is %s: mixed data types", i+1, dt, r.DataType)
		}
		// GDAL reads and caches whole blocks: a 4 MB file of 16384 px
		// tiles made 1 GB of Float32 per tile read
		if n := float64(bs.BlockSizeX) * float64(bs.BlockSizeY) * float64(bs.DataType.Size()) * float64(st.NBands); n > MaxBlockBytes {
			return fmt.Errorf("blocks of %dx%d px (%.0f MB for its %d bands) are over the %d MB one read may take: retile it (gdal_translate -co TILED=YES)",
				bs.BlockSizeX, bs.BlockSizeY, n/(1<<20), st.NBands, MaxBlockBytes>>20)
		}
		r.masked = r.masked || maskedBeyondNodata(b.MaskFlags())
	}
	r.Nodata, r.HasNodata = bands[0].NoData()
	ec := &errCollector{}
	gt, err := r.ds.GeoTransform(godal.ErrLogger(ec.handler()))
	if err != nil || gt == [6]float64{0, 1, 0, 0, 0, 1} {
		return errors.New("no georeferencing (no geotransform): not usable as map data")
	}
	for _, v := range gt {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("geotransform %v is not finite", gt)
		}
	}
	if gt[1] == 0 || gt[5] == 0 {
		return fmt.Errorf("degenerate geotransform %v", gt)
	}
	r.GeoTransform = gt
	r.wkt = r.ds.Projection()
	if r.wkt == "" {
		return errors.New("no georeferencing (no coordinate reference system)")
	}
	sr, err := godal.NewSpatialRefFromWKT(r.wkt)
	if err != nil {
		return fmt.Errorf("unreadable coordinate reference system: %w", err)
	}
	defer sr.Close()
	r.Projected = sr.Projected()
	_ = sr.AutoIdentifyEPSG()
	if sr.AuthorityName("") == "EPSG" {
		r.EPSG, _ = strconv.Atoi(sr.AuthorityCode(""))
	}
	return nil
}

// Band returns the raster holding the sensor's band and the band's 1-based
// index in it.
func (s *Source) Band(sn mm.Sensor, band string) (*Raster, int, bool) {
	for _, r := range s.Rasters {
		if r.Sensor != sn {
			continue
		}
		if i := slices.Index(r.Bands, band); i >= 0 {
			return r, i + 1, true
		}
	}
	return nil, 0, false
}

// SensorRasters returns the rasters of one sensor.
func (s *Source) SensorRasters(sn mm.Sensor) []*Raster {
	var out []*Raster
	for _, r := range s.Rasters {
		if r.Sensor == sn {
			out = append(out, r)
		}
	}
	return out
}

// Close closes every raster and returns the first error.
func (s *Source) Close() error {
	var first error
	for _, r := range s.Rasters {
		if err := r.close(); err != nil && first == nil {
			first = err
		}
	}
	s.Rasters = nil
	return first
}

func (r *Raster) close() error {
	r.freeWarps()
	if r.vrt != "" {
		defer os.Remove(r.vrt)
		r.vrt = ""
	}
	for _, p := range r.temps {
		defer os.Remove(p)
	}
	for _, f := range r.files {
		defer f.Close() // after the dataset: GDAL reads by them
	}
	r.temps, r.files = nil, nil
	if r.ds == nil {
		return nil
	}
	ec := &errCollector{}
	err := r.ds.Close(godal.ErrLogger(ec.handler()))
	r.ds = nil
	if err != nil {
		return fmt.Errorf("ingest: close %s: %w", describe(r.Href), err)
	}
	return nil
}

// PixelSize returns the raster's pixel width and height in its own CRS units.
func (r *Raster) PixelSize() (float64, float64) {
	gt := r.GeoTransform
	return abs(gt[1]) + abs(gt[2]), abs(gt[4]) + abs(gt[5])
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
