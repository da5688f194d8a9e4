// Command bench-upstream is the fast local upstream the gateway benchmark
// proxies to (stdlib only). It stands in for the legacy backend:
//
//	GET /small        200-byte body
//	GET /slow         sleeps 50 ms, then a 200-byte body
//	GET /big?size=N   N bytes, streamed in 64 KiB writes, with Content-Length
//	GET /healthz      "ok"
//
// Every response carries "X-Bench-Upstream: <token>" so the harness can check
// that a proxy really reaches this process. It listens on -addr (port 0 = pick
// a free one) and prints "listening on http://HOST:PORT" once it accepts.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

const maxBig = 1 << 30 // refuse anything over 1 GiB

var (
	small = bytes.Repeat([]byte("x"), 200)
	chunk = bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	token := flag.String("token", "bench", "value of the X-Bench-Upstream response header")
	slow := flag.Duration("slow", 50*time.Millisecond, "delay of GET /slow")
	flag.Parse()

	common := func(w http.ResponseWriter, length int) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(length))
		h.Set("X-Bench-Upstream", *token)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /small", func(w http.ResponseWriter, r *http.Request) {
		common(w, len(small))
		w.Write(small)
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(*slow)
		common(w, len(small))
		w.Write(small)
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		size, err := strconv.Atoi(r.URL.Query().Get("size"))
		if err != nil || size < 0 || size > maxBig {
			http.Error(w, "size must be an integer in [0, 1 GiB]", http.StatusBadRequest)
			return
		}
		common(w, size)
		for left := size; left > 0; {
			n := min(left, len(chunk))
			if _, err := w.Write(chunk[:n]); err != nil {
				return // client went away
			}
			left -= n
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		common(w, 2)
		w.Write([]byte("ok"))
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "listening on http://%s\n", ln.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(os.Stderr, "upstream: ", 0)}
	log.Fatal(srv.Serve(ln))
}
