package agentauth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/purserhq/purser/internal/agentauth"
)

// FuzzParseVerify feeds arbitrary header values, requests and clocks through
// Parse and Verify. Neither may panic, every error must be a coded *Error,
// a parsed header must survive Apply/Parse unchanged, and a request that
// verifies must stop verifying once its body changes or in another domain. A "\n" in a value
// splits it into repeated headers; an empty value omits the header.
func FuzzParseVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, agent, nonce, expires, sig, method, pq string, body []byte, now int64) {
		h := http.Header{}
		for _, kv := range [][2]string{
			{agentauth.HeaderAgent, agent},
			{agentauth.HeaderNonce, nonce},
			{agentauth.HeaderExpires, expires},
			{agentauth.HeaderSignature, sig},
		} {
			if kv[1] != "" {
				h[kv[0]] = strings.Split(kv[1], "\n")
			}
		}
		s, err := agentauth.Parse(h)
		if err != nil {
			if c := codeOf(err); c != agentauth.CodeAuthMissing && c != agentauth.CodeAuthMalformed {
				t.Fatalf("Parse error without a parse code: %v", err)
			}
			return
		}
		h2 := http.Header{}
		s.Apply(h2)
		s2, err := agentauth.Parse(h2)
		if err != nil || s2 != s {
			t.Fatalf("Apply/Parse round trip: %v\n%+v\n%+v", err, s, s2)
		}

		// The seeds "valid" and "valid_v0" were signed in the version 1
		// domain; the digest code is shared by both versions.
		err = s.Verify(agentauth.UnboundDomain(), method, pq, body, time.Unix(now, 0))
		switch codeOf(err) {
		case "":
			if err != nil {
				t.Fatalf("uncoded Verify error: %v", err)
			}
			if err := s.Verify(agentauth.UnboundDomain(), method, pq, append(body[:len(body):len(body)], 'x'), time.Unix(now, 0)); codeOf(err) != agentauth.CodeSignatureInvalid {
				t.Fatalf("changed body still verifies: %v", err)
			}
			if err := s.Verify(testDomain, method, pq, body, time.Unix(now, 0)); codeOf(err) != agentauth.CodeSignatureInvalid {
				t.Fatalf("an unbound signature verifies in a deployment's domain: %v", err)
			}
		case agentauth.CodeSignatureInvalid, agentauth.CodeSignatureExpired, agentauth.CodeSignatureExpiryTooFar:
		default:
			t.Fatalf("unexpected Verify error: %v", err)
		}
	})
}
