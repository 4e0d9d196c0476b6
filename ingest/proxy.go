// GDAL's HTTP confined: every request it makes goes through a proxy of
// ours that checks the URL against the allow list.

package ingest

/*
#cgo pkg-config: gdal
#include <stdlib.h>
#include <cpl_conv.h>
*/
import "C"

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// The checks before GDAL opens a raster see the URLs a scene and its VRTs
// name, not those a server sends GDAL to: curl follows redirects, to any
// host (an allowed server answering 302 to another was read, measured
// with GDAL 3.6), and GDAL 3.6 has no option to stop it. So a confined
// process sends all of GDAL's HTTP through a proxy on the loopback
// (GDAL_HTTP_PROXY): plain http requests are checked URL by URL, each
// redirect's target included; https ones are tunnelled (CONNECT) only to
// the hosts and ports of allowed https prefixes (a redirect on an allowed
// https host stays on it: the host is trusted). Refusals are 403s, which
// GDAL reports as permanent errors.

var (
	confineMu  sync.Mutex
	confineSrv *proxy
	confineURL string
)

// Confine makes every HTTP request GDAL makes in this process pass the
// allow list, whatever asked for it (a redirect, a URL inside a file). It
// is for processes whose scenes share one allow list (serve, score, feed)
// and is called before rasters are opened; a later call replaces the list
// (none: GDAL's HTTP goes out as it is). Per-open checks (Options.Allow)
// stay needed: the proxy sees only the network, not local files.
func Confine(allow []string) error {
	confineMu.Lock()
	defer confineMu.Unlock()
	if len(allow) == 0 {
		if confineSrv != nil {
			setConfig("GDAL_HTTP_PROXY", "")
		}
		return nil
	}
	al, err := parseAllow(allow)
	if err != nil {
		return err
	}
	if confineSrv == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("ingest: HTTP confinement proxy: %w", err)
		}
		confineSrv = &proxy{tr: &http.Transport{Proxy: nil, ResponseHeaderTimeout: 2 * time.Minute, MaxIdleConnsPerHost: 8}}
		srv := &http.Server{Handler: confineSrv, ReadHeaderTimeout: 30 * time.Second}
		go srv.Serve(ln)
		confineURL = ln.Addr().String()
		// curl skips a proxy for hosts in NO_PROXY: not for GDAL's requests
		for _, k := range []string{"NO_PROXY", "no_proxy"} {
			ck := C.CString(k)
			C.unsetenv(ck)
			C.free(unsafe.Pointer(ck))
		}
	}
	confineSrv.set(al)
	setConfig("GDAL_HTTP_PROXY", confineURL)
	return nil
}

// setConfig sets a GDAL configuration option for the process ("": unset).
func setConfig(k, v string) {
	ck := C.CString(k)
	defer C.free(unsafe.Pointer(ck))
	if v == "" {
		C.CPLSetConfigOption(ck, nil)
		return
	}
	cv := C.CString(v)
	C.CPLSetConfigOption(ck, cv)
	C.free(unsafe.Pointer(cv))
}

type proxy struct {
	mu      sync.Mutex
	al      *allowList
	tr      *http.Transport
	refused string    // the last URL or host refused,
	at      time.Time // and when
}

func (p *proxy) refuse(w http.ResponseWriter, what string, err error) {
	p.mu.Lock()
	p.refused, p.at = what, time.Now()
	p.mu.Unlock()
	http.Error(w, "methanemap: refused by the allow list: "+err.Error(), http.StatusForbidden)
}

// proxyRefusal says what the confinement proxy refused in the last few
// seconds ("" nothing): GDAL reports a refused redirect without the URL.
func proxyRefusal() string {
	confineMu.Lock()
	p := confineSrv
	confineMu.Unlock()
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refused == "" || time.Since(p.at) > 10*time.Second {
		return ""
	}
	return "GDAL was sent to " + describe(p.refused) + ", which the allow list refuses"
}

func (p *proxy) set(al *allowList) {
	p.mu.Lock()
	p.al = al
	p.mu.Unlock()
}

func (p *proxy) list() *allowList {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.al
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.tunnel(w, r)
		return
	}
	if !r.URL.IsAbs() || (r.URL.Scheme != "http" && r.URL.Scheme != "https") {
		http.Error(w, "methanemap: not a proxy request", http.StatusBadRequest)
		return
	}
	if err := p.list().check(r.URL.String()); err != nil {
		p.refuse(w, r.URL.String(), err)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Host = "" // the checked URL's host, not a Host header that says another
	for _, h := range []string{"Proxy-Connection", "Proxy-Authorization", "Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
		out.Header.Del(h)
	}
	resp, err := p.tr.RoundTrip(out) // redirects go back to curl, which asks again through here
	if err != nil {
		http.Error(w, "methanemap proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// tunnelOK reports whether host:port is that of an allowed https prefix
// (or, for s3:// and gs:// prefixes, of their services).
func (p *proxy) tunnelOK(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	host = strings.ToLower(host)
	for _, a := range p.list().urls {
		switch a.scheme {
		case "https":
			if a.host == host && a.port == port {
				return true
			}
		case "s3":
			// the bucket's own endpoints (GDAL's default virtual hosting):
			// a path-style s3.amazonaws.com would serve any bucket
			if port == "443" && strings.HasPrefix(host, a.host+".s3.") && strings.HasSuffix(host, ".amazonaws.com") {
				return true
			}
		case "gs":
			if port == "443" && host == "storage.googleapis.com" {
				return true
			}
		}
	}
	return false
}

func (p *proxy) tunnel(w http.ResponseWriter, r *http.Request) {
	if !p.tunnelOK(r.Host) {
		p.refuse(w, "https://"+r.Host, fmt.Errorf("no allowed https prefix on %s", r.Host))
		return
	}
	up, err := net.DialTimeout("tcp", r.Host, 30*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n")
	if n := buf.Reader.Buffered(); n > 0 {
		b, _ := buf.Reader.Peek(n)
		up.Write(b)
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if c, ok := dst.(interface{ CloseWrite() error }); ok {
			c.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, down)
	go pipe(down, up)
	<-done
	<-done
	up.Close()
	down.Close()
}
