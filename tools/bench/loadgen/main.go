// Command bench-loadgen is a small closed-loop HTTP load generator (stdlib
// only) used by tools/bench/run.py.
//
// -c goroutines each own one keep-alive connection and send GET -url in a loop
// for -warmup + -d; with -rate R they are paced to R requests per second in
// all (each connection sends one request every c/R seconds, never in bursts). Only responses that complete inside the measurement window
// (after the warm-up, before the end) are counted. A response is an error when
// the request fails, the status is not 2xx, or the body length differs from
// -expect-size (when given). Latency percentiles are over successful responses.
// The result is one JSON object on stdout.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

type Result struct {
	URL          string           `json:"url"`
	Connections  int              `json:"connections"`
	DurationS    float64          `json:"duration_s"`
	Requests     int64            `json:"requests"`  // successful responses
	Completed    int64            `json:"completed"` // every response read whole, any status, warm-up included: CPU per request
	Errors       int64            `json:"errors"`
	RPS          float64          `json:"rps"`
	P50Ms        float64          `json:"p50_ms"`
	P99Ms        float64          `json:"p99_ms"`
	MaxMs        float64          `json:"max_ms"`
	Bytes        int64            `json:"bytes"` // body bytes of counted responses
	MiBPerS      float64          `json:"mib_per_s"`
	Statuses     map[string]int64 `json:"statuses"`
	ErrorSamples []string         `json:"error_samples"`
}

type worker struct {
	latencies []time.Duration
	completed int64
	errors    int64
	bytes     int64
	statuses  map[string]int64
	samples   []string
}

func (w *worker) fail(msg string) {
	w.errors++
	if len(w.samples) < 5 {
		w.samples = append(w.samples, msg)
	}
}

func main() {
	url := flag.String("url", "", "URL to GET")
	conns := flag.Int("c", 16, "concurrent connections")
	dur := flag.Duration("d", 5*time.Second, "measurement duration")
	warmup := flag.Duration("warmup", time.Second, "warm-up before measuring")
	timeout := flag.Duration("timeout", 30*time.Second, "per-request timeout")
	expect := flag.Int64("expect-size", -1, "expected body length (-1: don't check)")
	rate := flag.Float64("rate", 0, "requests per second over all connections (0: as fast as they answer)")
	flag.Parse()
	if *url == "" || *conns < 1 {
		fmt.Fprintln(os.Stderr, "usage: bench-loadgen -url URL [-c N] [-d 5s] [-warmup 1s] [-expect-size N]")
		os.Exit(2)
	}

	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          *conns,
		MaxIdleConnsPerHost:   *conns,
		MaxConnsPerHost:       *conns,
		DisableCompression:    true,
		ResponseHeaderTimeout: *timeout,
		IdleConnTimeout:       90 * time.Second,
	}
	client := &http.Client{Transport: tr, Timeout: *timeout}

	start := time.Now()
	measureFrom := start.Add(*warmup)
	end := measureFrom.Add(*dur)
	// Requests still in flight at the end are aborted and not counted.
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()

	var interval time.Duration // between two requests of one connection, when paced
	if *rate > 0 {
		interval = time.Duration(float64(*conns) / *rate * float64(time.Second))
	}
	workers := make([]*worker, *conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{statuses: map[string]int64{}}
		workers[i] = w
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Paced connections start spread over one interval.
			next := start.Add(interval * time.Duration(i) / time.Duration(*conns))
			for time.Now().Before(end) {
				if interval > 0 {
					if wait := time.Until(next); wait > 0 {
						time.Sleep(wait)
					}
					next = next.Add(interval)
					if now := time.Now(); next.Before(now) {
						next = now // behind: no burst to catch up
					}
					if !time.Now().Before(end) {
						break
					}
				}
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
				resp, err := client.Do(req)
				var n int64
				status := 0
				if err == nil {
					status = resp.StatusCode
					n, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				t1 := time.Now()
				if err == nil && !t1.After(end) {
					w.completed++
				}
				if t1.Before(measureFrom) || t1.After(end) || ctx.Err() != nil {
					continue // warm-up, or cut off by the end of the run
				}
				if status != 0 {
					w.statuses[strconv.Itoa(status)]++
				}
				switch {
				case err != nil:
					w.fail(err.Error())
				case status < 200 || status > 299:
					w.fail(fmt.Sprintf("HTTP %d", status))
				case *expect >= 0 && n != *expect:
					w.fail(fmt.Sprintf("body %d bytes, expected %d", n, *expect))
				default:
					w.latencies = append(w.latencies, t1.Sub(t0))
					w.bytes += n
				}
			}
		}(i)
	}
	wg.Wait()
	tr.CloseIdleConnections()

	res := Result{URL: *url, Connections: *conns, DurationS: dur.Seconds(), Statuses: map[string]int64{}, ErrorSamples: []string{}}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.latencies...)
		res.Errors += w.errors
		res.Completed += w.completed
		res.Bytes += w.bytes
		for k, v := range w.statuses {
			res.Statuses[k] += v
		}
		for _, s := range w.samples {
			if len(res.ErrorSamples) < 10 && !slices.Contains(res.ErrorSamples, s) {
				res.ErrorSamples = append(res.ErrorSamples, s)
			}
		}
	}
	slices.Sort(all)
	res.Requests = int64(len(all))
	res.RPS = float64(res.Requests) / dur.Seconds()
	res.MiBPerS = float64(res.Bytes) / dur.Seconds() / (1 << 20)
	if len(all) > 0 {
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		pct := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))] }
		res.P50Ms, res.P99Ms, res.MaxMs = ms(pct(0.50)), ms(pct(0.99)), ms(all[len(all)-1])
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(res)
}
