package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// Response bodies kept per attempt, and read at most.
const (
	keptBody = 2 << 10
	readBody = 64 << 10
)

// UserAgent is sent with every delivery.
const UserAgent = "Purser-Webhooks/1"

func marshalPayload(p Payload) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// send makes one attempt: POST body to the endpoint, signed for this
// attempt's timestamp (Standard Webhooks: the id and the body stay the
// same across retries; the timestamp is the attempt's, so a receiver's
// replay window accepts a retry made hours later).
func (w *Webhooks) send(ctx context.Context, ep *spend.WebhookEndpoint, secret []byte, msgID string, body []byte) result {
	r := result{at: w.now()}
	r.ts = r.at.Unix()
	sig, err := w.signer.Sign(ep.Signing, secret, msgID, r.ts, body)
	if err != nil {
		r.err = err
		return r
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set("webhook-id", msgID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(r.ts, 10))
	req.Header.Set("webhook-signature", sig)
	client := w.public
	if ep.AllowPrivate {
		client = w.private
	}
	start := time.Now()
	resp, err := client.Do(req)
	r.dur = time.Since(start)
	if err != nil {
		r.err = cleanErr(err)
		return r
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, readBody))
	r.code = resp.StatusCode
	r.body = capBody(b)
	r.retryAfter = retryAfter(resp.Header.Get("Retry-After"), r.at)
	return r
}

// cleanErr drops the URL from a client error: it may carry a token the
// owner put in its query, and the attempt log is shown.
func cleanErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func capBody(b []byte) string {
	if len(b) > keptBody {
		b = b[:keptBody]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// retryAfter parses a Retry-After header: seconds, or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
