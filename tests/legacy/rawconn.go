package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/labstack/echo/v4"
)

// The raw request head is captured by wrapping every accepted net.Conn: the
// bytes Go's HTTP server reads are also appended to a per-connection buffer,
// and a Pre middleware cuts each request's head out of it (from the request
// line to the blank line). That gives header order and case exactly as sent,
// which http.Header (a map, canonicalised) loses.

const (
	maxRecorded  = 4 << 20 // trim when a body (not a head) piles up
	keepRecorded = 1<<20 + 64<<10
)

type recListener struct{ net.Listener }

func (l recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recConn{Conn: c}, nil
}

type recConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte // bytes read and not yet claimed by a request head
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.buf = append(c.buf, p[:n]...)
		if len(c.buf) > maxRecorded {
			c.buf = append([]byte(nil), c.buf[len(c.buf)-keepRecorded:]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

// takeHead returns the raw head of the request whose request line starts
// with "METHOD URI ", and forgets everything up to the end of that head.
func (c *recConn) takeHead(method, uri string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	line := []byte(method + " " + uri + " ")
	start := -1
	for off := 0; off < len(c.buf); {
		i := bytes.Index(c.buf[off:], line)
		if i < 0 {
			break
		}
		i += off
		if i == 0 || c.buf[i-1] == '\n' {
			start = i
			break
		}
		off = i + 1
	}
	if start < 0 {
		return ""
	}
	rest := c.buf[start:]
	end := bytes.Index(rest, []byte("\r\n\r\n"))
	sep := 4
	if lf := bytes.Index(rest, []byte("\n\n")); lf >= 0 && (end < 0 || lf < end) {
		end, sep = lf, 2
	}
	if end < 0 {
		return ""
	}
	head := string(rest[:end+sep])
	c.buf = append(c.buf[:0], rest[end+sep:]...)
	return head
}

// tcpConn digs the *net.TCPConn out of a (possibly wrapped) conn.
func tcpConn(c net.Conn) *net.TCPConn {
	if rc, ok := c.(*recConn); ok {
		c = rc.Conn
	}
	t, _ := c.(*net.TCPConn)
	return t
}

type connCtxKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connCtxKey{}, c)
}

// parseHead turns a raw head into [name, value] pairs in received order.
func parseHead(head string) [][2]string {
	out := [][2]string{}
	lines := strings.Split(strings.ReplaceAll(head, "\r\n", "\n"), "\n")
	for i, l := range lines {
		if i == 0 || l == "" {
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		out = append(out, [2]string{name, strings.Trim(value, " \t")})
	}
	return out
}

// Stats counts open connections (http.Server.ConnState) and requests in
// flight (a Pre middleware); the /_standin/stats request is not counted.
type Stats struct {
	open   atomic.Int64
	active atomic.Int64
}

func (s *Stats) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		s.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.open.Add(-1)
	}
}

func (s *Stats) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if rc, ok := r.Context().Value(connCtxKey{}).(*recConn); ok {
			c.Set("raw_head", rc.takeHead(r.Method, r.RequestURI))
		}
		if r.URL.Path != probePrefix+"stats" {
			s.active.Add(1)
			defer s.active.Add(-1)
		}
		return next(c)
	}
}
