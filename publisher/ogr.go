package publisher

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/airbusgeo/godal"
	"github.com/paulmach/orb/geojson"
)

// ogrSink writes GeoPackage or FlatGeobuf through GDAL: features go to a
// GeoJSON file first, which GDAL's vector translation turns into the target
// format (scores flattened into scores_<class> fields, lists such as
// sensors written as JSON strings) under a temporary name, renamed into
// place when complete.
type ogrSink struct {
	seq         *jsonSink
	path, layer string
	format, tmp string
}

var register sync.Once

func newOGRSink(path, layer, format string) (*ogrSink, error) {
	seq, err := newJSONSink(tempPath(path)+".geojson", false)
	if err != nil {
		return nil, err
	}
	// the temporary name keeps the extension: GDAL's FlatGeobuf driver
	// makes a directory of layers of a name without .fgb
	ext := filepath.Ext(path)
	tmp := filepath.Join(filepath.Dir(path), "."+strings.TrimSuffix(filepath.Base(path), ext)+".partial"+ext)
	return &ogrSink{seq: seq, path: path, layer: layer, format: format, tmp: tmp}, nil
}

func (s *ogrSink) Write(f *geojson.Feature) error { return s.seq.Write(f) }

func (s *ogrSink) Commit() error {
	if err := s.seq.Commit(); err != nil {
		return err
	}
	src := s.seq.path
	defer os.Remove(src)
	register.Do(godal.RegisterAll)
	os.RemoveAll(s.tmp)
	var errs []string
	logger := godal.ErrLogger(func(ec godal.ErrorCategory, code int, msg string) error {
		if ec >= godal.CE_Failure {
			errs = append(errs, msg)
			return fmt.Errorf("%s", msg)
		}
		return nil
	})
	in, err := godal.Open(src, godal.VectorOnly(), godal.DriverOpenOption("FLATTEN_NESTED_ATTRIBUTES=YES", "NESTED_ATTRIBUTE_SEPARATOR=_", "ARRAY_AS_STRING=YES"), logger)
	if err != nil {
		return fmt.Errorf("publisher: %s: %w", s.path, err)
	}
	defer in.Close()
	out, err := in.VectorTranslate(s.tmp, []string{"-f", s.format, "-nln", s.layer, "-a_srs", "EPSG:4326"}, logger)
	if err != nil {
		os.RemoveAll(s.tmp)
		return fmt.Errorf("publisher: %s: %w %v", s.path, err, errs)
	}
	if err := out.Close(logger); err != nil {
		os.RemoveAll(s.tmp)
		return fmt.Errorf("publisher: %s: %w", s.path, err)
	}
	if err := os.Rename(s.tmp, s.path); err != nil {
		os.RemoveAll(s.tmp)
		return fmt.Errorf("publisher: %w", err)
	}
	return nil
}

func (s *ogrSink) Abort() {
	s.seq.Abort()
	os.RemoveAll(s.tmp)
}
