package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/purserhq/purser/sdk"
)

// benchProxyResult is the --json output of bench --proxy: the same load
// against a local upstream, directly and through Purser's proxy, one phase
// after the other.
type benchProxyResult struct {
	Direct     benchResult `json:"direct"`
	Proxied    benchResult `json:"proxied"`
	AddedP50ms float64     `json:"added_p50_ms"` // proxied p50 - direct p50
	AddedP99ms float64     `json:"added_p99_ms"`
	Price      string      `json:"price"` // what each proxied call holds and captures
}

// In bench --proxy's phases, a benchResult's "authorizations" are the
// calls the upstream answered with 200.

// benchUpstreamBody is what the bench's upstream answers: a small JSON
// search result, like the APIs agents call.
const benchUpstreamBody = `{"results":[{"id":1,"title":"a result","score":0.92},{"id":2,"title":"another result","score":0.87}]}`

// benchProxy measures proxied calls against direct calls. It starts an
// upstream on loopback that checks its key, stores the key in the vault
// (allow_private: the upstream is on loopback), grants every bench agent
// GET /v1/search at --amount per call, and runs the direct phase, then the
// proxied phase, with the same agents and load.
func benchProxy(ctx context.Context, e *env, o *opts, owner *sdk.Owner, workers []*benchWorker, run string, hc *http.Client) error {
	b := o.bench
	var kb [16]byte
	rand.Read(kb[:])
	secret := "sk_bench_" + hex.EncodeToString(kb[:])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	up := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Api-Key") != secret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(benchUpstreamBody)))
		io.WriteString(w, benchUpstreamBody) //nolint:errcheck // the bench counts what its client saw
	})}
	go up.Serve(ln) //nolint:errcheck // closed below
	defer up.Close()
	upstream := "http://" + ln.Addr().String()

	cred := "bench-" + run
	if _, err := owner.PutCredential(ctx, sdk.PutCredentialRequest{Name: cred, Upstream: upstream, Inject: "header:X-Api-Key={secret}",
		Secret: secret, AllowPrivate: true}); err != nil {
		return fmt.Errorf("vault put %s: %w", cred, err)
	}
	if !b.keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if _, err := owner.DeleteCredential(dctx, cred); err != nil {
				fmt.Fprintf(e.stdio.Err, "bench: credential %s could not be removed: %v\n", cred, err)
			}
		}()
	}
	for i := range workers {
		agent := fmt.Sprintf("bench-%s-%d", run, i)
		if _, err := owner.Grant(ctx, cred, sdk.GrantRequest{Agent: agent, Methods: []string{"GET"}, Paths: []string{"/v1/search"}, Price: b.amount}); err != nil {
			return fmt.Errorf("vault grant %s %s: %w", cred, agent, err)
		}
	}
	direct := &http.Client{Transport: hc.Transport, Timeout: hc.Timeout}
	for _, w := range workers {
		w.call = func(ctx context.Context, _ int) string {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream+"/v1/search?q=bench", nil)
			if err != nil {
				return "request_invalid"
			}
			req.Header.Set("X-Api-Key", secret)
			resp, err := direct.Do(req)
			if err != nil {
				return "network_error"
			}
			return drainStatus(resp)
		}
	}
	if !o.json {
		fmt.Fprintf(e.stdio.Err, "bench: %d agents, upstream %s; direct calls first, then the same through credential %s at %s per call\n",
			len(workers), upstream, cred, b.amount)
	}
	d, err := runPhase(ctx, workers, b)
	if err != nil {
		return err
	}
	for _, w := range workers {
		w.call = func(ctx context.Context, _ int) string {
			resp, err := w.c.Proxy(ctx, cred, http.MethodGet, "/v1/search?q=bench", nil, nil)
			if err != nil {
				return errCode(err)
			}
			return drainStatus(resp)
		}
	}
	p, err := runPhase(ctx, workers, b)
	if err != nil {
		return err
	}
	res := benchProxyResult{Direct: d, Proxied: p, AddedP50ms: p.P50ms - d.P50ms, AddedP99ms: p.P99ms - d.P99ms, Price: b.amount}
	if o.json {
		return writeJSON(e.stdio.Out, res)
	}
	fmt.Fprintln(e.stdio.Out, "== direct calls to the upstream")
	printBenchOf(e, d, "calls")
	fmt.Fprintln(e.stdio.Out, "== the same calls through Purser's proxy (each a spend)")
	printBenchOf(e, p, "calls")
	fmt.Fprintf(e.stdio.Out, "added by the proxy: p50 %+.2fms  p99 %+.2fms\n", res.AddedP50ms, res.AddedP99ms)
	if p.Authorizations == 0 {
		return exitCode(ExitFailure)
	}
	return nil
}

// drainStatus reads and closes an answer: "" for 200, else its status.
func drainStatus(resp *http.Response) string {
	io.Copy(io.Discard, resp.Body) //nolint:errcheck // the status is what counts
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "status_" + strconv.Itoa(resp.StatusCode)
	}
	return ""
}
