package ingest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/airbusgeo/godal"
)

// GeoTIFFSpec describes a GeoTIFF to write.
type GeoTIFFSpec struct {
	Path         string
	EPSG         int
	GeoTransform [6]float64
	Width        int
	Height       int
	Bands        int
	DataType     string   // GDAL name: Byte, UInt16, Int16, Float32, Float64
	Nodata       *float64 // nil: none
	Descriptions []string // one per band, optional
	Compress     string   // DEFLATE by default
	ZLevel       int      // DEFLATE level 1 (fast) to 9 (small); 0: GDAL's default (6)
	Options      []string // more GTiff creation options, such as PHOTOMETRIC=RGB
	// ScaleOffsets, per band, is GDAL's scale and offset (a value means
	// raw x scale + offset); a band without one, or {0, 0}, gets none.
	ScaleOffsets [][2]float64
	// Metadata is the dataset's metadata (GDAL's default domain).
	Metadata map[string]string
}

// strip is how many rows the fill function is asked for at a time: one row of
// 256-pixel tiles, so memory stays bounded whatever the raster's size.
const strip = 256

// WriteGeoTIFF writes a tiled GeoTIFF. fill is called for each strip of rows
// [y0, y0+rows) and must fill buf, laid out band after band
// (buf[b*rows*width + r*width + x]). The file is written under a temporary
// name and renamed when complete, so a reader never sees it half-written.
func WriteGeoTIFF(spec GeoTIFFSpec, fill func(y0, rows int, buf []float64) error) (err error) {
	register()
	dt, ok := dataTypes[spec.DataType]
	if !ok {
		return fmt.Errorf("ingest: write %s: unsupported data type %q", spec.Path, spec.DataType)
	}
	if spec.Width < 1 || spec.Height < 1 || spec.Bands < 1 {
		return fmt.Errorf("ingest: write %s: empty raster %dx%dx%d", spec.Path, spec.Width, spec.Height, spec.Bands)
	}
	compress := spec.Compress
	if compress == "" {
		compress = "DEFLATE"
	}
	tmp := filepath.Join(filepath.Dir(spec.Path), "."+filepath.Base(spec.Path)+".partial")
	ec := &errCollector{}
	co := []string{"TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=" + compress, "BIGTIFF=IF_SAFER"}
	if spec.Bands > 1 {
		co = append(co, "INTERLEAVE=BAND")
	}
	co = append(co, spec.Options...)
	if spec.ZLevel > 0 {
		co = append(co, fmt.Sprintf("ZLEVEL=%d", spec.ZLevel))
	}
	ds, err := godal.Create(godal.GTiff, tmp, spec.Bands, dt, spec.Width, spec.Height,
		godal.CreationOption(co...), godal.ErrLogger(ec.handler()))
	if err != nil {
		return fmt.Errorf("ingest: create %s: %w", spec.Path, err)
	}
	defer func() {
		if cerr := ds.Close(godal.ErrLogger(ec.handler())); cerr != nil && err == nil {
			err = fmt.Errorf("ingest: close %s: %w", spec.Path, cerr)
		}
		if err == nil {
			err = os.Rename(tmp, spec.Path)
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := setGeoref(ds, spec, ec); err != nil {
		return err
	}
	buf := make([]float64, spec.Bands*strip*spec.Width)
	for y0 := 0; y0 < spec.Height; y0 += strip {
		rows := min(strip, spec.Height-y0)
		b := buf[:spec.Bands*rows*spec.Width]
		if err := fill(y0, rows, b); err != nil {
			return fmt.Errorf("ingest: write %s: %w", spec.Path, err)
		}
		if err := ds.Write(0, y0, b, spec.Width, rows, godal.BandInterleaved(), godal.ErrLogger(ec.handler())); err != nil {
			return fmt.Errorf("ingest: write %s rows %d-%d: %w", spec.Path, y0, y0+rows, err)
		}
	}
	return nil
}

func setGeoref(ds *godal.Dataset, spec GeoTIFFSpec, ec *errCollector) error {
	sr, err := godal.NewSpatialRefFromEPSG(spec.EPSG)
	if err != nil {
		return fmt.Errorf("ingest: write %s: EPSG:%d: %w", spec.Path, spec.EPSG, err)
	}
	defer sr.Close()
	if err := ds.SetSpatialRef(sr, godal.ErrLogger(ec.handler())); err != nil {
		return fmt.Errorf("ingest: write %s: set CRS: %w", spec.Path, err)
	}
	if err := ds.SetGeoTransform(spec.GeoTransform, godal.ErrLogger(ec.handler())); err != nil {
		return fmt.Errorf("ingest: write %s: set geotransform: %w", spec.Path, err)
	}
	for i, band := range ds.Bands() {
		if spec.Nodata != nil {
			if err := band.SetNoData(*spec.Nodata, godal.ErrLogger(ec.handler())); err != nil {
				return fmt.Errorf("ingest: write %s: nodata: %w", spec.Path, err)
			}
		}
		if i < len(spec.Descriptions) {
			if err := band.SetDescription(spec.Descriptions[i], godal.ErrLogger(ec.handler())); err != nil {
				return fmt.Errorf("ingest: write %s: band %d description: %w", spec.Path, i+1, err)
			}
		}
		if i < len(spec.ScaleOffsets) && spec.ScaleOffsets[i] != [2]float64{} {
			so := spec.ScaleOffsets[i]
			if err := band.SetScaleOffset(so[0], so[1], godal.ErrLogger(ec.handler())); err != nil {
				return fmt.Errorf("ingest: write %s: band %d scale and offset: %w", spec.Path, i+1, err)
			}
		}
	}
	keys := make([]string, 0, len(spec.Metadata))
	for k := range spec.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := ds.SetMetadata(k, spec.Metadata[k], godal.ErrLogger(ec.handler())); err != nil {
			return fmt.Errorf("ingest: write %s: metadata %s: %w", spec.Path, k, err)
		}
	}
	return nil
}

var dataTypes = map[string]godal.DataType{
	"Byte":    godal.Byte,
	"UInt16":  godal.UInt16,
	"Int16":   godal.Int16,
	"Float32": godal.Float32,
	"Float64": godal.Float64,
}
