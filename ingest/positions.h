// Fixed warps: positions from a lattice, and our kernel (see positions.go).
#ifndef MM_POSITIONS_H
#define MM_POSITIONS_H

#include <gdal.h>

typedef struct mmPositions mmPositions;
typedef struct mmWarp mmWarp;

// mm_warp_prepare takes the warp options of vrt, a warped VRT that
// gdalwarp made of src with the recipe's switches (-et 0), and makes them
// warp src onto any window of the VRT's CRS and pixel size. *key
// (malloc'd) names the reprojection the warp needs: warps with the same
// key onto the same window share its lattice (free it with CPLFree).
// memoryLimit is gdalwarp's -wm in bytes. NULL when the warp cannot use a
// lattice (an overview, a vertical shift...), with the reason in err.
mmWarp *mm_warp_prepare(GDALDatasetH src, GDALDatasetH vrt, double memoryLimit, char **key, char *err, int errlen);

// mm_positions_new makes the lattice of positions named by key (the
// reprojection mm_warp_prepare names) for a w x h window of geotransform
// gt: the reprojection computed exactly at nodes every few
// window pixels, fixed to the CRS's origin, and interpolated between them
// (see positions.c); NULL on failure, with the reason in err.
mmPositions *mm_positions_new(const char *key, const double *gt, int w, int h, char *err, int errlen);
void mm_positions_free(mmPositions *p);
// mm_positions_exact counts the points warps asked for that the lattice
// did not cover, computed exactly.
long mm_positions_exact(mmPositions *p);
// mm_positions_nodes counts the lattice's nodes.
int mm_positions_nodes(mmPositions *p);

// mm_warp_run warps into out (bands of w x h Float32, band after band)
// with the positions of p. 0 on failure,
// with the reason in err.
int mm_warp_run(mmWarp *wp, mmPositions *p, float *out, int w, int h, int bands, char *err, int errlen);
void mm_warp_free(mmWarp *wp);
// mm_lattice_step is the lattice's spacing in window pixels for a window
// pixel of the given size (positions.c's lattice_step).
int mm_lattice_step(double pixel);

// mm_kernel_runs counts the warps our kernel made (not GDAL's).
long mm_kernel_runs(void);
// mm_kernel_set_runs turns on (the default) or off our kernel's runs of
// pixels that share their four samples; mm_kernel_run_pixels counts the
// pixels valued in runs. For tests.
void mm_kernel_set_runs(int on);
long mm_kernel_run_pixels(void);

#endif
