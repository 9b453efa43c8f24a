package sdk

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// AuditExport streams the signed audit export (format "jsonl" or "csv";
// "" is the server's default, jsonl). The caller must close the stream.
//
// The body is not size-capped and the http.Client's overall timeout does
// not apply to it (an export may take longer than one request should):
// the timeout bounds only the wait for the answer's headers, and ctx
// bounds the rest.
func (o *Owner) AuditExport(ctx context.Context, format string) (io.ReadCloser, error) {
	q := url.Values{}
	if format != "" {
		q.Set("format", format)
	}
	ctx, cancel := context.WithCancel(ctx)
	req, err := o.c.newRequest(ctx, http.MethodGet, "/v1/audit/export", q, nil, authOwner)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "*/*")
	hc := *o.c.hc
	timeout := hc.Timeout
	hc.Timeout = 0
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timer := time.AfterFunc(timeout, cancel)
	resp, err := hc.Do(req)
	if !timer.Stop() && err == nil {
		resp.Body.Close()
		err = fmt.Errorf("client: audit export: no answer within %s", timeout)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody))
		return nil, decodeError(resp.StatusCode, raw)
	}
	return &stream{ReadCloser: resp.Body, cancel: cancel}, nil
}

type stream struct {
	io.ReadCloser
	cancel context.CancelFunc
	once   sync.Once
}

func (s *stream) Close() error {
	err := s.ReadCloser.Close()
	s.once.Do(s.cancel)
	return err
}
