// Command legacy-standin is a stand-in for the legacy junjo-server Go
// backend: the same libraries and middleware configuration, the same routes
// and wire shapes, plus /_standin/ probes for the gateway's tests.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "legacy-standin:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := loadConfig(args)
	if err != nil {
		return err
	}
	store, err := openStore(cfg.SQLitePath)
	if err != nil {
		// The legacy's log.Fatalf line ("Failed to set journal mode: …"), exit 1.
		log.Fatal(err)
	}
	defer store.Close()
	if cfg.SeedUser != "" {
		if err := seedUser(context.Background(), store, cfg.SeedUser); err != nil {
			return err
		}
	}
	spans, err := loadSpans(cfg.SpansJSON)
	if err != nil {
		return err
	}
	srv := &Server{cfg: cfg, store: store, spans: spans, stats: &Stats{}}
	e := newEcho(srv)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           e,
		ConnState:         srv.stats.connState,
		ConnContext:       connContext,
		ReadHeaderTimeout: 30 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	log.Printf("legacy-standin listening on http://%s (sqlite %s, spans %d)", ln.Addr(), cfg.SQLitePath, len(spans.rows))
	if err := hs.Serve(recListener{ln}); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}
