// The C heap that GDAL allocates from: how it is kept from growing.

package ingest

/*
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
static void mm_trim(void) { malloc_trim(0); }
// the heap's free bytes (mallinfo2 walks its bins: microseconds)
static size_t mm_free_bytes(void) { return mallinfo2().fordblks; }
// Run when the program is loaded, before any thread has allocated: glibc
// fixes its number of heaps when a second thread first needs one.
__attribute__((constructor)) static void mm_one_arena(void) {
	if (getenv("MALLOC_ARENA_MAX") == NULL) mallopt(M_ARENA_MAX, 1);
}
#else
static void mm_trim(void) {}
static size_t mm_free_bytes(void) { return 0; }
#endif
*/
import "C"

import "sync/atomic"

// A large warp (trimSize bytes of output or more) gives the C heap's free
// pages back when the heap's free memory has grown by trimFree bytes since
// the last trim (trimmed pages still count as free: glibc hands them back
// to the system but keeps them in its lists).
const (
	trimSize = 4 << 20
	trimFree = 8 << 20
)

var freeAtTrim atomic.Int64 // the heap's free bytes just after the last trim

// releaseFreeMemory returns the C heap's free pages to the system
// (glibc's malloc_trim; nothing elsewhere). GDAL allocates and frees
// megabytes per large warp, and its block cache small blocks; glibc keeps
// what is freed, and the heap fragments: over a 20 km scene the resident
// size grew by ~100 MiB of free memory (measured: the same 5 km grid cut
// 12 times grew 219 → 283 MiB, with a trim after each pass it stayed at
// 194-205 MiB). Trimming after every large warp costs page faults
// instead (when a 720 px chip's GDAL buffers were mapped anew each time:
// 16% of a DenseNet run's CPU was the kernel), hence only when the heap's
// free memory has grown by trimFree. (It was at most once a second: with
// faster warps, a 20 km scene's peak then held ~70 MiB of free heap.)
func releaseFreeMemory(warped int) {
	if warped < trimSize || int64(C.mm_free_bytes())-freeAtTrim.Load() < trimFree {
		return
	}
	C.mm_trim()
	freeAtTrim.Store(int64(C.mm_free_bytes()))
}

// A program that links this package keeps one glibc malloc heap for
// every thread (mm_one_arena above, run at load; MALLOC_ARENA_MAX, when
// set, wins). Go runs C calls on whichever thread is free, so GDAL's
// buffers were spread over up to 8 heaps per core, none reusing what
// another freed: the peak resident size of a 20 km scene's chips was
// 264-275 MiB against 202 for a 5 km one; with one heap 229-235 against
// 200, with no measurable loss of speed on a 10 km score (3.47 s and
// 3.53 s, means of 4 noisy runs).
