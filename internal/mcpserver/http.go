package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxHTTPBody bounds one JSON-RPC message over HTTP.
const maxHTTPBody = 1 << 20

// HTTPHandler serves the streamable HTTP transport at every path, for a
// listener on port. It refuses, with 403, a request whose Host is not a
// loopback name (localhost, 127.0.0.1, [::1]) with that port, or whose
// Origin is present and not loopback: a web page the user visits cannot
// reach the agent's wallet through DNS rebinding.
func (s *Server) HTTPHandler(port int) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.srv },
		&mcp.StreamableHTTPOptions{Logger: s.opts.Logger, MaxRequestBodyBytes: maxHTTPBody, SessionTimeout: 30 * time.Minute})
	return Guard(port, h)
}

// Guard wraps h with the Host and Origin checks of HTTPHandler.
func Guard(port int, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHostPort(r.Host, port) {
			http.Error(w, "forbidden: Host must be 127.0.0.1, localhost or [::1] with this server's port", http.StatusForbidden)
			return
		}
		if o := r.Header.Values("Origin"); len(o) > 1 || (len(o) == 1 && !loopbackOrigin(o[0])) {
			http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func loopbackName(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

func loopbackHostPort(hostport string, port int) bool {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	return loopbackName(h) && p == strconv.Itoa(port)
}

func loopbackOrigin(o string) bool {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.User != nil || (u.Path != "" && u.Path != "/") {
		return false
	}
	return loopbackName(u.Hostname())
}

// ServeHTTP listens on addr (a loopback address: 127.0.0.1:PORT,
// [::1]:PORT or localhost:PORT) and serves until ctx ends. ready, if
// not nil, is called with the address once listening.
func (s *Server) ServeHTTP(ctx context.Context, addr string, ready func(net.Addr)) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: want 127.0.0.1:PORT", addr)
	}
	if !loopbackName(host) {
		return fmt.Errorf("--http %q: the MCP server listens on loopback only (127.0.0.1, [::1] or localhost): it spends the agent's money on the word of whoever connects", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: s.HTTPHandler(port), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if ready != nil {
		ready(ln.Addr())
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
		return nil
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}
