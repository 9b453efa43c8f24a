package metrics

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestExposition(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	c := r.NewCounterVec("purser_x_total", "X.", "decision", "reason")
	c.Inc("deny", "per_tx_cap_exceeded")
	c.Inc("deny", "per_tx_cap_exceeded")
	c.Inc("allow", `odd"label`)
	h := r.NewHistogramVec("purser_lat_seconds", "Latency.", []float64{0.001, 0.01}, "route")
	h.Observe(500*time.Microsecond, "a")
	h.Observe(5*time.Millisecond, "a")
	h.Observe(time.Second, "a")
	r.NewGaugeFunc("purser_holds", "Holds.", func() float64 { return 7 })
	var buf bytes.Buffer
	r.Write(&buf)
	out := buf.String()
	for _, want := range []string{
		"# TYPE purser_x_total counter\n",
		`purser_x_total{decision="deny",reason="per_tx_cap_exceeded"} 2` + "\n",
		`purser_x_total{decision="allow",reason="odd\"label"} 1` + "\n",
		`purser_lat_seconds_bucket{route="a",le="0.001"} 1` + "\n",
		`purser_lat_seconds_bucket{route="a",le="0.01"} 2` + "\n",
		`purser_lat_seconds_bucket{route="a",le="+Inf"} 3` + "\n",
		`purser_lat_seconds_count{route="a"} 3` + "\n",
		"purser_holds 7\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Index(out, "purser_holds") > strings.Index(out, "purser_x_total") {
		t.Error("families are not sorted by name")
	}
}

func TestObserveValue(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	h := r.NewHistogramVec("purser_batch_callers", "Callers.", []float64{1, 2, 4})
	for _, v := range []float64{1, 1, 3, 9} {
		h.ObserveValue(v)
	}
	h.Observe(2 * time.Second) // Observe is ObserveValue in seconds
	var buf bytes.Buffer
	r.Write(&buf)
	out := buf.String()
	for _, want := range []string{
		`purser_batch_callers_bucket{le="1"} 2` + "\n",
		`purser_batch_callers_bucket{le="2"} 3` + "\n",
		`purser_batch_callers_bucket{le="4"} 4` + "\n",
		`purser_batch_callers_bucket{le="+Inf"} 5` + "\n",
		"purser_batch_callers_sum 16\n",
		"purser_batch_callers_count 5\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
