package hostile

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cases are the hostile scenes. Each replaces the NAIP href of a good
// scene; the escapes lead to the real NAIP outside the root.
func (e *Env) cases(t testing.TB, base scene, pub string) []Case {
	t.Helper()
	secret := filepath.Join(e.Outside, "naip.tif")
	inside := filepath.Join(e.Root, "naip.tif")
	forbidden := e.forbidden.URL + "/naip.tif"
	os.MkdirAll(filepath.Join(e.Outside, "deep"), 0o755)
	os.Symlink(filepath.Join(e.Outside, "deep"), filepath.Join(e.Root, "link"))
	os.Symlink(secret, filepath.Join(e.Root, "linked.tif"))

	// VRTs inside the root that name what is not
	escape := e.vrtOf(t, "escape.vrt", secret, "", "")
	viaCurl := e.vrtOf(t, "curl.vrt", inside, "/vsicurl/"+forbidden, "0")
	relUp := e.vrtOf(t, "up.vrt", inside, "../"+filepath.Base(e.Outside)+"/naip.tif", "1")
	nested := e.vrtOf(t, "nested.vrt", inside, "escape.vrt", "1")
	viaZip := e.vrtOf(t, "zip.vrt", inside, "/vsizip/"+filepath.Join(e.Outside, "x.zip")+"/naip.tif", "0")
	raw := e.write(t, "raw.vrt", `<VRTDataset rasterXSize="10" rasterYSize="10"><SRS>EPSG:32615</SRS>
<GeoTransform>440000,1,0,4650000,0,-1</GeoTransform><VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">
<SourceFilename relativetoVRT="0">`+secret+`</SourceFilename></VRTRasterBand></VRTDataset>`)
	wms := e.write(t, "tiles.tif", `<GDAL_WMS><Service name="TMS"><ServerUrl>`+e.forbidden.URL+`/${z}/${x}/${y}.png</ServerUrl></Service>
<DataWindow><UpperLeftX>-20037508.34</UpperLeftX><UpperLeftY>20037508.34</UpperLeftY><LowerRightX>20037508.34</LowerRightX>
<LowerRightY>-20037508.34</LowerRightY><TileLevel>18</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY><YOrigin>top</YOrigin></DataWindow>
<Projection>EPSG:3857</Projection><BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>4</BandsCount></GDAL_WMS>`)
	// a VRT served from the allowed prefix naming a local file outside
	remoteLocal := pub + "local.vrt"
	os.WriteFile(filepath.Join(e.pubDir(), "local.vrt"), []byte(strings.ReplaceAll(readFile(t, viaCurl), "/vsicurl/"+forbidden, secret)), 0o644)

	// huge, tiny, broken
	huge := e.write(t, "huge.vrt", `<VRTDataset rasterXSize="1000000" rasterYSize="1000000"><SRS>EPSG:32615</SRS>
<GeoTransform>440000, 0.00072, 0, 4650000, 0, -0.00072</GeoTransform>
<VRTRasterBand dataType="Byte" band="1"/><VRTRasterBand dataType="Byte" band="2"/><VRTRasterBand dataType="Byte" band="3"/><VRTRasterBand dataType="Byte" band="4"/></VRTDataset>`)
	nanGT := e.write(t, "nan.vrt", `<VRTDataset rasterXSize="100" rasterYSize="100"><SRS>EPSG:32615</SRS>
<GeoTransform>nan, 1, 0, 4650000, 0, -1</GeoTransform><VRTRasterBand dataType="Byte" band="1"/></VRTDataset>`)
	data, err := os.ReadFile(inside)
	if err != nil {
		t.Fatal(err)
	}
	truncated := e.write(t, "truncated.tif", string(data[:len(data)*6/10]))
	bigTiles := filepath.Join(e.Root, "bigtiles.tif") // 4 MB on disk, 1 GB a tile
	if out, err := exec.Command("gdal_translate", "-q", "-co", "TILED=YES", "-co", "BLOCKXSIZE=16384", "-co", "BLOCKYSIZE=16384",
		"-co", "COMPRESS=DEFLATE", inside, bigTiles).CombinedOutput(); err != nil {
		t.Fatalf("gdal_translate: %v: %s", err, out)
	}
	attrSource := e.write(t, "attr.vrt", strings.ReplaceAll(readFile(t, e.vrtOf(t, "plain2.vrt", inside, "", "")), "<SimpleSource>",
		`<SimpleSource SourceFilename="`+secret+`">`))
	kernel := strings.ReplaceAll(readFile(t, e.vrtOf(t, "plain.vrt", inside, "", "")), "SimpleSource", "KernelFilteredSource")
	kernel = e.write(t, "kernel.vrt", strings.Replace(kernel, "<KernelFilteredSource>",
		`<KernelFilteredSource><Kernel normalized="1"><Size>3</Size><Coefs>1 1 1 1 1 1 1 1 1</Coefs></Kernel>`, 1))
	absurd := e.write(t, "absurd.tif", string(AbsurdTIFF()))
	notRaster := e.write(t, "notes.tif", "this is not a raster\n")

	refused := "not under an allowed"
	list := []struct{ name, href, want string }{
		{"outside-root", secret, refused},
		{"dotdot", filepath.Join(e.Root, "..", filepath.Base(e.Outside), "naip.tif"), refused},
		{"symlink-dotdot", filepath.Join(e.Root, "link") + "/../naip.tif", refused},
		{"symlink-file", filepath.Join(e.Root, "linked.tif"), refused},
		{"file-url-dotdot", "file://" + e.Root + "/../" + filepath.Base(e.Outside) + "/naip.tif", refused},
		{"vsizip-href", "/vsizip/" + filepath.Join(e.Root, "x.zip") + "/naip.tif", "vsizip"},
		{"vsicurl-href", "/vsicurl/" + forbidden, refused},
		{"url-not-allowed", forbidden, refused},
		{"url-dotdot", pub + "../naip.tif", refused},
		{"url-userinfo", strings.Replace(pub, "http://", "http://"+strings.TrimPrefix(e.served.URL, "http://")+"@", 1) + "naip.tif", "userinfo"},
		{"vrt-escape", escape, refused},
		{"vrt-vsicurl", viaCurl, refused},
		{"vrt-relative-up", relUp, refused},
		{"vrt-nested", nested, refused},
		{"vrt-vsizip", viaZip, "vsizip"},
		{"vrt-raw-band", raw, "VRTRawRasterBand"},
		{"wms-as-tif", wms, "not a GeoTIFF or a VRT"},
		{"remote-vrt-local-source", remoteLocal, refused},
		{"redirect-out", pub + "redirect/naip.tif", "which the allow list refuses"},
		{"huge-tiny-pixels", huge, "implausible for naip"},
		{"nan-geotransform", nanGT, "not finite"},
		{"absurd-header", absurd, "not a readable raster"},
		{"truncated", truncated, "truncated.tif"},
		{"huge-tiles", bigTiles, "blocks of 16384x16384"},
		{"vrt-attribute-source", attrSource, "attribute SourceFilename"},
		{"vrt-kernel", kernel, "element <KernelFilteredSource> is not one"},
		{"not-a-raster", notRaster, "not a GeoTIFF or a VRT"},
		{"missing", filepath.Join(e.Root, "nope.tif"), "no such file"},
	}
	var out []Case
	for _, c := range list {
		id := "hostile-" + c.name
		out = append(out, Case{Name: c.name, ID: id, Message: e.message(base, id, c.href), Want: c.want})
	}
	// messages that are not scenes
	out = append(out,
		Case{Name: "bad-field-with-id", ID: "hostile-bad-field", Message: []byte(`{"id":"hostile-bad-field","assets":{"naip":{"href":7}}}`), Want: "assets.naip"},
		Case{Name: "not-json", Message: []byte("\xff\xfe not json"), Want: "invalid"},
	)
	return out
}

func (e *Env) pubDir() string { return filepath.Join(e.servedDir, "pub") }

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// AbsurdTIFF is a 60-byte TIFF whose header claims 4e9 x 4e9 pixels.
func AbsurdTIFF() []byte {
	type entry struct {
		tag, typ uint16
		val      uint32
	}
	entries := []entry{{256, 4, 4e9}, {257, 4, 4e9}, {258, 3, 8}, {259, 3, 1}, {262, 3, 1}, {273, 4, 8}, {277, 3, 1}, {278, 4, 4e9}, {279, 4, 1}}
	b := []byte("II*\x00")
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = append(b, make([]byte, 8)...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(entries)))
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.typ)
		b = binary.LittleEndian.AppendUint32(b, 1)
		b = binary.LittleEndian.AppendUint32(b, e.val)
	}
	return binary.LittleEndian.AppendUint32(b, 0)
}
