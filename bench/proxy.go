package main

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

// countingProxy is a loopback reverse proxy in front of the agent that
// counts the HTTP requests one tool sends. No timeouts and immediate
// flushing, so blocking queries behave as they do against the agent.
type countingProxy struct {
	addr     string
	requests atomic.Int64
	srv      *http.Server
}

func startProxy(agentAddr string) (*countingProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	target := &url.URL{Scheme: "http", Host: agentAddr}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	// A tool cancelling its blocking query when it exits is not an error.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 1024}
	p := &countingProxy{addr: l.Addr().String()}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(l)
	return p, nil
}

func (p *countingProxy) close() { p.srv.Close() }
