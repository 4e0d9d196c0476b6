package ingest

/*
#cgo pkg-config: gdal
#include <stdlib.h>
#include <ogr_srs_api.h>
*/
import "C"

import (
	"fmt"
	"strconv"
	"unsafe"
)

// crsFacts are what the chip grid needs to know of a raster's CRS.
type crsFacts struct {
	name     string
	utmZone  int  // 0: not UTM
	metres   bool // projected, in metres
	datumGeo int  // EPSG code of its geographic CRS (4326, 4269, 4258, 4267...), 0 unknown
}

// facts reads the raster's CRS with OSR: its UTM zone (OSRGetUTMZone: a
// transverse Mercator with UTM's parameters), linear units, and datum.
func (r *Raster) facts() (crsFacts, error) {
	cw := C.CString(r.wkt)
	defer C.free(unsafe.Pointer(cw))
	h := C.OSRNewSpatialReference(cw)
	if h == nil {
		return crsFacts{}, fmt.Errorf("unreadable coordinate reference system")
	}
	defer C.OSRDestroySpatialReference(h)
	var f crsFacts
	if n := C.OSRGetName(h); n != nil {
		f.name = C.GoString(n)
	}
	if C.OSRIsProjected(h) != 0 {
		var north C.int
		f.utmZone = int(C.OSRGetUTMZone(h, &north))
		var unit *C.char
		f.metres = float64(C.OSRGetLinearUnits(h, &unit)) == 1
	}
	geo := C.CString("GEOGCS")
	defer C.free(unsafe.Pointer(geo))
	if code := C.OSRGetAuthorityCode(h, geo); code != nil {
		f.datumGeo, _ = strconv.Atoi(C.GoString(code))
	}
	if f.datumGeo == 0 {
		datum := C.CString("DATUM")
		defer C.free(unsafe.Pointer(datum))
		if d := C.OSRGetAttrValue(h, datum, 0); d != nil {
			f.datumGeo = datumCodes[C.GoString(d)]
		}
	}
	return f, nil
}

// datumCodes are the geographic CRSs of the datums whose UTM zones have
// EPSG codes the grid can use, by OSR's datum name.
var datumCodes = map[string]int{
	"WGS_1984": 4326, "North_American_Datum_1983": 4269, "European_Terrestrial_Reference_System_1989": 4258,
	"North_American_Datum_1927": 4267,
}

// utmOn is the EPSG code of the UTM zone of (lon, lat) on a datum, and the
// datum's name; WGS 84 where the datum has no EPSG UTM code for the zone.
func utmOn(datumGeo int, lon, lat float64) (int, string) {
	wgs := UTMZoneEPSG(lon, lat)
	zone, north := wgs%100, wgs < 32700
	switch {
	case datumGeo == 4269 && north && zone >= 1 && zone <= 23:
		return 26900 + zone, "NAD83"
	case datumGeo == 4267 && north && zone >= 3 && zone <= 22:
		return 26700 + zone, "NAD27"
	case datumGeo == 4258 && north && zone >= 28 && zone <= 38:
		return 25800 + zone, "ETRS89"
	}
	return wgs, "WGS 84"
}

// GridCRS is the CRS a chip grid over this raster is laid in, and why.
// A chip is 720 m on the ground only in a CRS whose units are ground
// metres: the raster's own when it is UTM in metres; otherwise (web
// Mercator, State Plane feet, geographic...) the UTM zone of (lon, lat)
// on the raster's datum, so that the same ground gets the same chip ids
// as in a UTM raster of that datum (NAD83 -> NAD83 / UTM).
func (r *Raster) GridCRS(lon, lat float64) (int, string, error) {
	f, err := r.facts()
	if err != nil {
		return 0, "", err
	}
	if f.utmZone != 0 && f.metres && r.EPSG != 0 {
		return r.EPSG, fmt.Sprintf("%s's own CRS, %s (UTM, metres)", r.Field, f.name), nil
	}
	epsg, datum := utmOn(f.datumGeo, lon, lat)
	why := "projected but not UTM: its units are not ground metres away from its origin"
	switch {
	case !r.Projected:
		why = "geographic (degrees)"
	case !f.metres:
		why = "not in metres"
	case f.utmZone != 0:
		why = "UTM with no EPSG code"
	}
	return epsg, fmt.Sprintf("%s's CRS, %s, is %s: the UTM zone of the scene centre on %s, EPSG:%d", r.Field, f.name, why, datum, epsg), nil
}
