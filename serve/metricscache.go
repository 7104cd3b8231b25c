package serve

import (
	"bytes"
	"net/http"
	"sync"
	"time"
)

// scrapeCache serves /metrics from a rendering at most ttl old, so that a
// storm of concurrent scrapes costs one gather per ttl instead of one per
// request (a gather of every series takes milliseconds of CPU; a copy of
// the rendered bytes takes microseconds). Renderings are kept per content
// negotiation (Accept and Accept-Encoding), and one request re-renders while
// the others wait for it. Values are at most ttl stale, well under any
// scrape interval.
type scrapeCache struct {
	inner http.Handler
	ttl   time.Duration
	mu    sync.Mutex
	byKey map[string]*scrapeEntry
}

type scrapeEntry struct {
	mu     sync.Mutex
	at     time.Time
	status int
	header http.Header
	body   []byte
}

func newScrapeCache(inner http.Handler, ttl time.Duration) *scrapeCache {
	return &scrapeCache{inner: inner, ttl: ttl, byKey: map[string]*scrapeEntry{}}
}

// recorder captures a rendering.
type recorder struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.buf.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.status = code }

func (c *scrapeCache) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	key := req.Header.Get("Accept") + "\x00" + req.Header.Get("Accept-Encoding")
	c.mu.Lock()
	e := c.byKey[key]
	if e == nil {
		if len(c.byKey) > 16 { // bound the variants a client can create
			c.byKey = map[string]*scrapeEntry{}
		}
		e = &scrapeEntry{}
		c.byKey[key] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	if e.body == nil || time.Since(e.at) > c.ttl {
		rec := &recorder{header: http.Header{}, status: http.StatusOK}
		c.inner.ServeHTTP(rec, req)
		e.status, e.header, e.body, e.at = rec.status, rec.header, rec.buf.Bytes(), time.Now()
	}
	status, header, body := e.status, e.header, e.body
	e.mu.Unlock()
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
