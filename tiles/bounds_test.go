package tiles

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/ingest"
)

// hugeVRT is a 1 KB file declaring side x side pixels of px metres.
func hugeVRT(t *testing.T, side int, px float64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "huge.vrt")
	body := `<VRTDataset rasterXSize="` + itoa(side) + `" rasterYSize="` + itoa(side) + `"><SRS>EPSG:32615</SRS>
<GeoTransform>400000, ` + ftoa(px) + `, 0, 4600000, 0, -` + ftoa(px) + `</GeoTransform>
<VRTRasterBand dataType="Byte" band="1"/><VRTRasterBand dataType="Byte" band="2"/><VRTRasterBand dataType="Byte" band="3"/><VRTRasterBand dataType="Byte" band="4"/></VRTDataset>`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHugeDeclaredRasters: what a raster declares never sets the memory or
// the work of a scene. A 1e6 x 1e6 px header of 1 m pixels (1,000 km
// across) is refused by the grid's bound before any cell is listed; one of
// tiny pixels is refused when its chips are cut, before any read (it made
// boxStrips allocate 51 GB).
func TestHugeDeclaredRasters(t *testing.T) {
	ctx := context.Background()
	wide := hugeVRT(t, 1_000_000, 1)
	src, err := ingest.Open(ctx, &mm.Scene{ID: "wide", Assets: map[mm.Sensor]mm.Asset{mm.NAIP: {Href: wide}}}, ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	_, err = NewGrid(src, GridOptions{})
	if err == nil || !mm.IsPermanent(err) || !strings.Contains(err.Error(), "more than the limit of 250000") {
		t.Errorf("grid over 1,000 km: %v", err)
	}

	fine := hugeVRT(t, 1_000_000, 0.00072) // 720 m across
	sc := &mm.Scene{ID: "fine", Assets: map[mm.Sensor]mm.Asset{mm.NAIP: {Href: fine}}}
	if _, err := ingest.Open(ctx, sc, ingest.Options{}); err == nil || !strings.Contains(err.Error(), "implausible for naip") {
		t.Errorf("0.72 mm pixels as NAIP: %v", err)
	}
	src2, err := ingest.Open(ctx, sc, ingest.Options{AnyResolution: true})
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	grid, err := NewGrid(src2, GridOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := mm.InputSpec{Name: "x", Size: 72}
	for _, b := range []string{"red", "green", "blue", "nir"} {
		in.Bands = append(in.Bands, mm.BandSpec{Sensor: mm.NAIP, Band: b, Scale: 1, Std: 1})
	}
	naipSpec := mm.ChipSpec{FootprintM: 720, Inputs: []mm.InputSpec{in}}
	c, err := NewCutter(src2, grid, naipSpec, CutOptions{MinValid: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _, err = c.Cut(ctx, grid.Chips[0])
	if err == nil || !mm.IsPermanent(err) || !strings.Contains(err.Error(), "times finer than the chip") {
		t.Errorf("cut of a chip of 0.72 mm pixels: %v", err)
	}
}

func itoa(n int) string     { return strconv.Itoa(n) }
func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
