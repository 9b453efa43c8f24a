package cosign

import "testing"

// Two parties in one process, one goroutine, no network: what the protocol
// itself costs.
func BenchmarkKeygen(b *testing.B) {
	var bytes int
	for b.Loop() {
		_, _, x := runKeygen(b)
		bytes = x.bytes
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric(float64(bytes), "bytes-exchanged/op")
}

func BenchmarkSign(b *testing.B) {
	agent, server, _ := runKeygen(b)
	var bytes, msgs int
	for b.Loop() {
		_, _, x := runSign(b, agent, server, binding(b))
		bytes, msgs = x.bytes, x.msgs
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
	b.ReportMetric(float64(bytes), "bytes-exchanged/op")
	b.ReportMetric(float64(msgs), "messages/op")
}
