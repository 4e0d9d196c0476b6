package ingest

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/testenv"
)

// countingServer serves dir and counts every request it gets.
func countingServer(t *testing.T, dir string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	fsrv := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		fsrv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestAllowedPrefixTricks: URLs compared parsed, links resolved before "..".
func TestAllowedPrefixTricks(t *testing.T) {
	root := t.TempDir()
	outsideDir := t.TempDir()
	writeTestTIFF(t, root, "x.tif", 1, "Byte", "")
	writeTestTIFF(t, outsideDir, "x.tif", 1, "Byte", "")
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	os.Mkdir(filepath.Join(outsideDir, "deep"), 0o755)
	// link points outside: link/../x.tif is outsideDir/x.tif to the kernel
	os.Symlink(filepath.Join(outsideDir, "deep"), filepath.Join(root, "link"))
	tests := []struct {
		name  string
		allow []string
		href  string
		ok    bool
	}{
		{"url inside", []string{"http://h:8080/ok/"}, "http://h:8080/ok/x.tif", true},
		{"url dot-dot out of the prefix", []string{"http://h:8080/ok/"}, "http://h:8080/ok/../secret/x.tif", false},
		{"url encoded dot-dot", []string{"http://h:8080/ok/"}, "http://h:8080/ok/%2e%2e/secret/x.tif", false},
		{"url encoded slash", []string{"http://h:8080/ok/"}, "http://h:8080/ok%2f..%2fsecret/x.tif", false},
		{"url dot-dot staying inside", []string{"http://h:8080/ok/"}, "http://h:8080/ok/a/../x.tif", true},
		{"userinfo hides the host", []string{"http://h:8080"}, "http://h:8080@other:9090/x.tif", false},
		{"userinfo on the allowed host", []string{"http://h:8080"}, "http://user:pw@h:8080/x.tif", false},
		{"prefix is a path segment, not a string", []string{"http://h:8080/ok"}, "http://h:8080/okay/x.tif", false},
		{"host case and default port", []string{"https://Data.Example.org/s/"}, "https://data.example.org:443/s/a.tif", true},
		{"other port", []string{"http://h:8080/"}, "http://h:8081/x.tif", false},
		{"other scheme", []string{"http://h/"}, "https://h/x.tif", false},
		{"host as a prefix string", []string{"http://h"}, "http://h.evil.com/x.tif", false},
		{"vsicurl of an allowed URL", []string{"http://h/ok/"}, "/vsicurl/http://h/ok/x.tif", true},
		{"vsicurl dot-dot", []string{"http://h/ok/"}, "/vsicurl/http://h/ok/../x.tif", false},
		{"vsizip", []string{root}, "/vsizip/" + filepath.Join(root, "a.zip") + "/x.tif", false},
		{"vsisubfile", []string{root}, "/vsisubfile/0_100," + filepath.Join(root, "x.tif"), false},
		{"vsimem", []string{root}, "/vsimem/x.tif", false},
		{"file url dot-dot", []string{"file://" + root + "/"}, "file://" + root + "/../" + filepath.Base(outsideDir) + "/x.tif", false},
		{"file url inside", []string{"file://" + root + "/"}, "file://" + root + "/x.tif", true},
		{"symlink then dot-dot", []string{root}, filepath.Join(root, "link") + "/../x.tif", false},
		{"dot-dot inside", []string{root}, root + "/sub/../x.tif", true},
		{"missing directory then dot-dot (the kernel fails too)", []string{root}, root + "/nodir/../x.tif", false},
		{"plain outside", []string{root}, filepath.Join(outsideDir, "x.tif"), false},
		{"s3 bucket", []string{"s3://bucket/scenes/"}, "s3://bucket/scenes/a.tif", true},
		{"s3 other bucket", []string{"s3://bucket/scenes/"}, "s3://bucket2/scenes/a.tif", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Allowed(tt.href, tt.allow)
			if (err == nil) != tt.ok {
				t.Fatalf("Allowed(%q, %q) = %v, want ok=%v", tt.href, tt.allow, err, tt.ok)
			}
			if err != nil && !mm.IsPermanent(err) {
				t.Errorf("refusal is not permanent: %v", err)
			}
		})
	}
}

// TestVRTCannotEscape: a VRT, or a remote one, that names what the allow
// list does not hold is refused before GDAL reads it; the server outside
// the list gets no request, and a real raster outside is never scored.
func TestVRTCannotEscape(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	secret := writeTestTIFF(t, outside, "naip.tif", 4, "Byte", "")
	inside := writeTestTIFF(t, root, "ok.tif", 4, "Byte", "")
	forbidden, hits := countingServer(t, outside)
	served := t.TempDir()
	allowedSrv, _ := countingServer(t, served)

	vrt := func(dir, name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// what GDAL itself writes for a file outside the root
	escape := filepath.Join(root, "escape.vrt")
	testenv.Run(t, "", "gdal_translate", "-q", "-of", "VRT", secret, escape)
	// and for a file inside it
	good := filepath.Join(root, "good.vrt")
	testenv.Run(t, "", "gdal_translate", "-q", "-of", "VRT", inside, good)
	body, _ := os.ReadFile(good)
	src := func(name, rel string) string {
		s := strings.Replace(string(body), `<SourceFilename relativeToVRT="1">ok.tif</SourceFilename>`,
			fmt.Sprintf(`<SourceFilename relativeToVRT="%s">%s</SourceFilename>`, rel, name), -1)
		if !strings.Contains(string(body), `<SourceFilename relativeToVRT="1">ok.tif</SourceFilename>`) {
			t.Fatalf("gdal_translate's VRT has no relative source to replace:\n%s", body)
		}
		return s
	}
	remoteSrc := vrt(root, "remote.vrt", src("/vsicurl/"+forbidden.URL+"/naip.tif", "0"))
	relUp := vrt(root, "relup.vrt", src("../"+filepath.Base(outside)+"/naip.tif", "1"))
	nested := vrt(root, "nested.vrt", src("escape.vrt", "1"))
	raw := vrt(root, "raw.vrt", `<VRTDataset rasterXSize="10" rasterYSize="10"><SRS>EPSG:32615</SRS><GeoTransform>0,1,0,0,0,-1</GeoTransform>
<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">`+secret+`</SourceFilename></VRTRasterBand></VRTDataset>`)
	caseTrick := vrt(root, "case.vrt", strings.ReplaceAll(src(secret, "0"), "SourceFilename", "sourcefilename"))
	comment := vrt(root, "comment.vrt", strings.ReplaceAll(src("ok.tif", "1"), "ok.tif", "ok.tif<!-- x -->"))
	pixfn := vrt(root, "python.vrt", strings.Replace(src("ok.tif", "1"), `band="1" blockXSize="256" blockYSize="256">`, `band="1" subClass="VRTDerivedRasterBand"><PixelFunctionLanguage>Python</PixelFunctionLanguage>`, 1))
	wms := vrt(root, "wms.xml", `<GDAL_WMS><Service name="TMS"><ServerUrl>`+forbidden.URL+`/${z}/${x}/${y}.png</ServerUrl></Service></GDAL_WMS>`)
	viaWMS := vrt(root, "viawms.vrt", src("wms.xml", "1"))
	// GDAL reads an element's value from an attribute of its name too
	attrSource := vrt(root, "attr.vrt", strings.ReplaceAll(string(body), "<SimpleSource>", `<SimpleSource SourceFilename="`+secret+`">`))
	attrSRS := vrt(root, "attrsrs.vrt", strings.Replace(string(body), "<VRTDataset ", `<VRTDataset SRS="+proj=longlat +nadgrids=`+secret+`" `, 1))
	// few distinct files, many reads: 70 sources of a VRT of 70 sources
	many := func(name, source string) string {
		one := string(body)
		i, j := strings.Index(one, "<SimpleSource>"), strings.Index(one, "</SimpleSource>")+len("</SimpleSource>")
		block := strings.ReplaceAll(one[i:j], "ok.tif", source)
		return vrt(root, name, one[:i]+strings.Repeat(block, 70)+one[j:])
	}
	many("c.vrt", "ok.tif")
	bomb := many("b.vrt", "c.vrt")
	// served from an allowed URL, naming a local file outside the root
	os.Mkdir(filepath.Join(served, "ok"), 0o755)
	vrt(served, "ok/local.vrt", src(secret, "0"))
	vrt(served, "ok/up.vrt", src("../naip.tif", "1"))
	writeTestTIFF(t, served, "naip.tif", 4, "Byte", "")

	allow := []string{root, allowedSrv.URL + "/ok/"}
	tests := []struct {
		name, href, want string
	}{
		{"gdal_translate VRT of a file outside", escape, "not under an allowed"},
		{"VRT naming /vsicurl/ of a host not allowed", remoteSrc, "not under an allowed"},
		{"relative source climbing out", relUp, "not under an allowed"},
		{"VRT naming a VRT that escapes", nested, "not under an allowed"},
		{"raw band", raw, "VRTRawRasterBand"},
		{"element names in another case", caseTrick, "not under an allowed"},
		{"comment inside a source name", comment, "comments"},
		{"python pixel function", pixfn, "PixelFunctionLanguage"},
		{"a WMS description", wms, "not a GeoTIFF or a VRT"},
		{"a VRT naming a WMS description", viaWMS, "not a GeoTIFF or a VRT"},
		{"source named by an attribute", attrSource, "attribute SourceFilename of <SimpleSource>"},
		{"CRS given by an attribute", attrSRS, "attribute SRS of <VRTDataset>"},
		{"sources named many times", bomb, "source reads"},
		{"remote VRT naming a local file", allowedSrv.URL + "/ok/local.vrt", "not under an allowed"},
		{"remote VRT naming ../", allowedSrv.URL + "/ok/up.vrt", "not under an allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: tt.href}}), Options{Allow: allow})
			if err == nil {
				src.Close()
				t.Fatalf("%s was opened", tt.href)
			}
			if !mm.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "assets.naip.href") {
				t.Errorf("got %v, want a permanent error naming assets.naip.href and saying %q", err, tt.want)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server outside the allow list got %d requests", n)
	}
	// what is inside opens, as a file and as GDAL's VRT of it
	for _, href := range []string{inside, good} {
		src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.NAIP: {Href: href}}), Options{Allow: allow})
		if err != nil {
			t.Errorf("%s: %v", href, err)
			continue
		}
		src.Close()
	}
}

// TestSideCarsAreNotRead: GDAL looks for files beside the ones it opens
// (.aux.xml, .msk, .ovr), also for the sources of VRTs, where no sibling
// list is given (the band groups ingest builds, the feed's mosaics, a
// scene's VRT). A side-car that is a link to a file outside the root
// would be read without any href naming it. None is read: here a PAM
// side-car that would give the bands a nodata value.
func TestSideCarsAreNotRead(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	aux := filepath.Join(outside, "evil.aux.xml")
	os.WriteFile(aux, []byte(`<PAMDataset><PAMRasterBand band="1"><NoDataValue>42</NoDataValue></PAMRasterBand></PAMDataset>`), 0o644)
	hrefs := map[string]string{}
	for _, b := range []string{"B02", "B03"} {
		p := writeTestTIFF(t, root, b+".tif", 1, "UInt16", "")
		os.Symlink(aux, p+".aux.xml")
		hrefs[b] = p
	}
	for _, allow := range [][]string{nil, {root}} {
		src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Hrefs: hrefs}}), Options{Allow: allow})
		if err != nil {
			t.Fatal(err)
		}
		r := src.Rasters[0]
		if r.vrt == "" {
			t.Fatal("the two bands were not grouped in a VRT")
		}
		for i, b := range r.ds.Bands() {
			if nd, ok := b.NoData(); ok {
				t.Errorf("allow %v: band %d of the group has nodata %v, from the side-car", allow, i+1, nd)
			}
		}
		src.Close()
	}
}

// TestBuildMosaicChecksEveryHref: GDAL opens each href of a mosaic to
// write it, so a catalogue naming a local file or a host outside the
// allow list gets nothing written and nothing read.
func TestBuildMosaicChecksEveryHref(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	a := writeTestTIFF(t, root, "a.tif", 1, "UInt16", "")
	secret := writeTestTIFF(t, outside, "b.tif", 1, "UInt16", "")
	wms := filepath.Join(root, "w.tif")
	os.WriteFile(wms, []byte(`<GDAL_WMS><Service name="TMS"><ServerUrl>http://127.0.0.1:1/${z}/${x}/${y}.png</ServerUrl></Service></GDAL_WMS>`), 0o644)
	forbidden, hits := countingServer(t, outside)
	out := t.TempDir()
	allow := []string{root, out}
	for _, bad := range []string{secret, forbidden.URL + "/b.tif", "/vsicurl/" + forbidden.URL + "/b.tif", wms, "file://" + secret} {
		dst := filepath.Join(out, "m.vrt")
		err := BuildMosaic(dst, []string{a, bad}, allow)
		if err == nil || !mm.IsPermanent(err) || !strings.Contains(err.Error(), "m.vrt") {
			t.Errorf("mosaic of %s: %v, want a permanent error naming the mosaic", bad, err)
		}
		if _, err := os.Stat(dst); err == nil {
			t.Errorf("mosaic of %s was written", bad)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server outside the allow list got %d requests", n)
	}
	ok := filepath.Join(out, "ok.vrt")
	if err := BuildMosaic(ok, []string{a, a}, allow); err != nil {
		t.Fatalf("mosaic of allowed files: %v", err)
	}
	// as the workers open it: its sources named for the GTiff driver only
	body, _ := os.ReadFile(ok)
	if !strings.Contains(string(body), "GTIFF_DIR:1:"+a) {
		t.Errorf("the mosaic does not name its source for the GTiff driver:\n%s", body)
	}
	src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Href: ok, Bands: []string{"B02"}}}), Options{Allow: allow, AnyResolution: true})
	if err != nil {
		t.Fatalf("confined open of the mosaic: %v", err)
	}
	src.Close()
}

// TestVRTSourcesFrozen: GDAL opens a VRT's sources later than the check,
// by name and with any driver. A source checked as a GeoTIFF and then
// replaced by a VRT naming a file outside must not be read: GDAL is given
// names only the GTiff driver opens, by a descriptor of the file checked,
// and a copy of the VRT: it reads what was checked.
func TestVRTSourcesFrozen(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	late := writeTestTIFF(t, root, "late.tif", 1, "UInt16", "")
	secret := filepath.Join(outside, "secret.tif")
	testenv.Run(t, "", "gdal_translate", "-q", "-scale", "0", "250", "1000", "1250", late, secret) // other values
	vrtPath := filepath.Join(root, "x.vrt")
	testenv.Run(t, "", "gdal_translate", "-q", "-of", "VRT", late, vrtPath)
	w := Window{EPSG: 32615, Bounds: [4]float64{440000, 4644000, 446000, 4650000}, Width: 60, Height: 60}
	open := func() *Source {
		src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Href: vrtPath, Bands: []string{"B02"}}}), Options{Allow: []string{root}, AnyResolution: true})
		if err != nil {
			t.Fatal(err)
		}
		return src
	}
	before := open()
	want, err := before.Rasters[0].Warp(context.Background(), w, Bilinear)
	before.Close()
	if err != nil {
		t.Fatal(err)
	}
	src := open()
	defer src.Close()
	// after the check: late.tif becomes a VRT of the secret
	swap := filepath.Join(root, "swap.vrt")
	testenv.Run(t, "", "gdal_translate", "-q", "-of", "VRT", secret, swap)
	if err := os.Rename(swap, late); err != nil {
		t.Fatal(err)
	}
	got, err := src.Rasters[0].Warp(context.Background(), w, Bilinear)
	if err == nil {
		for i := range want {
			if got[i] != want[i] && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i]))) {
				t.Fatalf("value %d: %v, the checked file has %v: the swapped source was read", i, got[i], want[i])
			}
		}
	}
	frozen := src.Rasters[0].Path
	src.Close()
	if _, err := os.Stat(frozen); err == nil {
		t.Errorf("the frozen copy %s outlived its raster", frozen)
	}
}

// TestDriverPrefixesRefused: GDAL reads NITF_IM:0:, GTIFF_DIR:n:, PDF:...
// in a source name and, with relativeToVRT, joins only what follows the
// prefix to the VRT's directory; relative to the working directory, a
// prefixed href reaches any file. Names with such prefixes are refused,
// and a GeoTIFF href is opened by its resolved path.
func TestDriverPrefixesRefused(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	secret := writeTestTIFF(t, outside, "s1.tif", 1, "Float32", "")
	inside := writeTestTIFF(t, root, "in.tif", 1, "Float32", "")
	// what Go would resolve the prefixed name to exists inside the root
	os.MkdirAll(filepath.Join(root, "d", "NITF_IM:0:..", "x"), 0o755)
	os.MkdirAll(filepath.Join(root, "d", "x"), 0o755)
	writeTestTIFF(t, filepath.Join(root, "d", "x"), "s1.tif", 1, "Float32", "")
	vrtPath := filepath.Join(root, "d", "p.vrt")
	testenv.Run(t, "", "gdal_translate", "-q", "-of", "VRT", inside, vrtPath)
	body, _ := os.ReadFile(vrtPath)
	s := strings.ReplaceAll(string(body), inside, "NITF_IM:0:../x/s1.tif")
	s = strings.ReplaceAll(s, `relativeToVRT="0"`, `relativeToVRT="1"`)
	os.WriteFile(vrtPath, []byte(s), 0o644)
	// and a prefixed href relative to the working directory, inside the root
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(root)
	os.MkdirAll(filepath.Join(root, "GTIFF_DIR:1:"+filepath.Dir(secret)), 0o755)
	writeTestTIFF(t, filepath.Join(root, "GTIFF_DIR:1:"+filepath.Dir(secret)), "s1.tif", 1, "Float32", "")
	_, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.Sentinel1: {Href: vrtPath, Bands: []string{"VV"}}}), Options{Allow: []string{root}, AnyResolution: true})
	if err == nil || !mm.IsPermanent(err) || !strings.Contains(err.Error(), "driver prefix") {
		t.Errorf("VRT naming NITF_IM:0:../x/s1.tif relative to it: %v", err)
	}
	// the prefixed href is the file of that name inside the root, opened by its resolved path
	src, err := Open(context.Background(), scene(map[mm.Sensor]mm.Asset{mm.Sentinel1: {Href: "GTIFF_DIR:1:" + secret, Bands: []string{"VV"}}}), Options{Allow: []string{root}, AnyResolution: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := src.Rasters[0].Path
	if strings.HasPrefix(p, "/proc/self/fd/") {
		p, _ = os.Readlink(p)
	}
	if !strings.HasPrefix(p, root+"/") {
		t.Errorf("GDAL was given %s, not the file inside the root", p)
	}
}

// TestProxyTunnels: https is tunnelled only to allowed hosts and ports;
// an s3:// prefix opens its bucket's endpoints, not all of AWS.
func TestProxyTunnels(t *testing.T) {
	al, err := parseAllow([]string{"https://data.example.org/scenes/", "s3://my-bucket/scenes/"})
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{al: al}
	for host, want := range map[string]bool{
		"data.example.org:443":                        true,
		"data.example.org:8443":                       false,
		"evil.example.org:443":                        false,
		"my-bucket.s3.amazonaws.com:443":              true,
		"my-bucket.s3.eu-west-1.amazonaws.com:443":    true,
		"other-bucket.s3.amazonaws.com:443":           false,
		"s3.amazonaws.com:443":                        false,
		"attacker.elb.amazonaws.com:443":              false,
		"my-bucket.s3.amazonaws.com.evil.example:443": false,
		"ec2-203-0-113-5.compute-1.amazonaws.com:443": false,
	} {
		if got := p.tunnelOK(host); got != want {
			t.Errorf("CONNECT %s: %v, want %v", host, got, want)
		}
	}
}

func TestVetSRS(t *testing.T) {
	for srs, ok := range map[string]bool{
		"EPSG:32615": true,
		`PROJCS["OSGB36 / British National Grid",GEOGCS["OSGB36"]]`:                                      true,
		`BOUNDCRS[SOURCECRS[GEOGCRS["x"]],ABRIDGEDTRANSFORMATION["y",PARAMETERFILE["g","/etc/passwd"]]]`: false,
		"+proj=utm +zone=15 +nadgrids=/etc/x.gsb":                                                        false,
		"/etc/passwd": false,
	} {
		if err := vetSRS(srs); (err == nil) != ok {
			t.Errorf("vetSRS(%q) = %v, want ok=%v", srs, err, ok)
		}
	}
}

// TestPinnedAgainstLinkSwap: a directory of a checked path swapped for a
// link to outside after the check, before GDAL opens the VRT source in it,
// changes nothing: GDAL reads the file by the descriptor opened at the
// check.
func TestPinnedAgainstLinkSwap(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	p := writeTestTIFF(t, filepath.Join(root, "sub"), "x.tif", 1, "UInt16", "")
	testenv.Run(t, "", "gdal_translate", "-q", "-scale", "0", "250", "1000", "1250", p, filepath.Join(outside, "x.tif"))
	w := Window{EPSG: 32615, Bounds: [4]float64{440000, 4644000, 446000, 4650000}, Width: 60, Height: 60}
	// a VRT: GDAL opens its source when a chip first needs it, not at the check
	vrtPath := filepath.Join(root, "x.vrt")
	testenv.Run(t, "", "gdal_translate", "-q", "-of", "VRT", p, vrtPath)
	sc := scene(map[mm.Sensor]mm.Asset{mm.Sentinel2: {Href: vrtPath, Bands: []string{"B02"}}})
	src, err := Open(context.Background(), sc, Options{Allow: []string{root}, AnyResolution: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	os.Rename(filepath.Join(root, "sub"), filepath.Join(root, "old"))
	if err := os.Symlink(outside, filepath.Join(root, "sub")); err != nil {
		t.Fatal(err)
	}
	got, err := src.Rasters[0].Warp(context.Background(), w, Average)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v >= 1000 {
			t.Fatalf("value %d is %v: the file behind the link, outside the root, was read", i, v)
		}
	}
}

// TestMissingOutsideNotTold: a path outside the roots is refused as such
// whether or not it exists (the daemon's dead letters must not tell which
// files exist elsewhere); one inside a root is "no such file".
func TestMissingOutsideNotTold(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	writeTestTIFF(t, outside, "there.tif", 1, "Byte", "")
	allow := []string{root}
	for _, p := range []string{filepath.Join(outside, "there.tif"), filepath.Join(outside, "missing.tif"), root + "/../" + filepath.Base(outside) + "/missing.tif"} {
		if err := Allowed(p, allow); err == nil || !strings.Contains(err.Error(), "not under an allowed directory") {
			t.Errorf("%s: %v, want it refused as outside", p, err)
		}
	}
	if err := Allowed(filepath.Join(root, "missing.tif"), allow); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing inside the root: %v", err)
	}
}
