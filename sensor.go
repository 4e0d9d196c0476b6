package methanemap

import (
	"fmt"
	"slices"
	"strings"
)

// Sensor names one of the three imaging sources of METER-ML.
type Sensor string

// The sensors a scene can carry.
const (
	NAIP      Sensor = "naip" // USDA NAIP aerial imagery: red, green, blue, nir
	Sentinel2 Sensor = "s2"   // Sentinel-2 L2A surface reflectance, band ids B01…B12, B8A, SCL
	Sentinel1 Sensor = "s1"   // Sentinel-1 backscatter: VV, VH (HH, HV)
)

// Sensors lists the known sensors in the order chips stack them by default.
var Sensors = []Sensor{NAIP, Sentinel2, Sentinel1}

// sensorBands holds each sensor's canonical band names.
var sensorBands = map[Sensor][]string{
	NAIP:      {"red", "green", "blue", "nir"},
	Sentinel2: {"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12", "SCL"},
	Sentinel1: {"VV", "VH", "HH", "HV"},
}

// KnownSensor reports whether s is one of the three sensors.
func KnownSensor(s Sensor) bool { return sensorBands[s] != nil }

// Bands returns the canonical band names of the sensor.
func (s Sensor) Bands() []string { return slices.Clone(sensorBands[s]) }

// DefaultBands is the band order assumed for a multi-band file of this sensor
// that does not list its bands: NAIP red, green, blue, nir (three-band files:
// red, green, blue); Sentinel-1 VV, VH (one-band files: VV). Sentinel-2 files
// have no default: they must list their bands.
func (s Sensor) DefaultBands(count int) ([]string, bool) {
	switch {
	case s == NAIP && (count == 3 || count == 4):
		return []string{"red", "green", "blue", "nir"}[:count], true
	case s == Sentinel1 && (count == 1 || count == 2):
		return []string{"VV", "VH"}[:count], true
	}
	return nil, false
}

// CanonicalBand returns the canonical spelling of band for the sensor
// (Sentinel-2 and Sentinel-1 ids are upper case, NAIP names lower case), or an
// error naming the valid bands.
func (s Sensor) CanonicalBand(band string) (string, error) {
	names, ok := sensorBands[s]
	if !ok {
		return "", fmt.Errorf("unknown sensor %q", s)
	}
	for _, n := range names {
		if strings.EqualFold(n, band) {
			return n, nil
		}
	}
	return "", fmt.Errorf("unknown %s band %q (want one of %s)", s, band, strings.Join(names, ", "))
}

// IsClassBand reports whether the band holds class codes rather than
// measurements (Sentinel-2 SCL), so it must be resampled with nearest
// neighbour and never averaged.
func IsClassBand(s Sensor, band string) bool { return s == Sentinel2 && band == "SCL" }

// plausibleResolution is the pixel size range, in metres, of each sensor's
// products as users hold them: NAIP is flown at 0.3-1 m (kept to 10 m for
// resampled copies), Sentinel-2's bands are 10, 20 and 60 m, Sentinel-1
// GRD and RTC products 10-40 m. A raster far outside is another product
// declared as this sensor (a 300 m Landsat or a 3 km grid as NAIP): the
// chips would be one pixel enlarged, so it is refused.
var plausibleResolution = map[Sensor][2]float64{
	NAIP:      {0.05, 10},
	Sentinel2: {5, 100},
	Sentinel1: {5, 100},
}

// PlausibleResolution returns the range of pixel sizes, in metres, the
// sensor's products have.
func (s Sensor) PlausibleResolution() (lo, hi float64) {
	r := plausibleResolution[s]
	return r[0], r[1]
}
