package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Probe routes for the gateway's transparency tests. They live under
// /_standin/, which the CSRF and auth middlewares skip.

const gzipText = "hello gzip\n"

var gzipBody = func() []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(strings.Repeat(gzipText, 100)))
	w.Close()
	return b.Bytes()
}()

// patternBlock: byte i of a /_standin/download body is byte(i % 256).
var patternBlock = func() []byte {
	b := make([]byte, 32*1024)
	for i := range b {
		b[i] = byte(i % 256)
	}
	return b
}()

var smallBody = strings.Repeat("0123456789", 20) // 200 bytes

func registerProbes(e *echo.Echo, s *Server) {
	g := e.Group("/_standin")
	g.Any("/echo", echoProbe)
	g.Any("/echo/*", echoProbe)
	g.GET("/cookies", func(c echo.Context) error {
		h := c.Response().Header()
		h.Add("Set-Cookie", "a=1; Path=/")
		h.Add("Set-Cookie", "b=2; Path=/; HttpOnly")
		h.Add("Set-Cookie", `c="x,y"; Expires=Wed, 21 Oct 2026 07:28:00 GMT`)
		return c.String(http.StatusOK, "ok")
	})
	g.GET("/gzip", func(c echo.Context) error {
		c.Response().Header().Set("Content-Encoding", "gzip")
		c.Response().Header().Set("Content-Length", strconv.Itoa(len(gzipBody)))
		return c.Blob(http.StatusOK, "text/plain", gzipBody)
	})
	g.GET("/slow", slowProbe)
	g.GET("/stream", streamProbe)
	g.GET("/reset", resetProbe)
	g.GET("/download", downloadProbe)
	g.GET("/status/:code", func(c echo.Context) error {
		code, err := strconv.Atoi(c.Param("code"))
		if err != nil || code < 200 || code > 599 {
			return c.String(http.StatusBadRequest, "status must be 200..599\n")
		}
		if code == http.StatusNoContent || code == http.StatusNotModified {
			return c.NoContent(code)
		}
		return c.String(code, fmt.Sprintf("status %d\n", code))
	})
	g.GET("/redirect", func(c echo.Context) error { return c.Redirect(http.StatusFound, "/ping") })
	g.GET("/small", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "text/plain", []byte(smallBody))
	})
	g.GET("/headers-out", func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "secret")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("X-Keep", "yes")
		return c.String(http.StatusOK, "ok")
	})
	g.GET("/stats", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]int64{
			"open_connections": s.stats.open.Load(),
			"active_requests":  s.stats.active.Load(),
		})
	})
	g.GET("/db-errors", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]int64{
			"busy":  s.store.errs.busy.Load(),
			"other": s.store.errs.other.Load(),
		})
	})
}

func echoProbe(c echo.Context) error {
	r := c.Request()
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		return c.String(http.StatusBadRequest, "body read failed: "+err.Error())
	}
	rawHead, _ := c.Get("raw_head").(string)
	var headers [][2]string
	if rawHead != "" {
		headers = parseHead(rawHead)
	} else { // no wrapped conn (httptest): canonical names, sorted
		headers = [][2]string{{"Host", r.Host}}
		names := make([]string, 0, len(r.Header))
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, v := range r.Header[k] {
				headers = append(headers, [2]string{k, v})
			}
		}
	}
	te := r.TransferEncoding
	if te == nil {
		te = []string{}
	}
	return c.JSON(http.StatusOK, map[string]interface{}{
		"method":            r.Method,
		"uri":               r.RequestURI,
		"proto":             r.Proto,
		"host":              r.Host,
		"headers":           headers,
		"raw_head":          rawHead,
		"body_len":          n,
		"body_sha256":       hex.EncodeToString(h.Sum(nil)),
		"content_length":    r.ContentLength,
		"transfer_encoding": te,
	})
}

func intParam(c echo.Context, name string, def int64) (int64, bool) {
	v := c.QueryParam(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n >= 0
}

func sleepCtx(c echo.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.Request().Context().Done():
		return false
	}
}

func slowProbe(c echo.Context) error {
	ms, ok := intParam(c, "ms", 1000)
	if !ok {
		return c.String(http.StatusBadRequest, "bad ms\n")
	}
	if !sleepCtx(c, time.Duration(ms)*time.Millisecond) {
		return nil // client went away
	}
	return c.String(http.StatusOK, "slow")
}

func streamProbe(c echo.Context) error {
	chunks, ok1 := intParam(c, "chunks", 5)
	interval, ok2 := intParam(c, "interval_ms", 100)
	if !ok1 || !ok2 {
		return c.String(http.StatusBadRequest, "bad chunks or interval_ms\n")
	}
	w := c.Response()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	for i := int64(0); i < chunks; i++ {
		if i > 0 && !sleepCtx(c, time.Duration(interval)*time.Millisecond) {
			return nil
		}
		if _, err := fmt.Fprintf(w, "chunk %d\n", i); err != nil {
			return nil
		}
		w.Flush()
	}
	return nil
}

func writePattern(w io.Writer, n int64) error {
	for n > 0 {
		k := int64(len(patternBlock))
		if n < k {
			k = n
		}
		if _, err := w.Write(patternBlock[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func resetProbe(c echo.Context) error {
	after, ok := intParam(c, "after", 0)
	if !ok || after > 1000000 {
		return c.String(http.StatusBadRequest, "after must be 0..1000000\n")
	}
	w := c.Response()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", "1000000")
	w.WriteHeader(http.StatusOK)
	writePattern(w, after)
	w.Flush()
	conn, _, err := w.Hijack()
	if err != nil {
		return nil
	}
	if t := tcpConn(conn); t != nil {
		t.SetLinger(0) // Close sends RST instead of FIN
	}
	conn.Close()
	return nil
}

func downloadProbe(c echo.Context) error {
	size, ok := intParam(c, "size", 1024)
	if !ok {
		return c.String(http.StatusBadRequest, "bad size\n")
	}
	w := c.Response()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	writePattern(w, size)
	return nil
}
