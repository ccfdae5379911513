package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// floor is the bare client: it follows the same blocking query as the
// tools and only reads each answer's bytes (no decoding, no template, no
// file). The time from a change to its answer's last byte is the floor:
// what Consul itself takes to answer; nothing that decodes the answer can
// be faster.
type floor struct {
	url    string
	client *http.Client

	mu     sync.Mutex
	at     time.Time // when the latest answer's last byte arrived
	body   []byte    // the latest answer
	notify chan struct{}
	err    error
}

// startFloor follows path (e.g. "/v1/health/service/big?passing=1") on
// addr until ctx ends.
func startFloor(ctx context.Context, addr, path string) *floor {
	f := &floor{url: "http://" + addr + path, notify: make(chan struct{}, 1),
		client: &http.Client{Transport: &http.Transport{DisableCompression: true}}}
	go f.loop(ctx)
	return f
}

func (f *floor) loop(ctx context.Context) {
	var index uint64
	for ctx.Err() == nil {
		url := f.url
		if index > 0 {
			url += "&index=" + strconv.FormatUint(index, 10) + "&wait=5m"
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := f.client.Do(req)
		if err != nil {
			f.fail(err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		at := time.Now()
		resp.Body.Close()
		if err != nil {
			f.fail(err)
			continue
		}
		if n, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64); err == nil && n >= index {
			index = n
		} else {
			index = 0
		}
		f.mu.Lock()
		f.at, f.body, f.err = at, body, nil
		f.mu.Unlock()
		select {
		case f.notify <- struct{}{}:
		default:
		}
	}
}

func (f *floor) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// wait returns when the latest answer arrived after since and satisfies
// ok, and how long after t0 its last byte arrived (0 if before: Consul can
// answer the blocking query before the write's own response reaches the
// harness, and the tools' times start at t0 too).
func (f *floor) wait(ctx context.Context, since, t0 time.Time, timeout time.Duration, ok func([]byte) bool) (time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		at, body, err := f.at, f.body, f.err
		f.mu.Unlock()
		if at.After(since) && ok(body) {
			return max(0, at.Sub(t0)), nil
		}
		select {
		case <-f.notify:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-deadline.C:
			return 0, fmt.Errorf("floor: no matching answer within %s (latest answer %s after the change, %d bytes; last error: %v)", timeout, at.Sub(t0), len(body), err)
		}
	}
}

// size is the latest answer's length in bytes.
func (f *floor) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.body)
}
