package webhook_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/webhook"
)

// TestDocumentedRecipeCompilesAndVerifies takes the Go verification
// function from docs/webhooks.md as it is printed, compiles it into a
// program, and runs real deliveries (HMAC and Ed25519) through it: they
// verify, and a tampered body does not.
func TestDocumentedRecipeCompilesAndVerifies(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds a program")
	}
	doc, err := os.ReadFile("../../docs/webhooks.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```go\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/webhooks.md has no Go block")
	}
	f := newFixture(t)
	rh, re := newReceiver(t, nil), newReceiver(t, nil)
	ch := f.create(webhook.CreateParams{URL: rh.URL, AllowPrivate: true})
	ce := f.create(webhook.CreateParams{URL: re.URL, AllowPrivate: true, Signing: webhook.SigningEd25519})
	f.freezes(1)
	f.until("deliveries", func() bool { return len(rh.accepted()) == 1 && len(re.accepted()) == 1 })
	type input struct {
		ID, TS, Sig, Secret, PublicKey string
		Body                           []byte
	}
	dh, de := rh.accepted()[0], re.accepted()[0]
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, c := range []input{
		{dh.id, dh.ts, dh.sig, ch.Secret, "", dh.body},
		{de.id, de.ts, de.sig, "", ce.PublicKey, de.body},
		{dh.id, dh.ts, dh.sig, ch.Secret, "", append(bytes.Clone(dh.body[:len(dh.body)-1]), ' ', '}')},
		{de.id, de.ts, dh.sig, "", ce.PublicKey, de.body}, // an HMAC signature offered to a v1a receiver
	} {
		enc.Encode(c) //nolint:errcheck
	}
	prog := `package main

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

` + string(m[1]) + `
func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var in struct {
			ID, TS, Sig, Secret, PublicKey string
			Body                           []byte
		}
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			panic(err)
		}
		r, _ := http.NewRequest("POST", "http://receiver/", bytes.NewReader(in.Body))
		r.Header.Set("webhook-id", in.ID)
		r.Header.Set("webhook-timestamp", in.TS)
		r.Header.Set("webhook-signature", in.Sig)
		if _, err := verify(r, in.Secret, in.PublicKey); err != nil {
			fmt.Println("refused")
		} else {
			fmt.Println("ok")
		}
	}
}
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "main.go")
	cmd.Dir, cmd.Stdin = dir, &in
	cmd.Env = append(os.Environ(), "GO111MODULE=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the documented recipe does not build or run: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "ok ok refused refused" {
		t.Fatalf("the documented recipe says %v; want ok ok refused refused", got)
	}
}
