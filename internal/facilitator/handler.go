package facilitator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/purserhq/purser/x402"
)

// MaxRequestBytes bounds a /verify or /settle body.
const MaxRequestBytes = 64 << 10

// Handler serves POST /verify, POST /settle and GET /supported. Invalid
// payments are answered 200 with isValid:false or success:false (as the
// reference facilitators do); a request that cannot be read is a 400
// with {"error": ...}.
func (f *Facilitator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /supported", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, f.Supported())
	})
	mux.HandleFunc("POST /verify", func(w http.ResponseWriter, r *http.Request) {
		p, req, err := readRequest(w, r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, f.Verify(ctx, p, req))
	})
	mux.HandleFunc("POST /settle", func(w http.ResponseWriter, r *http.Request) {
		p, req, err := readRequest(w, r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"success": false, "errorReason": ReasonInvalidPayload,
				"errorMessage": err.Error(), "transaction": "", "network": ""})
			return
		}
		// The settlement outlives a client that hangs up: the
		// transaction is out, and a retry must find its outcome.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Minute)
		defer cancel()
		writeJSON(w, http.StatusOK, f.Settle(ctx, p, req))
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

func readRequest(w http.ResponseWriter, r *http.Request) (*x402.PaymentPayload, *x402.Requirements, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		return nil, nil, errors.New("the body is unreadable or larger than 64 KiB")
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
