package facilitator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/purserhq/purser/x402"
)

// MaxRequestBytes bounds a /verify or /settle body.
const MaxRequestBytes = 64 << 10

// Error codes of requests refused before any payment is looked at. The
// reply carries {"code","message","details"} and, so that x402 clients
// read it as a failed verify or settle, the protocol's own fields.
const (
	CodeUnauthorized     = "unauthorized"           // 401: Config.Secret set, bearer missing or wrong
	CodeUnsupportedMedia = "unsupported_media_type" // 415: the body is not application/json
	CodeBodyTooLarge     = "body_too_large"         // 413: over MaxRequestBytes
	CodeRateLimited      = "rate_limited"           // 429: Config.PayerRate or SourceRate; Retry-After says when
	CodeInvalidPayload   = ReasonInvalidPayload     // 400: not a {x402Version, paymentPayload, paymentRequirements} document
)

// Handler serves POST /verify, POST /settle and GET /supported. Invalid
// payments are answered 200 with isValid:false or success:false (as the
// reference facilitators do); a request refused before that gets a 4xx
// with a JSON error (see the Code constants).
func (f *Facilitator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /supported", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, f.Supported())
	})
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, r *http.Request) {
		p, req, ok := f.admit(w, r, false)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, f.Verify(ctx, p, req))
	})
	mux.HandleFunc("POST /settle", func(w http.ResponseWriter, r *http.Request) {
		p, req, ok := f.admit(w, r, true)
		if !ok {
			return
		}
		// The settlement outlives a client that hangs up: the
		// transaction is out, and a retry must find its outcome.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), SettleTimeout)
		defer cancel()
		writeJSON(w, http.StatusOK, f.Settle(ctx, p, req))
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

// SettleTimeout bounds one settlement: send, then wait for the receipt.
const SettleTimeout = 2 * time.Minute

// NewHTTPServer returns a server for h with the deadlines a facilitator
// on a network needs: a client cannot hold a connection by sending
// slowly or by idling; a response may take a settlement's time.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      SettleTimeout + 30*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// admit runs the checks that come before a payment is verified, in
// order of cost: source rate, secret, media type, body, payer rate. It
// answers the refusals itself.
func (f *Facilitator) admit(w http.ResponseWriter, r *http.Request, settle bool) (*x402.PaymentPayload, *x402.Requirements, bool) {
	refuse := func(status int, code, msg string) (*x402.PaymentPayload, *x402.Requirements, bool) {
		writeRefusal(w, status, code, msg, settle)
		return nil, nil, false
	}
	if f.sources != nil {
		if ok, wait := f.sources.allow(sourceOf(r)); !ok {
			w.Header().Set("Retry-After", retryAfter(wait))
			return refuse(http.StatusTooManyRequests, CodeRateLimited, "too many requests from this source")
		}
	}
	if f.secret != nil && !f.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="purser facilitator"`)
		return refuse(http.StatusUnauthorized, CodeUnauthorized, "a valid Authorization: Bearer secret is required")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return refuse(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "the body must be application/json")
	}
	p, req, err := readRequest(w, r)
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return refuse(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "the body is larger than 64 KiB")
		}
		return refuse(http.StatusBadRequest, CodeInvalidPayload, err.Error())
	}
	// The payer is counted only once its signature checks out (off-chain,
	// cheap): anyone can write a victim's address into a forged payment,
	// and must not spend the victim's allowance with it.
	if _, reason, _ := f.verify(r.Context(), p, req, false); f.payers != nil && reason == "" {
		if ok, wait := f.payers.allow(strings.ToLower(p.Payload.Authorization.From)); !ok {
			w.Header().Set("Retry-After", retryAfter(wait))
			return refuse(http.StatusTooManyRequests, CodeRateLimited, "too many requests for this payer")
		}
	}
	return p, req, true
}

// authorized compares the bearer with the secret in constant time (over
// digests, so the length does not show either).
func (f *Facilitator) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256(f.secret)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1 && ok
}

// sourceOf is the TCP peer's IP: behind a proxy, all callers share the
// proxy's.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

func readRequest(w http.ResponseWriter, r *http.Request) (*x402.PaymentPayload, *x402.Requirements, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, nil, err
		}
		return nil, nil, errors.New("the body is unreadable")
	}
	var in struct {
		X402Version         int             `json:"x402Version"`
		PaymentPayload      json.RawMessage `json:"paymentPayload"`
		PaymentRequirements json.RawMessage `json:"paymentRequirements"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, nil, errors.New("the body must be JSON {x402Version, paymentPayload, paymentRequirements}")
	}
	if len(bytes.TrimSpace(in.PaymentPayload)) == 0 || len(bytes.TrimSpace(in.PaymentRequirements)) == 0 {
		return nil, nil, errors.New("paymentPayload and paymentRequirements are required")
	}
	// The reference dispatches on the payload's own version.
	p, err := x402.ParsePaymentPayload(in.PaymentPayload)
	if err != nil {
		return nil, nil, err
	}
	req, err := x402.ParseRequirements(p.Version, in.PaymentRequirements)
	if err != nil {
		return nil, nil, err
	}
	return p, req, nil
}

// writeRefusal answers a request refused before verification.
func writeRefusal(w http.ResponseWriter, status int, code, msg string, settle bool) {
	out := map[string]any{"code": code, "message": msg, "details": map[string]any{}}
	if settle {
		out["success"], out["errorReason"], out["errorMessage"], out["transaction"], out["network"] = false, code, msg, "", ""
	} else {
		out["isValid"], out["invalidReason"], out["invalidMessage"] = false, code, msg
	}
	writeJSON(w, status, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal","message":"internal error","details":{}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
