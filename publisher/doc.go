// Package publisher turns detections into GeoJSON (RFC 7946) features,
// merges overlapping positive chips into sites, and writes them to sinks:
// GeoJSON, GeoJSONSeq, GeoPackage and FlatGeobuf files (through GDAL's
// vector drivers). File sinks write under a temporary name and rename when
// complete, so a GIS tool never reads a half-written file.
package publisher
