// Exact warps whose source positions are shared between the rasters of one
// CRS (see positions.go for why and when).
//
// GDAL's transformer from window pixels to source pixels (its
// "GenImgProj" transformer) takes three steps: window pixel -> window
// georeferenced coordinates (the window's geotransform), reprojection into
// the source CRS (PROJ), source georeferenced -> source pixel (the source's
// inverse geotransform). Only the last step differs between two rasters of
// the same CRS warped onto the same window, and the reprojection is nearly
// all of the cost. So the positions after the second step are kept in a
// table per window and source CRS, computed by the same transformer with
// an identity source geotransform (so its last step changes nothing), and
// each warp applies its own inverse geotransform to them with the same
// arithmetic GDAL does. The kernel, options and everything else are
// GDAL's, taken from the warped VRT gdalwarp makes with the same switches.

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cpl_error.h>
#include <cpl_minixml.h>
#include <cpl_string.h>
#include <gdal_alg.h>
#include <gdalwarper.h>

#include "positions.h"

struct mmPositions {
	pthread_mutex_t mu;
	int w, h;
	double *gx, *gy;   // source georeferenced coordinates of pixel centres
	unsigned char *st; // 0 not computed yet, 1 known, 2 the transformer failed
	long filled;
	// gx, gy and st live in one mapping of their own: freed, its pages go
	// back to the system at once (from malloc, megabytes freed between
	// GDAL's blocks stayed in the heap: +40 MiB peak on a 20 km scene)
	void *mem;
	size_t bytes;
	void *georef;      // GenImgProj transformer with an identity source geotransform
};

// the transformer the warp kernel calls
typedef struct {
	mmPositions *p;
	double gt[6], inv[6]; // the source's geotransform and its inverse
	// scratch, grown as needed
	int cap;
	double *x, *y, *z;
	int *ok;
	long *at;
	long *k; // per point: its pixel centre in the table, or -1
} mmCached;

struct mmWarp {
	GDALDatasetH src;
	GDALWarpOptions *wo;
	double sgt[6], inv[6]; // the source's geotransform and its inverse
	double gt[6]; // the window's geotransform
	char *wkt;    // the window's CRS
};

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
	// without reprojection there is nothing worth sharing, and GDAL's
	// warper spots pure translations only with its own transformer
	if (CPLGetXMLNode(gip, "ReprojectTransformer") == NULL) {
		snprintf(err, errlen, "no reprojection");
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
	if (!parse_gt(inv, wp->inv) || !parse_gt(sgts, wp->sgt) || GDALGetGeoTransform(vrt, wp->gt) != CE_None ||
	    GDALGetGeoTransform(src, own) != CE_None) {
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
	// the positions' name: this transformer with an identity source
	// geotransform (window geotransform, both CRS and the reprojection's
	// options all in it); every position of the warp comes from it
	georef = CPLCloneXMLTree(gip);
	CPLSetXMLValue(georef, "SrcGeoTransform", "0,1,0,0,0,1");
	CPLSetXMLValue(georef, "SrcInvGeoTransform", "0,1,0,0,0,1");
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
	CPLFree(wp->wkt);
	free(wp);
}

mmPositions *mm_positions_new(const char *key, int w, int h, char *err, int errlen) {
	CPLPushErrorHandler(CPLQuietErrorHandler);
	CPLErrorReset();
	mmPositions *p = NULL;
	CPLXMLNode *tree = CPLParseXMLString(key);
	GDALTransformerFunc fn = NULL;
	void *arg = NULL;
	if (tree == NULL || GDALDeserializeTransformer(tree, &fn, &arg) != CE_None || fn != GDALGenImgProjTransform) {
		set_err(err, errlen, "cannot rebuild the positions' transformer");
		if (arg)
			GDALDestroyTransformer(arg);
		goto out;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		GDALDestroyTransformer(arg);
		goto out;
	}
	pthread_mutex_init(&p->mu, NULL);
	p->w = w, p->h = h, p->georef = arg;
	size_t n = (size_t)w * h;
	p->bytes = n * (2 * sizeof(double) + 1);
	p->mem = mmap(NULL, p->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->mem == MAP_FAILED) {
		p->mem = NULL;
		snprintf(err, errlen, "out of memory for %d x %d positions", w, h);
		mm_positions_free(p);
		p = NULL;
		goto out;
	}
	// zero-filled: every st "not computed yet"
	p->gx = p->mem;
	p->gy = p->gx + n;
	p->st = (unsigned char *)(p->gy + n);
out:
	if (tree)
		CPLDestroyXMLNode(tree);
	CPLPopErrorHandler();
	return p;
}

void mm_positions_free(mmPositions *p) {
	if (p == NULL)
		return;
	if (p->georef)
		GDALDestroyTransformer(p->georef);
	if (p->mem)
		munmap(p->mem, p->bytes);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

long mm_positions_filled(mmPositions *p) {
	pthread_mutex_lock(&p->mu);
	long n = p->filled;
	pthread_mutex_unlock(&p->mu);
	return n;
}

static int grow(mmCached *c, int n) {
	if (n <= c->cap)
		return 1;
	free(c->x), free(c->y), free(c->z), free(c->ok), free(c->at), free(c->k);
	c->k = malloc(sizeof(long) * n);
	c->x = malloc(sizeof(double) * n);
	c->y = malloc(sizeof(double) * n);
	c->z = malloc(sizeof(double) * n);
	c->ok = malloc(sizeof(int) * n);
	c->at = malloc(sizeof(long) * n);
	c->cap = (c->x && c->y && c->z && c->ok && c->at && c->k) ? n : 0;
	return c->cap > 0;
}

// centre returns the table index of a window pixel centre, or -1.
static long centre(const mmPositions *p, double x, double y) {
	double fx = x - 0.5, fy = y - 0.5;
	if (!(fx >= 0 && fy >= 0 && fx < p->w && fy < p->h))
		return -1;
	int ix = (int)fx, iy = (int)fy;
	if (ix != fx || iy != fy)
		return -1;
	return (long)iy * p->w + ix;
}

// mm_cached_transform is the warp's transformer: GDALGenImgProjTransform
// with the source's geotransform, in two parts. The positions in the
// source CRS come from the table for pixel centres (computed once), from
// the table's transformer otherwise; the source's geotransform is applied
// apart, as GDAL applies it (GDALApplyGeoTransform is the same expression,
// compiled in the same file of libgdal).
static int mm_cached_transform(void *arg, int dstToSrc, int n, double *x, double *y, double *z, int *ok) {
	mmCached *c = arg;
	mmPositions *p = c->p;
	if (n <= 0)
		return TRUE;
	if (!grow(c, n)) {
		CPLError(CE_Failure, CPLE_OutOfMemory, "out of memory for %d positions", n);
		return FALSE;
	}
	if (!dstToSrc) { // source pixels -> window pixels
		for (int i = 0; i < n; i++)
			if (x[i] != HUGE_VAL && y[i] != HUGE_VAL)
				GDALApplyGeoTransform(c->gt, x[i], y[i], x + i, y + i);
		pthread_mutex_lock(&p->mu);
		int r = GDALGenImgProjTransform(p->georef, FALSE, n, x, y, z, ok);
		pthread_mutex_unlock(&p->mu);
		return r;
	}
	pthread_mutex_lock(&p->mu);
	// the pixel centres not computed yet, and the points that are not
	// pixel centres, through the table's transformer
	int m = 0;
	for (int i = 0; i < n; i++) {
		long k = c->k[i] = centre(p, x[i], y[i]);
		if (k < 0 || p->st[k] == 0) {
			if (k >= 0)
				p->st[k] = 3; // taken by this batch
			c->x[m] = x[i], c->y[m] = y[i], c->z[m] = z ? z[i] : 0, c->at[m] = k >= 0 ? k : -1 - i;
			m++;
		}
	}
	if (m > 0 && !GDALGenImgProjTransform(p->georef, TRUE, m, c->x, c->y, c->z, c->ok)) {
		for (int j = 0; j < m; j++)
			if (c->at[j] >= 0)
				p->st[c->at[j]] = 0;
		pthread_mutex_unlock(&p->mu);
		return FALSE;
	}
	for (int j = 0; j < m; j++) {
		long k = c->at[j];
		if (k >= 0) {
			p->gx[k] = c->x[j], p->gy[k] = c->y[j];
			p->st[k] = c->ok[j] ? 1 : 2;
			p->filled++;
		} else { // not a centre: straight to the point
			long i = -1 - k;
			ok[i] = c->ok[j];
			if (ok[i])
				GDALApplyGeoTransform(c->inv, c->x[j], c->y[j], x + i, y + i);
			if (z)
				z[i] = c->z[j];
		}
	}
	for (int i = 0; i < n; i++) {
		long k = c->k[i]; // x, y of other points are source pixels by now
		if (k < 0)
			continue;
		if (p->st[k] != 1) {
			ok[i] = 0;
			continue;
		}
		GDALApplyGeoTransform(c->inv, p->gx[k], p->gy[k], x + i, y + i);
		ok[i] = 1;
	}
	pthread_mutex_unlock(&p->mu);
	return TRUE;
}

int mm_warp_run(mmWarp *wp, mmPositions *p, float *out, int w, int h, int bands, char *err, int errlen) {
	CPLPushErrorHandler(CPLQuietErrorHandler);
	CPLErrorReset();
	int ok = 0;
	mmCached c = {0};
	GDALWarpOperationH op = NULL;
	GDALDatasetH dst = GDALCreate(GDALGetDriverByName("MEM"), "", w, h, 0, GDT_Float32, NULL);
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
	GDALSetGeoTransform(dst, wp->gt);
	GDALSetProjection(dst, wp->wkt);
	c.p = p;
	memcpy(c.gt, wp->sgt, sizeof(c.gt));
	memcpy(c.inv, wp->inv, sizeof(c.inv));
	GDALWarpOptions *wo = GDALCloneWarpOptions(wp->wo);
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
	free(c.x), free(c.y), free(c.z), free(c.ok), free(c.at), free(c.k);
	CPLPopErrorHandler();
	return ok;
}
