// Fixed warps (see positions.go for why and when): positions from a
// lattice, and our kernel.
//
// GDAL's transformer from window pixels to source pixels (its
// "GenImgProj" transformer) takes three steps: window pixel -> window
// georeferenced coordinates (the window's geotransform), reprojection into
// the source CRS (PROJ), source georeferenced -> source pixel (the source's
// inverse geotransform). The reprojection is nearly all of the cost, and
// the same for every raster of one CRS. So it is computed exactly only at
// the nodes of a lattice fixed to the window CRS's origin (mmPositions,
// one per window and source CRS) and interpolated in between; each warp
// applies the window's and its own source's geotransforms with GDAL's
// arithmetic. The warp options are gdalwarp's, taken from the warped VRT
// it makes with the same switches; the kernel is ours for nearest and
// bilinear (kernel_run), GDAL's warp operation otherwise.

// GDAL's arithmetic, operation by operation: no fused multiply-adds
// (x86-64's baseline has none, other targets do)
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <float.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpl_error.h>
#include <cpl_minixml.h>
#include <cpl_string.h>
#include <gdal_alg.h>
#include <gdalwarper.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "positions.h"

// mmReproj is a reprojection (a GenImgProj transformer with identity
// geotransforms) kept for the lattices that use it and a while after:
// rebuilding it from its XML (PROJ's database) took 5-8 ms, more than a
// block's lattice. Its XML names the source's footprint (GDAL's area of
// interest), so each source raster of a CRS has its own: at most
// reprojsKept of those no lattice uses are kept, the most recently used.
typedef struct mmReproj {
	char *key;
	void *tr;
	pthread_mutex_t mu; // its PROJ objects are not thread safe
	int users;          // lattices using it (reprojsMu)
	struct mmReproj *next;
} mmReproj;

#define reprojsKept 8

static pthread_mutex_t reprojsMu = PTHREAD_MUTEX_INITIALIZER;
static mmReproj *reprojs; // most recently used first

static void reproj_destroy(mmReproj *r) {
	GDALDestroyTransformer(r->tr);
	pthread_mutex_destroy(&r->mu);
	CPLFree(r->key);
	free(r);
}

// reproj_for returns the reprojection of tree (its geotransforms set to
// the identity), made if needed, for one more user (reproj_release);
// NULL if GDAL cannot make it.
static mmReproj *reproj_for(CPLXMLNode *tree) {
	char *key = CPLSerializeXMLTree(tree);
	if (key == NULL)
		return NULL;
	pthread_mutex_lock(&reprojsMu);
	mmReproj **at = &reprojs, *r = reprojs;
	while (r != NULL && strcmp(r->key, key) != 0)
		at = &r->next, r = r->next;
	if (r != NULL) { // to the front
		*at = r->next;
	} else {
		GDALTransformerFunc fn = NULL;
		void *arg = NULL;
		if (GDALDeserializeTransformer(tree, &fn, &arg) == CE_None && fn == GDALGenImgProjTransform &&
		    (r = calloc(1, sizeof(*r))) != NULL) {
			r->key = key, key = NULL;
			r->tr = arg, arg = NULL;
			pthread_mutex_init(&r->mu, NULL);
		}
		if (arg)
			GDALDestroyTransformer(arg);
	}
	if (r != NULL) {
		r->users++;
		r->next = reprojs;
		reprojs = r;
		// beyond reprojsKept unused ones, the least recently used go
		int unused = 0;
		for (at = &reprojs; *at != NULL;) {
			mmReproj *q = *at;
			if (q->users == 0 && ++unused > reprojsKept) {
				*at = q->next;
				reproj_destroy(q);
				continue;
			}
			at = &q->next;
		}
	}
	pthread_mutex_unlock(&reprojsMu);
	CPLFree(key);
	return r;
}

static void reproj_release(mmReproj *r) {
	pthread_mutex_lock(&reprojsMu);
	r->users--;
	pthread_mutex_unlock(&reprojsMu);
}

struct mmPositions {
	pthread_mutex_t mu; // for exact
	double gt[6];       // the window's geotransform
	double step;        // lattice spacing, in the window CRS's units
	double rstep;       // 1 / step
	long i0, j0;        // the first node's indices (node i is at X = i * step)
	int nx, ny;         // nodes across and down
	double *gx, *gy;    // nodes' positions in the source CRS
	unsigned char *ok;  // per cell (nx-1 x ny-1): interpolation holds
	long exact;         // points computed exactly (off the lattice or its good cells)
	mmReproj *reproj;   // window CRS -> source CRS; NULL: the same CRS, no lattice
};

// the transformer the warp kernel calls
typedef struct {
	mmPositions *p;
	double gt[6], inv[6]; // the source's geotransform and its inverse
	// scratch for the points computed exactly, grown as needed
	int cap;
	double *x, *y, *z;
	int *ok, *at;
} mmCached;

typedef struct mmKernel mmKernel;

struct mmWarp {
	GDALDatasetH src;
	GDALWarpOptions *wo;
	double sgt[6], inv[6]; // the source's geotransform and its inverse
	char *wkt;             // the window's CRS
	mmKernel *kernel;      // our kernel's settings; NULL: GDAL's warp
};

static mmKernel *kernel_for(const mmWarp *wp);
static void kernel_free(mmKernel *k);

static void set_err(char *err, int errlen, const char *what) {
	const char *msg = CPLGetLastErrorMsg();
	if (msg != NULL && msg[0] != 0)
		snprintf(err, errlen, "%s: %s", what, msg);
	else
		snprintf(err, errlen, "%s", what);
}

// parse_gt reads a geotransform as GDAL's deserializer does.
static int parse_gt(const char *s, double gt[6]) {
	return CPLsscanf(s, "%lf,%lf,%lf,%lf,%lf,%lf", gt, gt + 1, gt + 2, gt + 3, gt + 4, gt + 5) == 6;
}

mmWarp *mm_warp_prepare(GDALDatasetH src, GDALDatasetH vrt, double memoryLimit, char **key, char *err, int errlen) {
	CPLPushErrorHandler(CPLQuietErrorHandler);
	CPLErrorReset();
	mmWarp *wp = NULL;
	CPLXMLNode *root = NULL, *georef = NULL;
	*key = NULL;
	char **md = GDALGetMetadata(vrt, "xml:VRT");
	if (md == NULL || md[0] == NULL) {
		set_err(err, errlen, "the warped VRT has no XML");
		goto out;
	}
	root = CPLParseXMLString(md[0]);
	CPLXMLNode *wo = root ? CPLGetXMLNode(root, "=VRTDataset.GDALWarpOptions") : NULL;
	CPLXMLNode *gip = wo ? CPLGetXMLNode(wo, "Transformer.GenImgProjTransformer") : NULL;
	const char *inv = gip ? CPLGetXMLValue(gip, "SrcInvGeoTransform", NULL) : NULL;
	if (gip == NULL || inv == NULL || CPLGetXMLNode(gip, "DstGeoTransform") == NULL) {
		set_err(err, errlen, "not an exact warp between geotransforms");
		goto out;
	}
	// the source is the dataset already open, not a second open of its file
	CPLXMLNode *sd = CPLGetXMLNode(wo, "SourceDataset");
	if (sd != NULL) {
		CPLRemoveXMLChild(wo, sd);
		CPLDestroyXMLNode(sd);
	}
	wp = calloc(1, sizeof(*wp));
	if (wp == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	wp->src = src;
	double own[6];
	const char *sgts = CPLGetXMLValue(gip, "SrcGeoTransform", "");
	if (!parse_gt(inv, wp->inv) || !parse_gt(sgts, wp->sgt) || GDALGetGeoTransform(src, own) != CE_None) {
		set_err(err, errlen, "cannot read the geotransforms");
		goto fail;
	}
	// gdalwarp may read an overview of the source (when it shrinks it):
	// the warp is then of that overview, not of src
	if (memcmp(wp->sgt, own, sizeof(own)) != 0) {
		set_err(err, errlen, "gdalwarp reads an overview of the source");
		goto fail;
	}
	wp->wkt = CPLStrdup(GDALGetProjectionRef(vrt));
	// the reprojection's name: this transformer with identity
	// geotransforms (both CRSs and the reprojection's options in it);
	// every position of the warp comes from it, on any window
	georef = CPLCloneXMLTree(gip);
	CPLSetXMLValue(georef, "SrcGeoTransform", "0,1,0,0,0,1");
	CPLSetXMLValue(georef, "SrcInvGeoTransform", "0,1,0,0,0,1");
	CPLSetXMLValue(georef, "DstGeoTransform", "0,1,0,0,0,1");
	CPLSetXMLValue(georef, "DstInvGeoTransform", "0,1,0,0,0,1");
	// so the options are read without it (building it again costs ~3 ms)
	CPLXMLNode *tr = CPLGetXMLNode(wo, "Transformer");
	CPLRemoveXMLChild(wo, tr);
	CPLDestroyXMLNode(tr);
	wp->wo = GDALDeserializeWarpOptions(wo);
	if (wp->wo == NULL) {
		set_err(err, errlen, "cannot rebuild gdalwarp's warp options");
		goto fail;
	}
	// a vertical shift uses the transformed z, which the table does not keep
	if (CSLFetchNameValue(wp->wo->papszWarpOptions, "APPLY_VERTICAL_SHIFT") != NULL) {
		snprintf(err, errlen, "vertical shift");
		goto fail;
	}
	// the VRT keeps the memory limit with 6 digits: gdalwarp's own
	wp->wo->dfWarpMemoryLimit = memoryLimit;
	// one thread: the kernel would clone the transformer for more
	wp->wo->papszWarpOptions = CSLSetNameValue(wp->wo->papszWarpOptions, "NUM_THREADS", "1");
	// whether our kernel makes this warp depends on the options and the
	// source alone: decided once
	wp->kernel = kernel_for(wp);
	*key = CPLSerializeXMLTree(georef);
	goto out;
fail:
	mm_warp_free(wp);
	wp = NULL;
out:
	if (georef)
		CPLDestroyXMLNode(georef);
	if (root)
		CPLDestroyXMLNode(root);
	CPLPopErrorHandler();
	return wp;
}

void mm_warp_free(mmWarp *wp) {
	if (wp == NULL)
		return;
	if (wp->wo)
		GDALDestroyWarpOptions(wp->wo);
	kernel_free(wp->kernel);
	CPLFree(wp->wkt);
	free(wp);
}

// lattice_step is the lattice's spacing in window pixels for a window
// pixel of size pixel (window CRS units, metres for the grids' UTM).
// Bilinear interpolation is exact for the constant, linear and cross terms
// of the reprojection; its error comes from the curvature, ~(step x
// pixel)^2/8 times the second derivative, so in window pixels it goes
// with step^2 x pixel: from UTM to lon/lat at 45 degrees, ~1e-5 of a 10 m
// pixel at 8 pixels. The step keeps step^2 x pixel at most that of 8
// pixels of 10 m (8 pixels at 10 m and coarser, 25 at 1 m, 32 at most):
// METER-ML's 1 m windows reproject ten times fewer nodes for the same
// error. It depends on the pixel alone, so a window's lattice is the same
// whatever the window.
static int lattice_step(double pixel) {
	const double s = floor(8 * sqrt(10 / pixel));
	if (!(s <= 32)) // and NaN or +Inf (no pixel size)
		return 32;
	return s < 8 ? 8 : (int)s;
}

int mm_lattice_step(double pixel) { return lattice_step(pixel); }
// latticeTolerance is the largest error (in window pixels) a cell's
// interpolation may have at its centre, where it is largest for a smooth
// reprojection; cells beyond it (near a pole, across the antimeridian)
// are computed exactly, point by point.
#define latticeTolerance 1e-4

mmPositions *mm_positions_new(const char *key, const double *wgt, int w, int h, char *err, int errlen) {
	CPLPushErrorHandler(CPLQuietErrorHandler);
	CPLErrorReset();
	mmPositions *p = NULL;
	double *cx = NULL, *cy = NULL, *cz = NULL;
	int *cok = NULL, *nok = NULL;
	CPLXMLNode *tree = CPLParseXMLString(key);
	double gt[6];
	memcpy(gt, wgt, sizeof(gt));
	if (tree == NULL || gt[2] != 0 || gt[4] != 0 || gt[1] <= 0 || gt[5] >= 0) {
		set_err(err, errlen, "the window is not north up");
		goto out;
	}
	// the window's CRS is the source's: positions are the geotransforms'
	// alone, as GDAL computes them, and there is nothing to interpolate
	int same = CPLGetXMLNode(tree, "ReprojectTransformer") == NULL;
	mmReproj *rp = same ? NULL : reproj_for(tree);
	if (!same && rp == NULL) {
		set_err(err, errlen, "cannot rebuild the positions' transformer");
		goto out;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		if (rp)
			reproj_release(rp);
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	pthread_mutex_init(&p->mu, NULL);
	p->reproj = rp;
	memcpy(p->gt, gt, sizeof(gt));
	if (same)
		goto out;
	// nodes at whole multiples of step from the CRS's origin, whatever the
	// window: a point's position then does not depend on the window it is
	// warped in. One node beyond the window on every side.
	const int stepPx = lattice_step(gt[1]);
	p->step = stepPx * gt[1];
	p->rstep = 1 / p->step;
	double minX = gt[0], maxX = gt[0] + w * gt[1], maxY = gt[3], minY = gt[3] + h * gt[5];
	p->i0 = (long)floor(minX / p->step) - 1;
	p->j0 = (long)floor(minY / p->step) - 1;
	p->nx = (int)((long)floor(maxX / p->step) + 2 - p->i0 + 1);
	p->ny = (int)((long)floor(maxY / p->step) + 2 - p->j0 + 1);
	size_t nodes = (size_t)p->nx * p->ny, cells = (size_t)(p->nx - 1) * (p->ny - 1);
	p->gx = malloc(sizeof(double) * nodes);
	p->gy = malloc(sizeof(double) * nodes);
	p->ok = malloc(cells);
	double *nz = calloc(nodes, sizeof(double));
	nok = malloc(sizeof(int) * nodes);
	cx = malloc(sizeof(double) * cells), cy = malloc(sizeof(double) * cells), cz = calloc(cells, sizeof(double));
	cok = malloc(sizeof(int) * cells);
	if (!p->gx || !p->gy || !p->ok || !nz || !nok || !cx || !cy || !cz || !cok) {
		free(nz);
		snprintf(err, errlen, "out of memory for a %d x %d lattice", p->nx, p->ny);
		goto fail;
	}
	for (int j = 0; j < p->ny; j++)
		for (int i = 0; i < p->nx; i++) {
			p->gx[(size_t)j * p->nx + i] = (p->i0 + i) * p->step;
			p->gy[(size_t)j * p->nx + i] = (p->j0 + j) * p->step;
		}
	for (int j = 0; j + 1 < p->ny; j++)
		for (int i = 0; i + 1 < p->nx; i++) {
			cx[(size_t)j * (p->nx - 1) + i] = (p->i0 + i + 0.5) * p->step;
			cy[(size_t)j * (p->nx - 1) + i] = (p->j0 + j + 0.5) * p->step;
		}
	pthread_mutex_lock(&rp->mu);
	int r1 = GDALGenImgProjTransform(rp->tr, TRUE, (int)nodes, p->gx, p->gy, nz, nok);
	int r2 = GDALGenImgProjTransform(rp->tr, TRUE, (int)cells, cx, cy, cz, cok);
	pthread_mutex_unlock(&rp->mu);
	free(nz);
	if (!r1 || !r2) {
		set_err(err, errlen, "cannot reproject the lattice");
		goto fail;
	}
	// a cell holds where its four nodes and its centre transformed and the
	// centre's interpolation is within the tolerance (in window pixels:
	// the cell's sides span stepPx of them)
	for (int j = 0; j + 1 < p->ny; j++)
		for (int i = 0; i + 1 < p->nx; i++) {
			size_t k = (size_t)j * p->nx + i, c = (size_t)j * (p->nx - 1) + i;
			size_t k10 = k + 1, k01 = k + p->nx, k11 = k + p->nx + 1;
			int good = nok[k] && nok[k10] && nok[k01] && nok[k11] && cok[c];
			if (good) {
				double ix = (p->gx[k] + p->gx[k10] + p->gx[k01] + p->gx[k11]) / 4;
				double iy = (p->gy[k] + p->gy[k10] + p->gy[k01] + p->gy[k11]) / 4;
				double sx = hypot(p->gx[k10] - p->gx[k], p->gy[k10] - p->gy[k]) / stepPx;
				double sy = hypot(p->gx[k01] - p->gx[k], p->gy[k01] - p->gy[k]) / stepPx;
				double e = hypot(ix - cx[c], iy - cy[c]);
				double px = fmin(sx, sy); // a window pixel's size in the source CRS
				good = px > 0 && isfinite(e) && e <= latticeTolerance * px;
			}
			p->ok[c] = good;
		}
	goto out;
fail:
	mm_positions_free(p);
	p = NULL;
out:
	free(cx), free(cy), free(cz), free(cok), free(nok);
	if (tree)
		CPLDestroyXMLNode(tree);
	CPLPopErrorHandler();
	return p;
}

void mm_positions_free(mmPositions *p) {
	if (p == NULL)
		return;
	if (p->reproj)
		reproj_release(p->reproj);
	free(p->gx), free(p->gy), free(p->ok);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

long mm_positions_exact(mmPositions *p) {
	pthread_mutex_lock(&p->mu);
	long n = p->exact;
	pthread_mutex_unlock(&p->mu);
	return n;
}


static int grow(mmCached *c, int n) {
	if (n <= c->cap)
		return 1;
	free(c->x), free(c->y), free(c->z), free(c->ok), free(c->at);
	c->x = malloc(sizeof(double) * n);
	c->y = malloc(sizeof(double) * n);
	c->z = malloc(sizeof(double) * n);
	c->ok = malloc(sizeof(int) * n);
	c->at = malloc(sizeof(int) * n);
	c->cap = (c->x && c->y && c->z && c->ok && c->at) ? n : 0;
	return c->cap > 0;
}

// ifloor is (int)floor(x) for |x| < 2^30 without the call to libm's
// floor (x86-64's baseline has no instruction for it): the same integer.
static inline int ifloor(double x) {
	int i = (int)x; // truncates toward zero
	return x < i ? i - 1 : i;
}

// apply_gt is GDALApplyGeoTransform, inlined: the same expression in the
// same order (no fused multiply-add on x86-64's baseline), so the same
// doubles.
static inline void apply_gt(const double *gt, double px, double py, double *x, double *y) {
	*x = gt[0] + px * gt[1] + py * gt[2];
	*y = gt[3] + px * gt[4] + py * gt[5];
}

// interpolate puts the source CRS position of the window CRS point X, Y
// in *sx, *sy from the lattice; 0 when its cell does not hold.
static inline int interpolate(const mmPositions *p, double X, double Y, double *sx, double *sy) {
	if (p->reproj == NULL) {
		*sx = X, *sy = Y;
		return 1;
	}
	double u = X * p->rstep, v = Y * p->rstep;
	if (!(fabs(u) < 0x1p30 && fabs(v) < 0x1p30))
		return 0;
	double fu = ifloor(u), fv = ifloor(v);
	long i = (long)fu - p->i0, j = (long)fv - p->j0;
	if (!(i >= 0 && j >= 0 && i + 1 < p->nx && j + 1 < p->ny))
		return 0;
	if (!p->ok[(size_t)j * (p->nx - 1) + i])
		return 0;
	double a = u - fu, b = v - fv;
	size_t k = (size_t)j * p->nx + i;
	size_t k10 = k + 1, k01 = k + p->nx, k11 = k + p->nx + 1;
	// down the cell's two sides first, then across (row_positions works
	// the sides out once per cell and row: keep the two the same)
	const double b1 = 1 - b;
	*sx = (1 - a) * (b1 * p->gx[k] + b * p->gx[k01]) + a * (b1 * p->gx[k10] + b * p->gx[k11]);
	*sy = (1 - a) * (b1 * p->gy[k] + b * p->gy[k01]) + a * (b1 * p->gy[k10] + b * p->gy[k11]);
	return 1;
}

// mm_cached_transform is the warp's transformer: GDALGenImgProjTransform
// with the source's geotransform, but with the reprojection interpolated
// on the lattice where it holds (computed exactly elsewhere); the window's
// and the source's geotransforms are applied as GDAL applies them
// (GDALApplyGeoTransform is the same expression, compiled in the same
// file of libgdal).
static int exact_points(mmCached *c, int m, double *x, double *y, double *z, int *ok);

static int mm_cached_transform(void *arg, int dstToSrc, int n, double *x, double *y, double *z, int *ok) {
	mmCached *c = arg;
	mmPositions *p = c->p;
	if (n <= 0)
		return TRUE;
	if (!grow(c, n)) {
		CPLError(CE_Failure, CPLE_OutOfMemory, "out of memory for %d positions", n);
		return FALSE;
	}
	if (!dstToSrc) { // source pixels -> window pixels, exactly
		for (int i = 0; i < n; i++)
			if (x[i] != HUGE_VAL && y[i] != HUGE_VAL)
				GDALApplyGeoTransform(c->gt, x[i], y[i], x + i, y + i);
		int r = TRUE;
		if (p->reproj != NULL) {
			pthread_mutex_lock(&p->reproj->mu);
			r = GDALGenImgProjTransform(p->reproj->tr, FALSE, n, x, y, z, ok);
			pthread_mutex_unlock(&p->reproj->mu);
		} else {
			for (int i = 0; i < n; i++)
				ok[i] = x[i] != HUGE_VAL && y[i] != HUGE_VAL;
		}
		if (r) {
			double inv[6];
			if (!GDALInvGeoTransform(p->gt, inv))
				return FALSE;
			for (int i = 0; i < n; i++)
				if (ok[i])
					GDALApplyGeoTransform(inv, x[i], y[i], x + i, y + i);
		}
		return r;
	}
	int m = 0;
	for (int i = 0; i < n; i++) {
		double X, Y, sx, sy;
		apply_gt(p->gt, x[i], y[i], &X, &Y);
		if (interpolate(p, X, Y, &sx, &sy)) {
			apply_gt(c->inv, sx, sy, x + i, y + i);
			ok[i] = 1;
			continue;
		}
		c->x[m] = X, c->y[m] = Y, c->z[m] = z ? z[i] : 0, c->at[m] = i;
		m++;
	}
	return exact_points(c, m, x, y, z, ok);
}

// exact_points reprojects exactly the m points that c->x, c->y (window
// CRS) hold, and puts their source pixel positions at c->at in x, y.
static int exact_points(mmCached *c, int m, double *x, double *y, double *z, int *ok) {
	mmPositions *p = c->p;
	if (m == 0)
		return TRUE;
	pthread_mutex_lock(&p->reproj->mu);
	int r = GDALGenImgProjTransform(p->reproj->tr, TRUE, m, c->x, c->y, c->z, c->ok);
	pthread_mutex_unlock(&p->reproj->mu);
	pthread_mutex_lock(&p->mu);
	p->exact += m;
	pthread_mutex_unlock(&p->mu);
	if (!r)
		return FALSE;
	for (int j = 0; j < m; j++) {
		int i = c->at[j];
		ok[i] = c->ok[j];
		if (ok[i])
			GDALApplyGeoTransform(c->inv, c->x[j], c->y[j], x + i, y + i);
		if (z)
			z[i] = c->z[j];
	}
	return TRUE;
}

// Our kernel: GDAL's warp kernel for nearest and bilinear (its 4-sample
// formula, used when the source is not shrunk) as GDAL 3.6 runs it for
// this recipe (-ot Float32 -dstnodata nan: a Float64 working type, a
// destination validity mask, hence GWKRealCase), with the same arithmetic
// in the same order, over the same positions. GDAL's general kernel calls
// through function pointers and tests masks bit by bit per sample: ~40
// ns a sample here, against a few for this loop. Anything else (another
// data type, a mask band, alpha, a cutline, shrinking) goes to GDAL's own.

static long kernelRuns;

long mm_kernel_runs(void) { return __atomic_load_n(&kernelRuns, __ATOMIC_RELAXED); }

// runsOff turns kernel_run's runs of pixels off (tests compare the two);
// runPixels counts the pixels valued in runs.
static int runsOff;
static long runPixels;

void mm_kernel_set_runs(int on) { __atomic_store_n(&runsOff, !on, __ATOMIC_RELAXED); }
long mm_kernel_run_pixels(void) { return __atomic_load_n(&runPixels, __ATOMIC_RELAXED); }

// are_real_equal is GDAL's ARE_REAL_EQUAL for float and for double (its
// nodata test on a Float32 or Float64 working buffer).
static int are_real_equal_f(float a, float b) {
	return a == b || fabsf(a - b) < FLT_EPSILON * fabsf(a + b) * 2;
}

static int are_real_equal_d(double a, double b) {
	return a == b || fabs(a - b) < FLT_EPSILON * fabs(a + b) * 2;
}

struct mmKernel {
	int bands, nearest;
	int hasNodata; // a nodata per band (padfSrcNoDataReal)
	int wt64;      // the working data type is Float64, not Float32
	int unified;   // 0 none (UNIFIED_SRC_NODATA=NO), 1 partial (GDAL's default)
	double *nodata; // per band
	int *nanNodata;
};

static int kernel_eligible(const mmWarp *wp, mmKernel *k);

static void kernel_free(mmKernel *k) {
	if (k == NULL)
		return;
	free(k->nodata), free(k->nanNodata);
	free(k);
}

// kernel_for returns our kernel's settings when it reproduces GDAL's for
// the warp, else NULL.
static mmKernel *kernel_for(const mmWarp *wp) {
	mmKernel *k = calloc(1, sizeof(*k));
	if (k == NULL)
		return NULL;
	if (!kernel_eligible(wp, k)) {
		kernel_free(k);
		return NULL;
	}
	return k;
}

// kernel_eligible fills k (zeroed) when our kernel reproduces GDAL's for
// the warp, else returns 0.
static int kernel_eligible(const mmWarp *wp, mmKernel *k) {
	const GDALWarpOptions *wo = wp->wo;
	const int bands = wo->nBandCount;
	if (bands < 1 || wo->nSrcAlphaBand != 0 || wo->nDstAlphaBand != 0 || wo->hCutline != NULL ||
	    wo->pfnSrcDensityMaskFunc != NULL || wo->pfnDstDensityMaskFunc != NULL || wo->pfnSrcValidityMaskFunc != NULL ||
	    wo->pfnDstValidityMaskFunc != NULL || wo->papfnSrcPerBandValidityMaskFunc != NULL ||
	    wo->pfnPreWarpChunkProcessor != NULL || wo->pfnPostWarpChunkProcessor != NULL)
		return 0;
	if (wo->eResampleAlg != GRA_NearestNeighbour && wo->eResampleAlg != GRA_Bilinear)
		return 0;
	if ((wo->eWorkingDataType != GDT_Float32 && wo->eWorkingDataType != GDT_Float64) || wo->padfDstNoDataReal == NULL)
		return 0;
	if (CSLFetchNameValue(wo->papszWarpOptions, "SRC_COORD_PRECISION") != NULL ||
	    CSLFetchNameValue(wo->papszWarpOptions, "USE_GENERAL_CASE") != NULL)
		return 0;
	const char *init = CSLFetchNameValue(wo->papszWarpOptions, "INIT_DEST");
	if (init == NULL || !EQUAL(init, "NO_DATA"))
		return 0;
	if (GDALGetRasterXSize(wp->src) < 2 || GDALGetRasterYSize(wp->src) < 2)
		return 0;
	for (int b = 0; b < bands; b++) {
		if (!isnan(wo->padfDstNoDataReal[b]) || (wo->padfDstNoDataImag && wo->padfDstNoDataImag[b] != 0))
			return 0;
		GDALRasterBandH band = GDALGetRasterBand(wp->src, wo->panSrcBands[b]);
		if (band == NULL)
			return 0;
		switch (GDALGetRasterDataType(band)) {
		case GDT_Byte:
		case GDT_UInt16:
		case GDT_Int16:
		case GDT_Float32:
			break;
		default:
			return 0;
		}
		// GDAL's warper reads one mask band: the first band's, when it is
		// the dataset's and not alpha (the recipe's -nosrcalpha makes
		// alpha data); a mask like that is for GDAL's kernel
		int flags = GDALGetMaskFlags(band);
		if (b == 0 && (flags & GMF_PER_DATASET) && !(flags & GMF_ALPHA))
			return 0;
		if (wo->padfSrcNoDataImag && wo->padfSrcNoDataImag[b] != 0)
			return 0;
	}
	memset(k, 0, sizeof(*k));
	k->bands = bands;
	k->nearest = wo->eResampleAlg == GRA_NearestNeighbour;
	k->wt64 = wo->eWorkingDataType == GDT_Float64;
	if (wo->padfSrcNoDataReal != NULL) {
		k->hasNodata = 1;
		const char *u = CSLFetchNameValue(wo->papszWarpOptions, "UNIFIED_SRC_NODATA");
		if (bands == 1 || u == NULL || EQUAL(u, "PARTIAL"))
			k->unified = 1;
		else if (CPLTestBool(u)) // YES: per band masks or not, by chunk: GDAL's
			return 0;
		k->nodata = malloc(sizeof(double) * bands);
		k->nanNodata = malloc(sizeof(int) * bands);
		if (!k->nodata || !k->nanNodata) // kernel_for frees them
			return 0;
		for (int b = 0; b < bands; b++) {
			k->nodata[b] = k->wt64 ? wo->padfSrcNoDataReal[b] : (float)wo->padfSrcNoDataReal[b];
			k->nanNodata[b] = isnan(k->nodata[b]);
		}
	}
	return 1;
}

// nodata leaves pixel o of every band without data (NaN).
static inline void nodata(float *out, size_t plane, size_t o, int bands) {
	for (int b = 0; b < bands; b++)
		out[b * plane + o] = NAN;
}

// band_valid is GDAL's source nodata mask for one band and sample.
static inline int band_valid(const mmKernel *k, int b, float v) {
	if (!k->hasNodata)
		return 1;
	if (k->nanNodata[b])
		return !isnan(v);
	// the source values (Byte, (U)Int16, Float32) are exact in either type
	return k->wt64 ? !are_real_equal_d(v, k->nodata[b]) : !are_real_equal_f(v, (float)k->nodata[b]);
}

// row_positions puts in x, y the source positions of row r's w pixel
// centres: the doubles mm_cached_transform gives for them (as GDAL's
// kernel asks for them), with what a row shares worked out once. The
// window is north up (mm_positions_new), so apply_gt's terms in gt[2] and
// gt[4] add a zero: a row's Y, and its row of lattice cells, are the
// same for every pixel.
static int row_positions(mmCached *c, int w, int r, double *x, double *y, double *z, int *ok) {
	const mmPositions *p = c->p;
	const double *gt = p->gt, *inv = c->inv;
	if (!grow(c, w)) {
		CPLError(CE_Failure, CPLE_OutOfMemory, "out of memory for %d positions", w);
		return FALSE;
	}
	const double Y = gt[3] + (r + 0.5) * gt[5];
	if (p->reproj == NULL) {
		for (int i = 0; i < w; i++) {
			const double X = gt[0] + (i + 0.5) * gt[1];
			x[i] = inv[0] + X * inv[1] + Y * inv[2];
			y[i] = inv[3] + X * inv[4] + Y * inv[5];
			ok[i] = 1;
		}
		return TRUE;
	}
	// interpolate's arithmetic, with v's terms hoisted, and a cell's sides
	// worked out once for the row's pixels in it
	const double v = Y * p->rstep;
	long j = -1;
	double b = 0;
	if (fabs(v) < 0x1p30) {
		const double fv = ifloor(v);
		j = (long)fv - p->j0, b = v - fv;
	}
	const int rowOK = j >= 0 && j + 1 < p->ny;
	const double b1 = 1 - b;
	const unsigned char *cells = rowOK ? p->ok + (size_t)j * (p->nx - 1) : NULL;
	const double *gx = rowOK ? p->gx + (size_t)j * p->nx : NULL, *gy = rowOK ? p->gy + (size_t)j * p->nx : NULL;
	int m = 0;
	// the cell the last pixel fell in, and where its west and east sides
	// meet the row (x0, y0; x1, y1)
	long cell = -1;
	double x0 = 0, x1 = 0, y0 = 0, y1 = 0;
	for (int i = 0; i < w; i++) {
		const double X = gt[0] + (i + 0.5) * gt[1];
		if (rowOK) {
			const double u = X * p->rstep;
			if (fabs(u) < 0x1p30) {
				const double fu = ifloor(u);
				const long ii = (long)fu - p->i0;
				if (ii >= 0 && ii + 1 < p->nx && cells[ii]) {
					const double a = u - fu;
					if (ii != cell) {
						const long k01 = ii + p->nx;
						cell = ii;
						x0 = b1 * gx[ii] + b * gx[k01], x1 = b1 * gx[ii + 1] + b * gx[k01 + 1];
						y0 = b1 * gy[ii] + b * gy[k01], y1 = b1 * gy[ii + 1] + b * gy[k01 + 1];
					}
					const double sx = (1 - a) * x0 + a * x1;
					const double sy = (1 - a) * y0 + a * y1;
					x[i] = inv[0] + sx * inv[1] + sy * inv[2];
					y[i] = inv[3] + sx * inv[4] + sy * inv[5];
					ok[i] = 1;
					continue;
				}
			}
		}
		c->x[m] = X, c->y[m] = Y, c->z[m] = 0, c->at[m] = i;
		m++;
	}
	return exact_points(c, m, x, y, z, ok);
}

// in_raster is GWKCheckAndComputeSrcOffsets' test: the source position
// sx, sy (ok: transformed) lies in the W x H raster.
static inline int in_raster(double sx, double sy, int ok, int W, int H) {
	return ok && !isnan(sx) && !isnan(sy) && sx >= 0 && sy >= 0 && !(sx + 1e-10 > W) && !(sy + 1e-10 > H);
}

// weights is GWKBilinearResample4Sample's start, in source raster pixels:
// the first of the four samples around sx, sy (in the raster, far under
// 2^30) in *ix, *iy, their weights in m, and their sum, added up in its
// order.
static inline double weights(double sx, double sy, int *ix, int *iy, double m[4]) {
	int jx = ifloor(sx - 0.5), jy = ifloor(sy - 0.5);
	double rx = 1.5 - (sx - jx), ry = 1.5 - (sy - jy);
	if (jx == -1)
		jx = 0, rx = 1;
	if (jy == -1)
		jy = 0, ry = 1;
	*ix = jx, *iy = jy;
	m[0] = rx * ry, m[1] = (1.0 - rx) * ry, m[2] = rx * (1.0 - ry), m[3] = (1.0 - rx) * (1.0 - ry);
	double d = 0;
	d += m[0], d += m[1], d += m[2], d += m[3];
	return d;
}

#ifdef __SSE2__
// same_samples reports whether the pixel at source position sx, sy (ok:
// transformed) is one our kernel gives the bilinear value of, from the four
// samples at ix, iy with every one in the raster, and puts its weights and
// their sum (at least GDAL's 0.00001) in m and *div, as kernel_run would.
// Its centre's unified mask is the caller's to check (centre_of).
static inline int same_samples(double sx, double sy, int ok, int W, int H, int ix, int iy, double m[4], double *div) {
	if (!in_raster(sx, sy, ok, W, H))
		return 0;
	int jx, jy;
	*div = weights(sx, sy, &jx, &jy, m);
	return jx == ix && jy == iy && *div >= 0.00001;
}

// centre_of is the source window index of the pixel at sx, sy (in the raster,
// same_samples checked), as kernel_run finds its centre.
static inline size_t centre_of(double sx, double sy, int W, int H, int x0, int y0, int sw) {
	int cx = (int)(sx + 1e-10), cy = (int)(sy + 1e-10);
	if (cx == W)
		cx--;
	if (cy == H)
		cy--;
	return (size_t)(cx - x0) + (size_t)(cy - y0) * sw;
}

// runMax is the most pixels run takes at a time.
#define runMax 64

// run writes the values of n neighbouring pixels (out[0..n-1] of every
// band's plane) from the same four samples at at, pixel p's weights at
// m[4p..4p+3] and their sum at div[p]: two pixels at a time in SSE2's two
// lanes, each lane the same operations in the same order as
// kernel_run's for one pixel (so the same doubles, and floats).
static inline void run(const float *buf, size_t splane, const size_t at[4], const double *m, const double *div, int n, float *out,
                       size_t plane, int bands) {
	for (int b = 0; b < bands; b++) {
		const float *src = buf + b * splane;
		const __m128d S0 = _mm_set1_pd((double)src[at[0]]), S1 = _mm_set1_pd((double)src[at[1]]);
		const __m128d S2 = _mm_set1_pd((double)src[at[2]]), S3 = _mm_set1_pd((double)src[at[3]]);
		float *row = out + b * plane;
		int p = 0;
		for (; p + 1 < n; p += 2) {
			const double *m0 = m + 4 * p, *m1 = m0 + 4;
			__m128d acc = _mm_setzero_pd();
			acc = _mm_add_pd(acc, _mm_mul_pd(S0, _mm_set_pd(m1[0], m0[0])));
			acc = _mm_add_pd(acc, _mm_mul_pd(S1, _mm_set_pd(m1[1], m0[1])));
			acc = _mm_add_pd(acc, _mm_mul_pd(S2, _mm_set_pd(m1[2], m0[2])));
			acc = _mm_add_pd(acc, _mm_mul_pd(S3, _mm_set_pd(m1[3], m0[3])));
			const int one0 = div[p] == 1.0, one1 = div[p + 1] == 1.0;
			__m128d val = acc;
			if (!(one0 && one1)) {
				const __m128d q = _mm_div_pd(acc, _mm_set_pd(div[p + 1], div[p]));
				val = q;
				if (one0 || one1) { // one lane's sum is 1: GDAL takes its value undivided
					double a[2], v[2];
					_mm_storeu_pd(a, acc), _mm_storeu_pd(v, q);
					val = _mm_set_pd(one1 ? a[1] : v[1], one0 ? a[0] : v[0]);
				}
			}
			const __m128 f = _mm_cvtpd_ps(val);
			row[p] = _mm_cvtss_f32(f);
			row[p + 1] = _mm_cvtss_f32(_mm_shuffle_ps(f, f, 1));
		}
		if (p < n) { // the last of an odd run, as kernel_run computes it
			const double *m0 = m + 4 * p;
			double acc = 0;
			acc += (double)src[at[0]] * m0[0];
			acc += (double)src[at[1]] * m0[1];
			acc += (double)src[at[2]] * m0[2];
			acc += (double)src[at[3]] * m0[3];
			row[p] = (float)(div[p] == 1.0 ? acc : acc / div[p]);
		}
	}
}
#endif

// kernel_run warps with our kernel into out (NaN where GDAL leaves
// nodata), computing the positions as GDAL asks for them (row by row,
// pixel centres) with c. -1: the warp is GDAL's to make after all.
static int kernel_run(mmWarp *wp, mmKernel *k, mmCached *c, float *out, int w, int h, char *err, int errlen) {
	const int W = GDALGetRasterXSize(wp->src), H = GDALGetRasterYSize(wp->src);
	const int bands = k->bands;
	double *x = malloc(sizeof(double) * w), *y = malloc(sizeof(double) * w), *z = malloc(sizeof(double) * w);
	double *px = malloc(sizeof(double) * w), *py = malloc(sizeof(double) * w);
	int *ok = malloc(sizeof(int) * w), *pok = calloc(w, sizeof(int));
	float *buf = NULL;
	unsigned char *valid = NULL, *any = NULL, *every_band = NULL;
	int ret = 0;
	if (!x || !y || !z || !ok || !px || !py || !pok) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	// pass 1, on every fourth row and the last: the source pixels the
	// window's positions reach (near the raster), and the largest steps
	// in source pixels from one window pixel to the next (along a row: xx,
	// yx; down a column: yy, xy), which bound how far the rows between
	// can reach beyond
	double minx = HUGE_VAL, maxx = -HUGE_VAL, miny = HUGE_VAL, maxy = -HUGE_VAL;
	double xx = 0, yx = 0, yy = 0, xy = 0;
	const int every = 4;
	int prev = -1;
	for (int r = 0; r < h; r = (r + every < h || r == h - 1) ? r + every : h - 1) {
		if (!row_positions(c, w, r, x, y, z, ok)) {
			set_err(err, errlen, "transform the window's positions");
			goto out;
		}
		const double rows = prev >= 0 ? 1.0 / (r - prev) : 0; // per row, from the last row sampled
		for (int i = 0; i < w; i++) {
			if (!ok[i] || isnan(x[i]) || isnan(y[i]))
				continue;
			// (comparisons, not libm's fmax: the values are not NaN)
			if (i + 1 < w && ok[i + 1]) {
				const double dx = fabs(x[i + 1] - x[i]), dy = fabs(y[i + 1] - y[i]);
				xx = dx > xx ? dx : xx, yx = dy > yx ? dy : yx;
			}
			if (pok[i]) {
				const double dy = fabs(y[i] - py[i]) * rows, dx = fabs(x[i] - px[i]) * rows;
				yy = dy > yy ? dy : yy, xy = dx > xy ? dx : xy;
			}
			if (x[i] < -64 || y[i] < -64 || x[i] > W + 64 || y[i] > H + 64)
				continue;
			minx = x[i] < minx ? x[i] : minx, maxx = x[i] > maxx ? x[i] : maxx;
			miny = y[i] < miny ? y[i] : miny, maxy = y[i] > maxy ? y[i] : maxy;
		}
		memcpy(px, x, sizeof(double) * w), memcpy(py, y, sizeof(double) * w), memcpy(pok, ok, sizeof(int) * w);
		prev = r;
		if (r == h - 1)
			break;
	}
	// GDAL takes its 4-sample bilinear formula where a warp chunk's source
	// window is at most 1/0.95 of its size, per axis (dfXScale,
	// dfYScale). How it chunks the window is its own affair: a chunk's
	// source extent along x is at most its width times xx plus its height
	// times xy, and its sides are at most 2 to 1 (GDAL halves the longer
	// side) or the window's. So our formula only where that bound keeps
	// every chunk's scale over 0.96; otherwise GDAL's kernel.
	if (!k->nearest) {
		double aspect = fmax(2, fmax((double)w / h, (double)h / w));
		if (xx + aspect * xy > 1 / 0.96 || yy + aspect * yx > 1 / 0.96) {
			ret = -1;
			goto out;
		}
	}
	const size_t plane = (size_t)w * h;
	// nothing of the source near the window (rare: chips off the rasters
	// are skipped unread): GDAL's to make
	if (minx > maxx) {
		ret = -1;
		goto out;
	}
	const int mx = 2 + (int)fmin(ceil(every * xy), 1 << 20), my = 2 + (int)fmin(ceil(every * yy), 1 << 20);
	int x0 = (int)floor(minx) - mx, y0 = (int)floor(miny) - my;
	int x1 = (int)floor(maxx) + mx + 1, y1 = (int)floor(maxy) + my + 1;
	x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
	x1 = x1 > W ? W : x1, y1 = y1 > H ? H : y1;
	// and a source window far larger than the window (a source shrunk
	// many times over, which GDAL reads from an overview) too
	if (x1 <= x0 || y1 <= y0 || (size_t)(x1 - x0) * (y1 - y0) > 16 * plane + (1 << 20)) {
		ret = -1;
		goto out;
	}
	const int sw = x1 - x0, sh = y1 - y0;
	const size_t splane = (size_t)sw * sh;
	buf = malloc(sizeof(float) * splane * bands);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory for a %d x %d source window", sw, sh);
		goto out;
	}
	if (GDALDatasetRasterIO(wp->src, GF_Read, x0, y0, sw, sh, buf, sw, sh, GDT_Float32, bands, wp->wo->panSrcBands, 0, 0, 0) !=
	    CE_None) {
		set_err(err, errlen, "read the source window");
		goto out;
	}
	// GDAL's masks: per band (a sample's density), and unified (a pixel
	// some band has data in) for the centre test; and whether every band
	// has data (our shortcut)
	if (k->hasNodata) {
		valid = malloc(splane * bands);
		any = calloc(splane, 1);
		every_band = malloc(splane);
		if (!valid || !any || !every_band) {
			snprintf(err, errlen, "out of memory for a %d x %d source window's masks", sw, sh);
			goto out;
		}
		memset(every_band, 1, splane);
		for (int b = 0; b < bands; b++)
			for (size_t i = 0; i < splane; i++) {
				unsigned char v = band_valid(k, b, buf[b * splane + i]);
				valid[b * splane + i] = v;
				any[i] |= v;
				every_band[i] &= v;
			}
	}
	// pass 2: the values, a row at a time (NaN where the kernel skips a
	// pixel or a band, written there rather than over every row first)
	int lastx = INT_MIN, lasty = INT_MIN, full = 0, in[4] = {0};
#ifdef __SSE2__
	const int most = __atomic_load_n(&runsOff, __ATOMIC_RELAXED) ? 1 : runMax; // pixels a run may take
#endif
	size_t at[4] = {0};
	for (int r = 0; r < h; r++) {
		if (!row_positions(c, w, r, x, y, z, ok)) {
			set_err(err, errlen, "transform the window's positions");
			goto out;
		}
		for (int i = 0; i < w; i++) {
			// GWKCheckAndComputeSrcOffsets
			const double sx = x[i], sy = y[i];
			const size_t o = (size_t)r * w + i;
			if (!in_raster(sx, sy, ok[i], W, H)) {
				nodata(out, plane, o, bands);
				continue;
			}
			int cx = (int)(sx + 1e-10), cy = (int)(sy + 1e-10);
			if (cx == W)
				cx--;
			if (cy == H)
				cy--;
			if (cx < x0 || cx >= x1 || cy < y0 || cy >= y1) { // pass 1 missed it: GDAL's warp
				ret = -1;
				goto out;
			}
			const size_t centre = (size_t)(cx - x0) + (size_t)(cy - y0) * sw;
			if (any && k->unified && !any[centre]) {
				nodata(out, plane, o, bands);
				continue;
			}
			if (k->nearest) {
				for (int b = 0; b < bands; b++)
					out[b * plane + o] = !valid || valid[b * splane + centre] ? (float)(double)buf[b * splane + centre] : NAN;
				continue;
			}
			// GWKBilinearResample4Sample
			int ix, iy;
			double m[4];
			const double div = weights(sx, sy, &ix, &iy, m);
			// the four samples (which an enlarging warp's neighbouring
			// pixels share: worked out once for them)
			if (ix != lastx || iy != lasty) {
				lastx = ix, lasty = iy;
				for (int s = 0; s < 4; s++) {
					const int xs = ix + (s & 1), ys = iy + (s >> 1);
					in[s] = xs >= 0 && xs < W && ys >= 0 && ys < H;
					if (in[s]) {
						if (xs < x0 || xs >= x1 || ys < y0 || ys >= y1) {
							ret = -1;
							goto out;
						}
						at[s] = (size_t)(xs - x0) + (size_t)(ys - y0) * sw;
					}
				}
				full = in[0] && in[1] && in[2] && in[3] &&
				       (!every_band || (every_band[at[0]] && every_band[at[1]] && every_band[at[2]] && every_band[at[3]]));
			}
			if (full) {
				// the four samples with data in every band: the same sums,
				// without the tests
				if (div < 0.00001) {
					nodata(out, plane, o, bands);
					continue;
				}
#ifdef __SSE2__
				// the pixels after it that take the same four samples (an
				// enlarging warp's neighbours): a run, its values worked
				// out band by band from samples read once per band
				double rm[4 * runMax], rdiv[runMax];
				memcpy(rm, m, sizeof(m)), rdiv[0] = div;
				int n = 1;
				while (n < most && i + n < w && same_samples(x[i + n], y[i + n], ok[i + n], W, H, ix, iy, rm + 4 * n, rdiv + n) &&
				       (!any || !k->unified || any[centre_of(x[i + n], y[i + n], W, H, x0, y0, sw)]))
					n++;
				if (n > 1) {
					run(buf, splane, at, rm, rdiv, n, out + o, plane, bands);
					__atomic_add_fetch(&runPixels, n, __ATOMIC_RELAXED);
					i += n - 1;
					continue;
				}
#endif
				for (int b = 0; b < bands; b++) {
					const float *src = buf + b * splane;
					double acc = 0;
					acc += (double)src[at[0]] * m[0];
					acc += (double)src[at[1]] * m[1];
					acc += (double)src[at[2]] * m[2];
					acc += (double)src[at[3]] * m[3];
					out[b * plane + o] = (float)(div == 1.0 ? acc : acc / div);
				}
				continue;
			}
			for (int b = 0; b < bands; b++) {
				const float *src = buf + b * splane;
				const unsigned char *v = valid ? valid + b * splane : NULL;
				double acc = 0, sum = 0; // the weights of the samples with data
				for (int s = 0; s < 4; s++) {
					if (!in[s] || (v && !v[at[s]]))
						continue;
					sum += m[s];
					acc += (double)src[at[s]] * m[s];
				}
				double val;
				if (sum == 1.0)
					val = acc;
				else if (sum < 0.00001)
					val = NAN;
				else
					val = acc / sum;
				out[b * plane + o] = (float)val;
			}
		}
	}
	ret = 1;
out:
	free(x), free(y), free(z), free(ok), free(px), free(py), free(pok), free(buf), free(valid), free(any), free(every_band);
	return ret;
}

int mm_warp_run(mmWarp *wp, mmPositions *p, float *out, int w, int h, int bands, char *err, int errlen) {
	// the window is the positions' (p->gt)
	CPLPushErrorHandler(CPLQuietErrorHandler);
	CPLErrorReset();
	int ok = 0;
	mmCached c = {0};
	GDALWarpOperationH op = NULL;
	GDALDatasetH dst = NULL;
	c.p = p;
	memcpy(c.gt, wp->sgt, sizeof(c.gt));
	memcpy(c.inv, wp->inv, sizeof(c.inv));
	// a translation by whole pixels at the source's resolution: GDAL's
	// warper then resamples with nearest whatever it was asked
	// (GDALTransformIsTranslationOnPixelBoundaries, for its own
	// transformer; ours hides it, so it is decided here)
	const double *gt = p->gt, *inv = wp->inv;
	int translation = p->reproj == NULL && wp->sgt[1] == gt[1] && wp->sgt[5] == gt[5] && wp->sgt[2] == gt[2] &&
	                  wp->sgt[4] == gt[4] && fabs(inv[0] + gt[0] * inv[1] + gt[3] * inv[2] - round(inv[0] + gt[0] * inv[1] + gt[3] * inv[2])) <= 1e-6 &&
	                  fabs(inv[3] + gt[0] * inv[4] + gt[3] * inv[5] - round(inv[3] + gt[0] * inv[4] + gt[3] * inv[5])) <= 1e-6 &&
	                  CPLTestBool(CPLGetConfigOption("GDAL_WARP_USE_TRANSLATION_OPTIM", "YES"));
	if (wp->kernel != NULL && wp->kernel->bands == bands) {
		mmKernel k = *wp->kernel;
		if (translation)
			k.nearest = 1;
		int r = kernel_run(wp, &k, &c, out, w, h, err, errlen);
		if (r > 0)
			__atomic_add_fetch(&kernelRuns, 1, __ATOMIC_RELAXED);
		if (r >= 0) {
			ok = r;
			goto out;
		}
	}
	dst = GDALCreate(GDALGetDriverByName("MEM"), "", w, h, 0, GDT_Float32, NULL);
	if (dst == NULL) {
		set_err(err, errlen, "cannot create the window in memory");
		goto out;
	}
	// the window is GDAL's own memory, copied into out at the end: with
	// out as the bands' memory (the MEM driver's DATAPOINTER) the Go heap
	// was corrupted now and then ("found bad pointer in Go heap" in GC, in
	// 7 of about 100 loops of the positions and average tests under -race;
	// 0 of 88 with the copy), by a path not found. The copy costs a
	// window's bands twice for a moment (+~10 MiB peak on a 20 km scene)
	for (int b = 0; b < bands; b++) {
		if (GDALAddBand(dst, GDT_Float32, NULL) != CE_None) {
			set_err(err, errlen, "cannot add a band to the window");
			goto out;
		}
	}
	GDALSetGeoTransform(dst, p->gt);
	GDALSetProjection(dst, wp->wkt);
	GDALWarpOptions *wo = GDALCloneWarpOptions(wp->wo);
	if (translation)
		wo->eResampleAlg = GRA_NearestNeighbour;
	// the source window from every pixel's position, not the window's
	// edges alone: with its own transformer GDAL also adds the poles that
	// fall in the window, which ours cannot tell it (a polar window's
	// pixels near the pole came out nodata); our positions are cheap
	char steps[32];
	snprintf(steps, sizeof(steps), "%d", (w > h ? w : h) + 1); // GDAL 3.6 has no "ALL"
	wo->papszWarpOptions = CSLSetNameValue(wo->papszWarpOptions, "SAMPLE_GRID", "YES");
	wo->papszWarpOptions = CSLSetNameValue(wo->papszWarpOptions, "SAMPLE_STEPS", steps);
	wo->hSrcDS = wp->src;
	wo->hDstDS = dst;
	wo->pfnTransformer = mm_cached_transform;
	wo->pTransformerArg = &c;
	wo->pfnProgress = GDALDummyProgress;
	wo->pProgressArg = NULL;
	op = GDALCreateWarpOperation(wo);
	if (op == NULL)
		set_err(err, errlen, "cannot set up the warp");
	else if (GDALChunkAndWarpImage(op, 0, 0, w, h) != CE_None)
		set_err(err, errlen, "warp");
	else if (GDALDatasetRasterIO(dst, GF_Read, 0, 0, w, h, out, w, h, GDT_Float32, bands, NULL, 0, 0, 0) != CE_None)
		set_err(err, errlen, "read the warped window");
	else
		ok = 1;
	GDALDestroyWarpOptions(wo);
out:
	if (op)
		GDALDestroyWarpOperation(op);
	if (dst)
		GDALClose(dst);
	free(c.x), free(c.y), free(c.z), free(c.ok), free(c.at);
	CPLPopErrorHandler();
	return ok;
}
