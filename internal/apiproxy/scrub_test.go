package apiproxy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/apiproxy"
)

// TestScrubAcrossWrites: a secret split over any write boundary is
// still caught, and bytes that hold no secret pass unchanged.
func TestScrubAcrossWrites(t *testing.T) {
	t.Parallel()
	s := apiproxy.NewScrubber([][]byte{[]byte(secret)})
	in := "head " + secret + " mid " + forms(secret)[5] + " tail " + strings.Repeat("z", 100)
	want := s.String(in)
	if strings.Contains(want, secret) || strings.Count(want, apiproxy.Redacted) != 2 {
		t.Fatalf("one-shot: %q", want)
	}
	for step := 1; step < 40; step++ {
		var out bytes.Buffer
		z := s.Writer(&out)
		for i := 0; i < len(in); i += step {
			z.Write([]byte(in[i:min(i+step, len(in))]))
		}
		z.Close()
		if out.String() != want {
			t.Fatalf("step %d: %q", step, out.String())
		}
	}
	plain := "nothing secret here " + strings.Repeat("sk_live_", 20)
	if got := s.String(plain); got != plain {
		t.Fatalf("plain text changed: %q", got)
	}
}

func BenchmarkScrub(b *testing.B) {
	s := apiproxy.NewScrubber([][]byte{[]byte(secret), []byte("sk_live_previousVersion9")})
	data := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789{}\":, _-"
	for i := range data {
		data[i] = alpha[r.IntN(len(alpha))]
	}
	b.SetBytes(int64(len(data)))
	z := s.Writer(io.Discard)
	for b.Loop() {
		z.Reset(s, io.Discard)
		for i := 0; i < len(data); i += 32 << 10 {
			z.Write(data[i : i+32<<10])
		}
		z.Close()
	}
}

// BenchmarkForward compares a direct call with a forwarded one to the
// same local upstream at 64 concurrent callers; compare the two ns/op.
func BenchmarkForward(b *testing.B) {
	body := []byte(`{"id":"cus_1","object":"customer","email":"a@b.example"}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer up.Close()
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	f := apiproxy.NewForwarder(apiproxy.Options{})
	defer f.Close()
	tg := target(b, up.URL, "header:Authorization=Bearer {secret}")
	b.Run("direct", func(b *testing.B) {
		b.SetParallelism(64 / max(1, runtimeProcs()))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", up.URL+"/v1/customers/cus_1", nil)
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := direct.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	})
	b.Run("forward", func(b *testing.B) {
		b.SetParallelism(64 / max(1, runtimeProcs()))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rec := discardWriter{h: http.Header{}}
				res := f.Do(context.Background(), tg, &apiproxy.Call{Method: "GET", Path: "/v1/customers/cus_1", Header: http.Header{"Accept": {"application/json"}}}, &rec)
				if res.Reason != "" {
					b.Error(res.Err)
					return
				}
			}
		})
	})
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// TestScrubJSONEscapedEchoes: an upstream that echoes the secret inside
// a JSON string writes it escaped (PHP: / as \/; Go: & as \u0026, " as
// \"), and base64 forms with a / the same way; all are scrubbed.
func TestScrubJSONEscapedEchoes(t *testing.T) {
	t.Parallel()
	const sec = `sk_live_ab/cd+ef&gh"ij\kl<mn>???`
	s := apiproxy.NewScrubber([][]byte{[]byte(sec)})
	b64 := base64.StdEncoding.EncodeToString([]byte(sec))
	if !strings.Contains(b64, "/") {
		t.Fatalf("the test secret's base64 %s has no /", b64)
	}
	for _, echo := range []string{
		`{"key":"sk_live_ab\/cd+ef&gh\"ij\\kl<mn>???"}`,                // PHP json_encode
		`{"key":"sk_live_ab/cd+ef\u0026gh\"ij\\kl\u003cmn\u003e???"}`,  // Go encoding/json
		`{"key":"sk_live_ab/cd+ef&gh\"ij\\kl<mn>???"}`,                 // Go, SetEscapeHTML(false)
		`{"key":"sk_live_ab\/cd+ef\u0026gh\"ij\\kl\u003cmn\u003e???"}`, // both
		`{"b64":"` + strings.ReplaceAll(b64, "/", `\/`) + `"}`,         // its base64, PHP-escaped
	} {
		if got := s.String(echo); !strings.Contains(got, apiproxy.Redacted) {
			t.Errorf("not scrubbed: %s", echo)
		}
	}
}
