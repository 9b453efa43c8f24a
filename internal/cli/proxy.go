package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/purserhq/purser/sdk"
)

// ExitUpstream: a proxied call reached the upstream, which answered
// with a status other than 2xx (its body is still printed).
const ExitUpstream = 6

// proxyOpts are the flags of purser proxy and proxy serve.
type proxyOpts struct {
	method  string
	data    string
	headers headerFlags
	include bool
	listen  string
}

func proxyCommand() *command {
	serve := &command{
		name: "serve", args: "--agent-key FILE --listen 127.0.0.1:PORT [--server URL]",
		summary: "a local endpoint that signs on the agent's behalf: http://127.0.0.1:PORT/NAME/PATH is the credential's upstream, for an unmodified HTTP client (loopback only)",
		kind:    kindAgent, bodyData: true,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.proxy.listen, "listen", "", "loopback `ADDR` to serve on: 127.0.0.1:PORT, [::1]:PORT or localhost:PORT (required)")
		},
		run: runProxyServe,
	}
	c := &command{
		name: "proxy", args: "NAME PATH [--method M] [--data BODY|@FILE] [-H 'K: V'] [--idempotency-key K] [--include]",
		summary: "call credential NAME's upstream at PATH through Purser (the key is injected there); the body goes to stdout; exit 0 on 2xx, 3 waiting for approval, 4 refused, 6 the upstream answered non-2xx",
		kind:    kindAgent, bodyData: true,
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.proxy.method, "method", "", "HTTP `METHOD` (default GET, POST with --data)")
			fs.StringVar(&o.proxy.data, "data", "", "request `BODY`; @FILE reads it from FILE, @- from stdin (at most 1 MiB)")
			fs.Var(&o.proxy.headers, "H", "request header 'Name: value' (repeatable)")
			fs.StringVar(&o.idemKey, "idempotency-key", "", "`KEY`: a retry with the same key and request is not sent upstream twice (default: a fresh one, printed when the call waits for approval)")
			fs.BoolVar(&o.proxy.include, "include", false, "print the status line and the headers before the body")
		},
		run: runProxy,
		sub: []*command{serve},
	}
	c.route = func(args []string) (*command, []string) {
		if len(args) > 0 && args[0] == "serve" {
			return serve, args[1:]
		}
		return nil, args
	}
	return c
}

// proxyBody is --data: the text itself, @FILE or @- (stdin).
func (e *env) proxyBody(o *opts) ([]byte, error) {
	d := o.proxy.data
	name, ok := strings.CutPrefix(d, "@")
	if !ok {
		if d == "" {
			return nil, nil
		}
		return []byte(d), nil
	}
	var r io.Reader
	if name == "-" {
		r = e.stdio.In
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, usagef(o.path, "--data: %v", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, sdk.MaxProxyBody+1))
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	if len(b) > sdk.MaxProxyBody {
		return nil, usagef(o.path, "--data: the body is larger than the proxy's limit of 1 MiB")
	}
	return b, nil
}

func runProxy(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args, "NAME", "PATH"); err != nil {
		return err
	}
	name, path := args[0], args[1]
	if !strings.HasPrefix(path, "/") {
		return usagef(o.path, "PATH %q must start with / (it is below the credential's upstream)", path)
	}
	h, err := (&x402Opts{headers: o.proxy.headers}).header()
	if err != nil {
		return usagef(o.path, "%v", err)
	}
	body, err := e.proxyBody(o)
	if err != nil {
		return err
	}
	method := strings.ToUpper(o.proxy.method)
	if method == "" {
		method = http.MethodGet
		if body != nil {
			method = http.MethodPost
		}
	}
	// Always a key: a call that waits for approval is carried out by
	// sending it again with the same one, which is printed then.
	key := o.idemKey
	if key == "" {
		key = sdk.NewIdempotencyKey()
	}
	h.Set(sdk.HeaderIdempotencyKey, key)
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	resp, err := c.Proxy(ctx, name, method, path, body, h)
	if err != nil {
		return e.proxyRefusal(o, err, key)
	}
	defer resp.Body.Close()
	code := ExitOK
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		code = ExitUpstream
	}
	if o.json {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return fmt.Errorf("read the upstream's answer: %w", err)
		}
		out := map[string]any{"status": resp.StatusCode, "headers": resp.Header, "spend_id": resp.Header.Get(sdk.HeaderSpendID),
			"price": resp.Header.Get(sdk.HeaderPrice)}
		if utf8.Valid(b) {
			out["body"] = string(b)
		} else {
			out["body_base64"] = base64.StdEncoding.EncodeToString(b)
		}
		if err := writeJSON(e.stdio.Out, out); err != nil {
			return err
		}
		return exitCode(code)
	}
	if o.proxy.include {
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s\r\n", resp.Proto, resp.Status)
		resp.Header.Write(&b) //nolint:errcheck // a bytes.Buffer
		b.WriteString("\r\n")
		if _, err := e.stdio.Out.Write(b.Bytes()); err != nil {
			return err
		}
	}
	if _, err := io.Copy(e.stdio.Out, resp.Body); err != nil {
		return fmt.Errorf("read the upstream's answer: %w", err)
	}
	if code != ExitOK {
		fmt.Fprintf(e.stdio.Err, "the upstream answered %s (spend %s)\n", resp.Status, orDash(resp.Header.Get(sdk.HeaderSpendID)))
	}
	return exitCode(code)
}

// proxyRefusal prints an answer Purser made instead of the upstream and
// picks the exit code: 3 waiting for approval, 4 refused (the mandate, no
// grant or one that does not cover the call, a rate limit), else the
// error as any command's.
func (e *env) proxyRefusal(o *opts, err error, key string) error {
	var ar *sdk.ApprovalRequiredError
	if errors.As(err, &ar) {
		if o.json {
			if err := writeJSON(e.stdio.Out, map[string]any{"status": sdk.StatusPendingApproval, "spend_id": ar.SpendID,
				"reasons": nonNil(ar.Reasons), "idempotency_key": key}); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(e.stdio.Out, "waiting for approval: %s (%s)\n", ar.SpendID, orDash(strings.Join(ar.Reasons, ", ")))
			fmt.Fprintf(e.stdio.Err, "after an owner approves, run the same command with --idempotency-key %s\n", key)
		}
		return exitCode(ExitPending)
	}
	var ae *sdk.Error
	if !errors.As(err, &ae) {
		return err
	}
	if ae.Code != "spend_denied" && ae.Status != http.StatusForbidden && ae.Status != http.StatusTooManyRequests {
		return err
	}
	reasons := ae.Reasons()
	if o.json {
		if err := writeJSON(e.stdio.Out, map[string]any{"status": "refused", "code": ae.Code, "message": ae.Message,
			"reasons": nonNil(reasons), "spend_id": detailString(ae, "spend_id")}); err != nil {
			return err
		}
	} else {
		what := ae.Code
		if len(reasons) > 0 {
			what += ": " + strings.Join(reasons, ", ")
		}
		fmt.Fprintf(e.stdio.Err, "refused: %s (%s)\n", strings.TrimSpace(ae.Message), what)
	}
	return exitCode(ExitRefused)
}

func detailString(e *sdk.Error, key string) string {
	s, _ := e.Details[key].(string)
	return s
}

// runProxyServe serves the local signing endpoint until ctx ends
// (SIGINT, SIGTERM).
func runProxyServe(ctx context.Context, e *env, o *opts, args []string) error {
	if err := wantArgs(o, args); err != nil {
		return err
	}
	if o.proxy.listen == "" {
		return usagef(o.path, "--listen 127.0.0.1:PORT is required")
	}
	host, _, err := net.SplitHostPort(o.proxy.listen)
	if err != nil {
		return usagef(o.path, "--listen %q: want 127.0.0.1:PORT", o.proxy.listen)
	}
	if !loopbackName(host) {
		return usagef(o.path, "--listen %q: the proxy listens on loopback only (127.0.0.1, [::1] or localhost): whoever reaches it spends as the agent", o.proxy.listen)
	}
	c, err := e.agentClient(o)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.proxy.listen)
	if err != nil {
		return err
	}
	addr := ln.Addr().(*net.TCPAddr)
	srv := &http.Server{Handler: proxyGuard(addr.Port, &localProxy{agent: c}), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	base := "http://" + addr.String() + "/"
	if o.json {
		b, _ := json.Marshal(map[string]string{"url": base, "listen": addr.String()})
		fmt.Fprintf(e.stdio.Out, "%s\n", b)
	} else {
		fmt.Fprintf(e.stdio.Out, "purser proxy: serving %s (agent %s): %sNAME/PATH is credential NAME's upstream at PATH\n", base, c.Address(), base)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		<-done
		return err
	case err := <-done:
		return err
	}
}

func loopbackName(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// proxyGuard refuses, with 403, what a web browser could send: a Host
// that is not a loopback name with the listener's port (DNS rebinding),
// and any request carrying Origin or a Sec-Fetch-* header. Unlike purser
// mcp --http, not even a loopback Origin is let through: a page served
// from another port on this machine is still a web page. Browsers send
// Sec-Fetch-Site even on the no-cors GETs (an <img>, a form) that carry
// no Origin; HTTP clients and SDKs send neither.
func proxyGuard(port int, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hh, p, err := net.SplitHostPort(r.Host)
		if err != nil || !loopbackName(hh) || p != strconv.Itoa(port) {
			http.Error(w, "forbidden: Host must be 127.0.0.1, localhost or [::1] with this server's port", http.StatusForbidden)
			return
		}
		if len(r.Header.Values("Origin")) > 0 || r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Sec-Fetch-Mode") != "" {
			http.Error(w, "forbidden: requests from web pages are refused", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// localProxy forwards /NAME/PATH?QUERY to Purser's /v1/proxy/NAME/PATH?QUERY,
// signed as the agent, and streams the answer back.
type localProxy struct{ agent *sdk.Agent }

// hopHeaders are not forwarded either way (RFC 9110 7.6.1), with
// Proxy-* headers meant for this hop.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (p *localProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, rest, ok := splitProxyPath(r.URL.EscapedPath())
	if !ok {
		writeLocalError(w, http.StatusNotFound, "not_found", "use /NAME/PATH: NAME is the vault credential, PATH below its upstream")
		return
	}
	if r.URL.RawQuery != "" {
		rest += "?" + r.URL.RawQuery
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, sdk.MaxProxyBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeLocalError(w, http.StatusRequestEntityTooLarge, "body_too_large", "the request body is larger than the proxy's limit of 1 MiB")
			return
		}
		writeLocalError(w, http.StatusBadRequest, "invalid_request", "could not read the request body")
		return
	}
	if len(body) == 0 {
		body = nil
	}
	h := r.Header.Clone()
	for _, k := range connectionTokens(r.Header) {
		h.Del(k)
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	resp, err := p.agent.Proxy(r.Context(), name, r.Method, rest, body, h)
	if err != nil {
		writePurserError(w, err)
		return
	}
	defer resp.Body.Close()
	for _, k := range connectionTokens(resp.Header) {
		resp.Header.Del(k)
	}
	for _, k := range hopHeaders {
		resp.Header.Del(k)
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	// Stream: flush as the upstream's answer arrives (server-sent events,
	// long downloads).
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// splitProxyPath splits /NAME/REST (escaped) into NAME (unescaped) and
// /REST (escaped as it came); /NAME alone is NAME and "/".
func splitProxyPath(p string) (name, rest string, ok bool) {
	p = strings.TrimPrefix(p, "/")
	seg, rest, _ := strings.Cut(p, "/")
	name, err := url.PathUnescape(seg)
	if err != nil || name == "" {
		return "", "", false
	}
	return name, "/" + rest, true
}

// connectionTokens are the headers a Connection header names: hop-by-hop.
func connectionTokens(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	}
	return out
}

// writeLocalError answers with a Purser-style error made by proxy serve
// itself.
func writeLocalError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(sdk.HeaderError, code)
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg})
	w.Write(append(b, '\n')) //nolint:errcheck // the client is gone
}

// writePurserError gives the local client Purser's own answer back: the
// status, the Purser-Error and Purser-Spend-Id headers and the error
// body, as if it had called Purser itself.
func writePurserError(w http.ResponseWriter, err error) {
	var ar *sdk.ApprovalRequiredError
	if errors.As(err, &ar) {
		w.Header().Set(sdk.HeaderSpendID, ar.SpendID)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(sdk.HeaderError, "approval_required")
		w.WriteHeader(http.StatusAccepted)
		b, _ := json.Marshal(map[string]any{"code": "approval_required", "message": ar.Error(),
			"details": map[string]any{"spend_id": ar.SpendID, "reasons": nonNil(ar.Reasons)}})
		w.Write(append(b, '\n')) //nolint:errcheck // the client is gone
		return
	}
	var ae *sdk.Error
	if !errors.As(err, &ae) {
		// Purser could not be reached, or the request could not be
		// signed: nothing went upstream.
		writeLocalError(w, http.StatusBadGateway, "purser_unreachable", "purser proxy: "+err.Error())
		return
	}
	if id := detailString(ae, "spend_id"); id != "" {
		w.Header().Set(sdk.HeaderSpendID, id)
	}
	status := ae.Status
	if status < 400 {
		// Not the upstream's answer and not an error status either (a
		// redirect of Purser's router): the client must not follow it.
		status = http.StatusBadGateway
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(sdk.HeaderError, ae.Code)
	w.WriteHeader(status)
	out := map[string]any{"code": ae.Code, "message": ae.Message}
	if d := ae.RawDetails(); len(d) > 0 {
		out["details"] = d
	}
	if ae.RequestID != "" {
		out["request_id"] = ae.RequestID
	}
	b, _ := json.Marshal(out)
	w.Write(append(b, '\n')) //nolint:errcheck // the client is gone
}
