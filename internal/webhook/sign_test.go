package webhook_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/purserhq/purser/internal/webhook"
)

// TestSignStandardVector: the signer reproduces the test vector of the
// Standard Webhooks reference libraries (their C# and other suites'
// verifyWebhookSignWorks): whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,
// msg_p5jXN8AQM9LWM0D4loKWxJek, 1614265330, {"test": 2432232314}.
func TestSignStandardVector(t *testing.T) {
	t.Parallel()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := webhook.Signer{}.Sign(webhook.SigningHMAC, key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s; the Standard Webhooks vector is %s", got, want)
	}
	if got := webhook.FormatSecret(key); got != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" {
		t.Fatalf("FormatSecret = %s", got)
	}
}
