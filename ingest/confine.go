// How GDAL is kept inside the allow list: what a scene's raster may be,
// and what GDAL may open on its behalf.

package ingest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/airbusgeo/godal"
	mm "github.com/methanemap/methanemap"
)

// GDAL follows references from many formats: VRT sources, side-car files
// (.ovr overviews, .msk masks, .aux.xml, world files), subdatasets, URLs in
// XML (WMS, WMTS, MRF, PDS labels, GMLJP2 boxes...). A check of the href a
// scene gives is no check of what GDAL reads. The confinement, complete
// by construction rather than by a list of GDAL's tricks:
//
//  1. Side-cars are never looked for: GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR
//     makes every driver see an empty directory beside the file it opens,
//     so no .ovr, .msk, .aux.xml, .tfw or other sibling is read.
//
//  2. With an allow list, a scene's raster may only be a GeoTIFF or a VRT,
//     told by its first bytes (not its name), and it is opened with only
//     that driver (GDALOpenEx's allowed drivers), so no other driver can
//     claim it.
//
//  3. A VRT is parsed here before GDAL sees it. Every element must be one
//     a plain VRT of sourced bands uses (anything else, such as raw bands,
//     warped or pansharpened VRTs, Python pixel functions, open options, is
//     refused by name); every SourceFilename is resolved as GDAL resolves it
//     (relativeToVRT) and must pass the allow list, and must itself be a
//     GeoTIFF or a VRT that passes the same walk. Comments, CDATA and DTDs
//     are refused so GDAL's XML parser and ours cannot read two documents.
//
//  4. Python in VRTs is off (GDAL_VRT_ENABLE_PYTHON=NO) whatever the walk.
//
//  5. A process whose scenes share one allow list (serve, score --allow)
//     also sends all of GDAL's HTTP through a proxy that checks every URL,
//     redirects included (proxy.go).
//
// JPEG 2000 is not among the formats: its GMLJP2 boxes carry XML whose
// references were not audited.
func init() { confineGDAL() }

func confineGDAL() {
	for _, kv := range [][2]string{
		{"GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR"},
		{"GDAL_VRT_ENABLE_PYTHON", "NO"},
	} {
		setConfig(kv[0], kv[1])
	}
}

// Limits of what a confined open reads before GDAL does.
const (
	maxVRTBytes   = 4 << 20 // a VRT's XML
	maxVRTSources = 4096    // source reads one pixel of a raster may take, all VRTs nested counted
	maxVRTDepth   = 4       // VRTs naming VRTs
)

// vetter walks what one raster will make GDAL open, and freezes it: GDAL
// opens the sources of a VRT later, by name, with any driver, so a file
// checked as a GeoTIFF could be swapped for a VRT naming anything before
// GDAL reads it. So GDAL is given, instead of what was checked, names that
// cannot become something else: a GeoTIFF source as GTIFF_DIR:1:<path>
// (only the GTiff driver opens that), a VRT as a copy of it written here,
// its sources renamed the same way.
type vetter struct {
	al     *allowList
	pin    bool              // local files: name them by a descriptor held open (pin)
	files  []*os.File        // the descriptors held
	frozen map[string]string // GDAL path checked -> the name GDAL is given for it
	cost   map[string]int    // GDAL path checked -> the source reads one of its pixels takes
	temps  []string          // the VRT copies written
}

// vetted is what a confined open hands GDAL.
type vetted struct {
	driver string     // the one driver that may open it: GTiff or VRT
	open   string     // the name to open: the resolved (or pinned) path, or a VRT's frozen copy
	source string     // the name a VRT of ours must give it by (GTIFF_DIR:1:..., or the copy)
	temps  []string   // files to remove when the raster closes
	files  []*os.File // descriptors to close when the raster closes
}

// vetRaster checks an href and everything GDAL will open on its behalf,
// before GDAL reads any of it, and returns what GDAL must be given. With
// pin, local files are named by a descriptor held open (/proc/self/fd/N):
// a directory of the path swapped for a link after the check changes
// nothing; names that must outlive the process (a mosaic's) are paths.
func vetRaster(href string, allow []string, pin bool) (vetted, error) {
	al, err := parseAllow(allow)
	if err != nil {
		return vetted{}, mm.Permanent(err)
	}
	v := &vetter{al: al, pin: pin, frozen: map[string]string{}, cost: map[string]int{}}
	gp, err := al.resolve(href)
	if err != nil {
		return vetted{}, err
	}
	driver, frozen, _, err := v.vet(gp, 0)
	if err != nil {
		v.release()
		return vetted{}, err
	}
	out := vetted{driver: driver, open: strings.TrimPrefix(frozen, "GTIFF_DIR:1:"), source: frozen, temps: v.temps, files: v.files}
	return out, nil
}

// release removes the VRT copies written and closes the descriptors held.
func (v *vetter) release() {
	for _, p := range v.temps {
		os.Remove(p)
	}
	for _, f := range v.files {
		f.Close()
	}
	v.temps, v.files = nil, nil
}

// pinned opens a resolved local path and returns the name of the open
// descriptor, once the kernel says it is the file that was checked.
func (v *vetter) pinned(path string) (string, error) {
	if !v.pin || hasVSIPrefix(path) {
		return path, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", mm.Permanentf("%v", err)
	}
	name := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if got, err := os.Readlink(name); err != nil {
		f.Close()
		return path, nil // no /proc: the path, as checked
	} else if got != path {
		f.Close()
		return "", mm.Permanentf("%s changed while it was checked (now %s)", path, got)
	}
	v.files = append(v.files, f)
	return name, nil
}

// vet sniffs a resolved GDAL path and returns its driver, frozen name and
// cost: how many source reads one of its pixels takes (a VRT naming a VRT
// n times that names a file n times costs n², with few distinct files).
func (v *vetter) vet(path string, depth int) (driver, frozen string, cost int, err error) {
	if depth > maxVRTDepth {
		return "", "", 0, mm.Permanentf("VRTs nested more than %d deep", maxVRTDepth)
	}
	checked := path // what relative sources resolve against
	path, err = v.pinned(path)
	if err != nil {
		return "", "", 0, err
	}
	head, err := readHead(path, 512)
	if err != nil {
		return "", "", 0, err
	}
	switch {
	case isTIFF(head):
		return "GTiff", "GTIFF_DIR:1:" + path, 1, nil
	case isVRT(head):
		data, err := readHead(path, maxVRTBytes+1)
		if err != nil {
			return "", "", 0, err
		}
		if len(data) > maxVRTBytes {
			return "", "", 0, mm.Permanentf("a VRT of more than %d bytes", maxVRTBytes)
		}
		out, cost, err := v.rewriteVRT(checked, data, depth)
		if err != nil {
			return "", "", 0, err
		}
		dir, err := tempDir()
		if err != nil {
			return "", "", 0, err
		}
		f, err := os.CreateTemp(dir, "frozen-*.vrt")
		if err != nil {
			return "", "", 0, err
		}
		v.temps = append(v.temps, f.Name())
		_, err = f.Write(out)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return "VRT", f.Name(), max(cost, 1), err
	}
	return "", "", 0, mm.Permanentf("not a GeoTIFF or a VRT (with an allow list, scene rasters may only be these; JPEG 2000 and other formats are refused)")
}

func isTIFF(b []byte) bool {
	return bytes.HasPrefix(b, []byte("II*\x00")) || bytes.HasPrefix(b, []byte("MM\x00*")) ||
		bytes.HasPrefix(b, []byte("II+\x00")) || bytes.HasPrefix(b, []byte("MM\x00+"))
}

func isVRT(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	if bytes.HasPrefix(b, []byte("<?xml")) {
		if i := bytes.Index(b, []byte("?>")); i >= 0 {
			b = bytes.TrimLeft(b[i+2:], " \t\r\n")
		}
	}
	return len(b) >= 11 && strings.EqualFold(string(b[:11]), "<VRTDataset")
}

// readHead reads up to n bytes of a GDAL path: local files directly, remote
// ones through GDAL's own virtual file system (the request GDAL would make).
func readHead(path string, n int) ([]byte, error) {
	if !hasVSIPrefix(path) {
		f, err := os.Open(path)
		if err != nil {
			return nil, mm.Permanentf("%v", err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
			return nil, mm.Permanentf("%s: not a regular file", path)
		}
		return io.ReadAll(io.LimitReader(f, int64(n)))
	}
	ec := &errCollector{remote: isRemote(path)}
	f, err := godal.VSIOpen(path, godal.ErrLogger(ec.handler()))
	if err != nil {
		if why := proxyRefusal(); why != "" {
			return nil, mm.Permanentf("read %s: %s", describe(path), why)
		}
		return nil, ec.wrap("read "+describe(path), err)
	}
	defer f.Close()
	buf := make([]byte, 0, min(n, 64<<10))
	chunk := make([]byte, 64<<10)
	for len(buf) < n {
		k, err := f.Read(chunk[:min(len(chunk), n-len(buf))])
		buf = append(buf, chunk[:k]...)
		if err != nil || k == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, ec.wrap("read "+describe(path), err)
			}
			break
		}
	}
	return buf, nil
}

// vrtElements are the elements of a plain VRT of sourced (or derived, with
// built-in pixel functions) bands: all GDAL's BuildVRT and gdal_translate
// -of VRT write, and none that makes GDAL open anything but SourceFilename.
// Not KernelFilteredSource: a 4 MB kernel of 10^6 coefficients costs
// hours of CPU per scene.
var vrtElements = setOf("VRTDataset", "SRS", "GeoTransform", "GCPList", "GCP", "Metadata", "MDI", "VRTRasterBand",
	"MaskBand", "OverviewList", "Description", "UnitType", "Offset", "Scale", "CategoryNames", "Category", "ColorTable",
	"Entry", "NoDataValue", "HideNoDataValue", "ColorInterp", "Histograms", "HistItem", "HistMin", "HistMax",
	"BucketCount", "IncludeOutOfRange", "Approximate", "HistCounts", "Overview", "SourceFilename", "SourceBand",
	"SimpleSource", "ComplexSource", "AveragedSource",
	"SourceProperties", "SrcRect", "DstRect", "ScaleOffset", "ScaleRatio", "NODATA", "UseMaskBand", "LUT",
	"ColorTableComponent", "Exponent", "SrcMin", "SrcMax", "DstMin", "DstMax", "PixelFunctionType",
	"SourceTransferType", "BlockXSize", "BlockYSize")

// band subclasses that only read sources
var vrtBandClasses = setOf("", "VRTSourcedRasterBand", "VRTDerivedRasterBand")

func setOf(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[strings.ToLower(n)] = true
	}
	return m
}

// rewriteVRT checks a VRT's XML and every source it names, and returns it
// with each SourceFilename replaced by its frozen name, and its cost.
func (v *vetter) rewriteVRT(path string, data []byte, depth int) (_ []byte, cost int, _ error) {
	if bytes.Contains(data, []byte("<!")) { // comments, CDATA, DTDs
		return nil, 0, mm.Permanentf("VRT %s: comments, CDATA and DTDs are refused", describe(path))
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var out bytes.Buffer
	enc := xml.NewEncoder(&out)
	var stack []string
	var text strings.Builder
	var src *xml.StartElement // the open SourceFilename
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, mm.Permanentf("VRT %s: %v", describe(path), err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if n := len(stack); n > 0 && (stack[n-1] == "sourcefilename" || stack[n-1] == "srs") {
				return nil, 0, mm.Permanentf("VRT %s: <%s> inside <%s>: refused", describe(path), t.Name.Local, stack[n-1])
			}
			if err := vetElement(t, len(stack)); err != nil {
				return nil, 0, mm.Permanentf("VRT %s: %v", describe(path), err)
			}
			stack = append(stack, strings.ToLower(t.Name.Local))
			text.Reset()
			if strings.EqualFold(t.Name.Local, "SourceFilename") {
				c := t.Copy()
				src = &c
				continue // written at its end, renamed
			}
		case xml.CharData:
			text.Write(t)
			if src != nil {
				continue
			}
		case xml.EndElement:
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch name {
			case "sourcefilename":
				frozen, c, err := v.source(path, text.String(), attr(*src, "relativeToVRT"), depth)
				if cost += c; err == nil && cost > maxVRTSources {
					err = mm.Permanentf("VRT %s: a pixel would take more than %d source reads (sources named many times, VRTs nested)", describe(path), maxVRTSources)
				}
				if err != nil {
					return nil, 0, err
				}
				if err := writeSource(enc, *src, frozen); err != nil {
					return nil, 0, err
				}
				src = nil
				text.Reset()
				continue
			case "srs":
				if err := vetSRS(text.String()); err != nil {
					return nil, 0, mm.Permanentf("VRT %s: SRS: %v", describe(path), err)
				}
			}
			text.Reset()
		case xml.ProcInst:
			if t.Target != "xml" || len(stack) > 0 {
				return nil, 0, mm.Permanentf("VRT %s: processing instruction %q refused", describe(path), t.Target)
			}
			continue // the encoder writes UTF-8 without one
		default: // comments, directives
			return nil, 0, mm.Permanentf("VRT %s: comments and directives are refused", describe(path))
		}
		if err := enc.EncodeToken(tok); err != nil {
			return nil, 0, err
		}
	}
	if err := enc.Flush(); err != nil {
		return nil, 0, err
	}
	return out.Bytes(), cost, nil
}

// writeSource writes a SourceFilename element naming frozen, absolute.
func writeSource(enc *xml.Encoder, start xml.StartElement, frozen string) error {
	start.Attr = slices.DeleteFunc(start.Attr, func(a xml.Attr) bool { return strings.EqualFold(a.Name.Local, "relativeToVRT") })
	start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: "relativeToVRT"}, Value: "0"})
	for _, t := range []xml.Token{start, xml.CharData(frozen), start.End()} {
		if err := enc.EncodeToken(t); err != nil {
			return err
		}
	}
	return nil
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if strings.EqualFold(a.Name.Local, name) && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// vetElement refuses elements a plain VRT does not use, and the dataset
// and band subclasses that read anything but sources.
func vetElement(t xml.StartElement, depth int) error {
	name := t.Name.Local
	if t.Name.Space != "" || !vrtElements[strings.ToLower(name)] {
		return fmt.Errorf("element <%s> is not one a VRT of sourced bands uses: refused", name)
	}
	if depth == 0 && !strings.EqualFold(name, "VRTDataset") {
		return fmt.Errorf("root element <%s>", name)
	}
	switch strings.ToLower(name) {
	case "vrtdataset":
		if c := attr(t, "subClass"); c != "" && !strings.EqualFold(c, "VRTDataset") {
			return fmt.Errorf("VRT subclass %q refused (only plain VRTs of sourced bands)", c)
		}
	case "vrtrasterband":
		if c := attr(t, "subClass"); !vrtBandClasses[strings.ToLower(c)] {
			return fmt.Errorf("band subclass %q refused (only sourced and derived bands)", c)
		}
	}
	// GDAL reads an element's value from an attribute of the same name as
	// well (CPLGetXMLValue): <SimpleSource SourceFilename="/etc/x"> names a
	// source, <VRTDataset SRS="+nadgrids=..."> a CRS. So every attribute
	// must be one the element takes, and none carries a name or a CRS.
	allowed := vrtAttrs[strings.ToLower(name)]
	for _, a := range t.Attr {
		if a.Name.Space != "" || !allowed[strings.ToLower(a.Name.Local)] {
			return fmt.Errorf("attribute %s of <%s> is not one a VRT of sourced bands uses: refused", a.Name.Local, name)
		}
	}
	return nil
}

// vrtAttrs are the attributes each element of vrtElements may have: those
// GDAL writes, none of which names a file, a URL or a CRS.
var vrtAttrs = map[string]map[string]bool{
	"vrtdataset":       setOf("rasterXSize", "rasterYSize", "subClass"),
	"srs":              setOf("dataAxisToSRSAxisMapping"),
	"metadata":         setOf("domain", "format"),
	"mdi":              setOf("key"),
	"vrtrasterband":    setOf("dataType", "band", "blockXSize", "blockYSize", "subClass"),
	"simplesource":     setOf("resampling"),
	"complexsource":    setOf("resampling"),
	"averagedsource":   setOf("resampling"),
	"sourcefilename":   setOf("relativeToVRT", "shared"),
	"sourceproperties": setOf("RasterXSize", "RasterYSize", "DataType", "BlockXSize", "BlockYSize"),
	"srcrect":          setOf("xOff", "yOff", "xSize", "ySize"),
	"dstrect":          setOf("xOff", "yOff", "xSize", "ySize"),
	"overviewlist":     setOf("resampling"),
	"gcplist":          setOf("Projection", "dataAxisToSRSAxisMapping"),
	"gcp":              setOf("Id", "Info", "Pixel", "Line", "X", "Y", "Z"),
	"entry":            setOf("c1", "c2", "c3", "c4"),
}

// vetSRS accepts the forms GDAL writes (WKT, an authority code, PROJJSON),
// not a file name or URL SetFromUserInput could read.
func vetSRS(s string) error {
	s = strings.TrimSpace(s)
	// PROJ opens the grid files a CRS names (BOUNDCRS, +nadgrids): by path
	for _, w := range []string{"parameterfile", "grids="} {
		if strings.Contains(strings.ToLower(s), w) {
			return fmt.Errorf("a CRS naming grid or parameter files (%q) is refused", w)
		}
	}
	switch {
	case s == "":
		return nil
	case strings.HasPrefix(s, "{"):
		return nil
	case strings.IndexByte(s, '[') > 0 && !strings.ContainsAny(s[:strings.IndexByte(s, '[')], "/\\:. "):
		return nil // WKT: KEYWORD[...]
	}
	if auth, code, ok := strings.Cut(s, ":"); ok && (strings.EqualFold(auth, "EPSG") || strings.EqualFold(auth, "ESRI")) && isDigits(code) {
		return nil
	}
	return fmt.Errorf("%.40q is not WKT, PROJJSON or EPSG:n", s)
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// gdalRelative is GDAL's CPLIsFilenameRelative: what relativeToVRT="1"
// puts the VRT's directory in front of. Its idea of absolute differs from
// the kernel's ("C:/x", "\\x" and URLs are absolute to it): a name it
// takes as absolute is opened as it is, relative to the working directory.
func gdalRelative(name string) bool {
	if name == "" || name[0] == '/' || name[0] == '\\' {
		return false
	}
	r := name[1:]
	return !(strings.HasPrefix(r, ":\\") || strings.HasPrefix(r, ":/") || strings.Contains(r, "://"))
}

// gtiffDir is GDAL's name for one directory of a GeoTIFF: only the GTiff
// driver opens it (frozen names, and the feed's mosaics, use it).
var gtiffDir = regexp.MustCompile(`^GTIFF_DIR:([0-9]{1,4}):(/.*)$`)

// source resolves a SourceFilename as GDAL does, checks it against the
// allow list, walks it, and returns the name GDAL is to be given for it.
func (v *vetter) source(vrtPath, name, rel string, depth int) (string, int, error) {
	fail := func(format string, args ...any) error {
		return mm.Permanentf("VRT %s: source %.80q: %s", describe(vrtPath), name, fmt.Sprintf(format, args...))
	}
	if name == "" || name != strings.TrimSpace(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 }) {
		return "", 0, fail("empty, or with spaces or control characters around it")
	}
	if rel != "" && rel != "0" && rel != "1" {
		return "", 0, fail("relativeToVRT=%q (want 0 or 1)", rel)
	}
	if m := gtiffDir.FindStringSubmatch(name); m != nil {
		if rel == "1" {
			return "", 0, fail("GTIFF_DIR with relativeToVRT=1")
		}
		gp, err := v.al.resolve(m[2])
		if err != nil {
			return "", 0, fail("%v", err)
		}
		return "GTIFF_DIR:" + m[1] + ":" + gp, 1, nil
	}
	// GDAL reads prefixes (NITF_IM:0:, GTIFF_DIR:, PDF:...) in names and,
	// with relativeToVRT, joins only what follows them: no colon but a URL's
	if strings.Contains(name, ":") && !strings.Contains(name, "://") && !strings.HasPrefix(name, "/vsi") {
		return "", 0, fail("a driver prefix or connection string")
	}
	p := name
	if rel == "1" && gdalRelative(name) {
		if hasVSIPrefix(vrtPath) {
			p = vrtPath[:strings.LastIndexByte(vrtPath, '/')+1] + name
		} else {
			p = filepath.Dir(vrtPath) + string(filepath.Separator) + name
		}
	}
	gp, err := v.al.resolve(p)
	if err != nil {
		return "", 0, fail("%v", err)
	}
	if f, ok := v.frozen[gp]; ok {
		return f, v.cost[gp], nil
	}
	if len(v.frozen) >= maxVRTSources {
		return "", 0, fail("more than %d distinct sources", maxVRTSources)
	}
	_, frozen, cost, err := v.vet(gp, depth+1)
	if err != nil {
		return "", 0, fmt.Errorf("VRT %s names %s: %w", describe(vrtPath), describe(name), err)
	}
	v.frozen[gp], v.cost[gp] = frozen, cost
	return frozen, cost, nil
}
