package ingest

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/airbusgeo/godal"
	mm "github.com/methanemap/methanemap"
)

// GDAL error numbers (cpl_error.h) that decide whether a failure is worth retrying.
const (
	cpleFileIO            = 3
	cpleOpenFailed        = 4
	cpleHTTPResponse      = 11
	cpleAWSBucketNotFound = 12
	cpleAWSSignature      = 16
)

// GDALError is an error GDAL reported, with its error number.
type GDALError struct {
	Code int
	Msg  string
}

func (e *GDALError) Error() string { return e.Msg }

// HTTPStatus returns the HTTP status GDAL reported, or 0. GDAL gives it only
// in the text of CPLE_HttpResponse ("HTTP response code: 503").
func (e *GDALError) HTTPStatus() int {
	if e.Code != cpleHTTPResponse {
		return 0
	}
	_, after, ok := strings.Cut(e.Msg, "HTTP response code:")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.Fields(after + " ")[0]))
	if err != nil {
		return 0
	}
	return n
}

// transient reports whether retrying later may succeed.
func (e *GDALError) transient(remote bool) bool {
	switch {
	case e.Code == cpleHTTPResponse:
		s := e.HTTPStatus()
		return s == 0 || s >= 500 || s == 408 || s == 429
	case e.Code >= cpleAWSBucketNotFound && e.Code <= cpleAWSSignature:
		return false // missing bucket or object, bad credentials: not going to change
	case remote && (e.Code == cpleFileIO || e.Code == cpleOpenFailed):
		return true // a network read that broke off
	}
	return false
}

// errCollector is a godal.ErrorHandler that keeps the first failure GDAL
// reports and lets warnings pass (godal's default turns warnings into errors).
type errCollector struct {
	remote bool
	mu     sync.Mutex
	first  *GDALError
}

func (c *errCollector) handler() godal.ErrorHandler {
	return func(ec godal.ErrorCategory, code int, msg string) error {
		if ec < godal.CE_Failure {
			return nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.first == nil {
			c.first = &GDALError{Code: code, Msg: msg}
			return c.classify(c.first)
		}
		if msg == c.first.Msg {
			return nil // GDAL retries and repeats itself: once is enough
		}
		return c.classify(&GDALError{Code: code, Msg: msg})
	}
}

func (c *errCollector) classify(e *GDALError) error {
	if e.transient(c.remote) {
		return e
	}
	return mm.Permanent(e)
}

// wrap returns err classified by what GDAL reported, or err as it is.
func (c *errCollector) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	first := c.first
	c.mu.Unlock()
	if first != nil && !mm.IsPermanent(err) && !first.transient(c.remote) {
		return mm.Permanentf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
