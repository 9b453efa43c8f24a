// Package metrics is a small Prometheus text-format registry: counters and
// histograms with labels, and gauges read at scrape time. Purser needs a
// dozen series; a client library would bring far more than that.
//
// Label values must never carry secrets, keys or signatures: callers pass
// only routes, decisions, reason codes and status codes.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds metric families and writes them in the text format.
type Registry struct {
	mu       sync.Mutex
	families []family
}

type family interface {
	name() string
	write(w io.Writer)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) add(f family) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.families = append(r.families, f)
}

// Write writes every family, sorted by name.
func (r *Registry) Write(w io.Writer) {
	r.mu.Lock()
	fs := append([]family(nil), r.families...)
	r.mu.Unlock()
	sort.Slice(fs, func(i, j int) bool { return fs[i].name() < fs[j].name() })
	for _, f := range fs {
		f.write(w)
	}
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func labelString(names, values []string) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(values[i]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// CounterVec is a counter family with labels.
type CounterVec struct {
	n, help string
	labels  []string
	mu      sync.Mutex
	series  map[string]*atomic.Uint64
}

// NewCounterVec registers a counter family.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{n: name, help: help, labels: labels, series: map[string]*atomic.Uint64{}}
	r.add(c)
	return c
}

func (c *CounterVec) name() string { return c.n }

// Add adds v to the series with these label values.
func (c *CounterVec) Add(v uint64, values ...string) {
	key := labelString(c.labels, values)
	c.mu.Lock()
	s, ok := c.series[key]
	if !ok {
		s = new(atomic.Uint64)
		c.series[key] = s
	}
	c.mu.Unlock()
	s.Add(v)
}

// Inc adds one.
func (c *CounterVec) Inc(values ...string) { c.Add(1, values...) }

func (c *CounterVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.n, c.help, c.n)
	c.mu.Lock()
	keys := make([]string, 0, len(c.series))
	for k := range c.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s%s %d\n", c.n, k, c.series[k].Load())
	}
	c.mu.Unlock()
}

// HistogramVec is a histogram family of durations in seconds (Observe) or
// of plain values (ObserveValue).
type HistogramVec struct {
	n, help string
	labels  []string
	bounds  []float64
	mu      sync.Mutex
	series  map[string]*hist
}

type hist struct {
	counts []uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

// DefaultLatencyBuckets cover 0.5 ms to 10 s.
var DefaultLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10}

// NewHistogramVec registers a histogram family.
func (r *Registry) NewHistogramVec(name, help string, bounds []float64, labels ...string) *HistogramVec {
	h := &HistogramVec{n: name, help: help, labels: labels, bounds: bounds, series: map[string]*hist{}}
	r.add(h)
	return h
}

func (h *HistogramVec) name() string { return h.n }

// Observe records d, in seconds.
func (h *HistogramVec) Observe(d time.Duration, values ...string) {
	h.ObserveValue(d.Seconds(), values...)
}

// ObserveValue records a plain value (a histogram of sizes, say).
func (h *HistogramVec) ObserveValue(v float64, values ...string) {
	key := labelString(h.labels, values)
	i := sort.SearchFloat64s(h.bounds, v)
	h.mu.Lock()
	s, ok := h.series[key]
	if !ok {
		s = &hist{counts: make([]uint64, len(h.bounds)+1)}
		h.series[key] = s
	}
	s.counts[i]++
	s.count++
	s.sum += v
	h.mu.Unlock()
}

func (h *HistogramVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.n, h.help, h.n)
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]string, 0, len(h.series))
	for k := range h.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := h.series[k]
		inner := strings.TrimSuffix(strings.TrimPrefix(k, "{"), "}")
		sep := ""
		if inner != "" {
			sep = ","
		}
		var cum uint64
		for i, b := range h.bounds {
			cum += s.counts[i]
			fmt.Fprintf(w, "%s_bucket{%s%sle=\"%s\"} %d\n", h.n, inner, sep, strconv.FormatFloat(b, 'g', -1, 64), cum)
		}
		fmt.Fprintf(w, "%s_bucket{%s%sle=\"+Inf\"} %d\n", h.n, inner, sep, s.count)
		fmt.Fprintf(w, "%s_sum%s %s\n%s_count%s %d\n", h.n, k, strconv.FormatFloat(s.sum, 'g', -1, 64), h.n, k, s.count)
	}
}

// GaugeFunc is a gauge read at scrape time.
type GaugeFunc struct {
	n, help string
	fn      func() float64
}

// NewGaugeFunc registers a gauge whose value fn returns; fn must be quick.
func (r *Registry) NewGaugeFunc(name, help string, fn func() float64) {
	r.add(&GaugeFunc{n: name, help: help, fn: fn})
}

func (g *GaugeFunc) name() string { return g.n }

func (g *GaugeFunc) write(w io.Writer) {
	v := g.fn()
	if math.IsNaN(v) {
		return
	}
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", g.n, g.help, g.n, g.n, strconv.FormatFloat(v, 'g', -1, 64))
}
