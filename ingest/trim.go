package ingest

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
static void mm_trim(void) { malloc_trim(0); }
#else
static void mm_trim(void) {}
#endif
*/
import "C"

// trimAfter is the size of a warp's output (bytes) from which Warp gives
// the C heap's free pages back to the system when it is done.
const trimAfter = 4 << 20

// releaseFreeMemory returns the C heap's free pages to the system
// (glibc's malloc_trim; nothing elsewhere). GDAL allocates and frees
// megabytes per large warp; glibc keeps what it frees, and interleaved
// with the block cache's small blocks the heap fragments: over a 20 km
// scene the resident size grew by ~100 MiB of free memory (measured: the
// same 5 km grid cut 12 times grew 219 → 283 MiB, with a trim after each
// pass it stayed at 194-205 MiB).
func releaseFreeMemory() { C.mm_trim() }
