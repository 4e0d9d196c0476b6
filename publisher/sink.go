package publisher

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/paulmach/orb/geojson"
)

// Sink receives features and makes them visible all at once on Commit.
type Sink interface {
	Write(f *geojson.Feature) error
	// Commit finishes the output and moves it into place.
	Commit() error
	// Abort removes whatever was written; the final path is never touched.
	Abort()
}

// Formats by file extension.
const (
	FormatGeoJSON    = "GeoJSON"
	FormatGeoJSONSeq = "GeoJSONSeq"
	FormatGPKG       = "GPKG"
	FormatFlatGeobuf = "FlatGeobuf"
)

// FormatOf returns the output format a path's extension names.
func FormatOf(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".geojson", ".json":
		return FormatGeoJSON, nil
	case ".geojsonl", ".geojsons", ".geojsonseq", ".jsonl", ".ndjson":
		return FormatGeoJSONSeq, nil
	case ".gpkg":
		return FormatGPKG, nil
	case ".fgb":
		return FormatFlatGeobuf, nil
	}
	return "", fmt.Errorf("publisher: %s: unknown output format (want .geojson, .geojsonl, .gpkg or .fgb)", path)
}

// NewFileSink writes a layer (for GeoPackage and FlatGeobuf, named layer)
// to path in the format its extension names.
func NewFileSink(path, layer string) (Sink, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	switch format {
	case FormatGeoJSON:
		return newJSONSink(path, false)
	case FormatGeoJSONSeq:
		return newJSONSink(path, true)
	}
	return newOGRSink(path, layer, format)
}

// jsonSink streams a FeatureCollection, or one Feature per line, into a
// temporary file beside the target.
type jsonSink struct {
	path, tmp string
	f         *os.File
	w         *bufio.Writer
	seq       bool
	n         int
}

func tempPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".partial")
}

func newJSONSink(path string, seq bool) (*jsonSink, error) {
	s := &jsonSink{path: path, tmp: tempPath(path), seq: seq}
	f, err := os.Create(s.tmp)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	s.f, s.w = f, bufio.NewWriter(f)
	if !seq {
		s.w.WriteString(`{"type":"FeatureCollection","features":[` + "\n")
	}
	return s, nil
}

func (s *jsonSink) Write(f *geojson.Feature) error {
	data, err := f.MarshalJSON()
	if err != nil {
		return fmt.Errorf("publisher: %s: %w", s.path, err)
	}
	if !s.seq && s.n > 0 {
		s.w.WriteString(",\n")
	}
	s.w.Write(data)
	if s.seq {
		s.w.WriteByte('\n')
	}
	s.n++
	return nil
}

func (s *jsonSink) Commit() error {
	if !s.seq {
		s.w.WriteString("\n]}\n")
	}
	if err := s.w.Flush(); err != nil {
		s.Abort()
		return fmt.Errorf("publisher: %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		s.Abort()
		return fmt.Errorf("publisher: %s: %w", s.path, err)
	}
	if err := s.f.Close(); err != nil {
		os.Remove(s.tmp)
		return fmt.Errorf("publisher: %s: %w", s.path, err)
	}
	if err := os.Rename(s.tmp, s.path); err != nil {
		os.Remove(s.tmp)
		return fmt.Errorf("publisher: %w", err)
	}
	return nil
}

func (s *jsonSink) Abort() {
	s.f.Close()
	os.Remove(s.tmp)
}
