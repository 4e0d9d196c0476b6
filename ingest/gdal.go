package ingest

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/airbusgeo/godal"
)

var registerOnce sync.Once

// register loads GDAL's drivers once per process, and removes what
// processes that died left in the temporary directory (tempdir.go).
func register() {
	registerOnce.Do(func() {
		godal.RegisterAll()
		CleanStaleTemp(time.Minute)
	})
}

// SetCacheMax sets the size of GDAL's raster block cache, in MiB, which is
// otherwise 5% of the machine's memory. It must be called before the first
// raster is opened: GDAL reads the setting once.
func SetCacheMax(mb int) error {
	if mb <= 0 {
		return fmt.Errorf("ingest: cache size must be positive, got %d MiB", mb)
	}
	// GDAL reads its configuration from the C environment; with cgo,
	// os.Setenv writes it there too.
	return os.Setenv("GDAL_CACHEMAX", strconv.Itoa(mb))
}
