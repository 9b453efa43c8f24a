package cosign

import "testing"

func TestMessageSizes(t *testing.T) {
	agent, server, kx := runKeygen(t)
	_, _, sx := runSign(t, agent, server, binding(t))
	t.Logf("keygen: %d messages, %d bytes, sizes %v", kx.msgs, kx.bytes, kx.sizes)
	t.Logf("sign: %d messages, %d bytes, sizes %v", sx.msgs, sx.bytes, sx.sizes)
}
