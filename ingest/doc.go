// Package ingest opens the rasters of a scene through GDAL and checks them.
//
// It is the only package (with publisher's vector output) that touches GDAL.
// Hrefs may be local paths, http(s) URLs (read with /vsicurl/), s3:// and
// gs:// URLs (read with /vsis3/ and /vsigs/, credentials from the usual
// GDAL/AWS environment variables) or GDAL virtual paths. Each raster is
// checked to be georeferenced, to have the bands the scene says and a data
// type its sensor can have. Warped reads put any raster onto a chip's grid.
//
// ingest also maps STAC Items and ItemCollections to scenes, and writes the
// GeoTIFFs of fixtures and exported chips.
//
// Errors are marked permanent (methanemap.IsPermanent) when retrying cannot
// help: a missing local file, a file that is not a raster, an HTTP 404. An
// HTTP 5xx, 429 or a network failure is transient.
package ingest
