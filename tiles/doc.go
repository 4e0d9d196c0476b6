// Package tiles lays the chip grid over a scene and cuts chips.
//
// The grid is a square lattice in a projected CRS (the NAIP's when it is
// projected, otherwise the UTM zone of the scene's centre) aligned to the
// CRS origin, so the same ground gets the same methanemap.ChipID in every
// scene. Only cells that touch the coverage of every sensor (and the AOI, when
// given) are chips.
//
// For each chip every sensor is warped by GDAL (through ingest) onto the
// chip's grid at the size the model card asks for — average when shrinking,
// bilinear when enlarging, nearest for class bands such as Sentinel-2 SCL —
// stacked in the card's band order and normalised. Chips are cut one at a
// time, so memory stays bounded whatever the scene's size.
package tiles
