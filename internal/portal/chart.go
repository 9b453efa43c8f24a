package portal

import (
	"math/big"
	"sort"
	"time"

	"github.com/purserhq/purser/internal/spend"
)

// chart is a stacked bar chart of spend per agent per day, laid out here
// and drawn by the template as plain SVG: no script, no library.
type chart struct {
	Width, Height int
	PlotTop       int
	PlotBottom    int
	Left, Right   int
	Bars          []bar
	Ticks         []tick
	Labels        []dayLabel
	Legend        []legendItem
	Empty         bool
	Summary       string
}

type bar struct {
	X, Y, W, H int
	Class      string
	Title      string
}

type tick struct {
	Y     int
	Label string
}

type dayLabel struct {
	X     int
	Label string
}

type legendItem struct {
	Name, Class string
	Total       *big.Int
}

const chartColors = 6

// buildChart lays out the last n of days in a chart width units wide
// (the page has a wide one and, for phones, a narrow one of fewer days).
func buildChart(days []string, usage []spend.DailyUsage, n, width int) chart {
	const height, left, right, top, bottom = 220, 56, 8, 12, 28
	if n < len(days) {
		cut := len(days) - n
		days = days[cut:]
		short := make([]spend.DailyUsage, len(usage))
		for i, u := range usage {
			short[i] = spend.DailyUsage{Agent: u.Agent, Days: u.Days[cut:]}
		}
		usage = short
	}
	c := chart{Width: width, Height: height, PlotTop: top, PlotBottom: height - bottom, Left: left, Right: width - right}
	// Agents by their 30-day total, largest first; beyond five, the rest
	// are drawn together as "Others".
	type series struct {
		name  string
		days  []*big.Int
		total *big.Int
	}
	var ss []series
	for _, u := range usage {
		t := new(big.Int)
		for _, v := range u.Days {
			t.Add(t, v)
		}
		if t.Sign() > 0 {
			ss = append(ss, series{u.Agent.Name, u.Days, t})
		}
	}
	sort.SliceStable(ss, func(i, j int) bool { return ss[i].total.Cmp(ss[j].total) > 0 })
	if len(ss) > chartColors {
		rest := series{name: "Others", days: make([]*big.Int, len(days)), total: new(big.Int)}
		for i := range rest.days {
			rest.days[i] = new(big.Int)
		}
		for _, s := range ss[chartColors-1:] {
			for i, v := range s.days {
				rest.days[i].Add(rest.days[i], v)
			}
			rest.total.Add(rest.total, s.total)
		}
		ss = append(ss[:chartColors-1], rest)
	}
	if len(ss) == 0 {
		c.Empty = true
	}
	peak := new(big.Int)
	for i := range days {
		sum := new(big.Int)
		for _, s := range ss {
			sum.Add(sum, s.days[i])
		}
		if sum.Cmp(peak) > 0 {
			peak = sum
		}
	}
	// Four gridlines a round step apart.
	step := niceCeil(new(big.Int).Quo(new(big.Int).Add(peak, big.NewInt(3)), big.NewInt(4)))
	scaleMax := new(big.Int).Mul(step, big.NewInt(4))
	plotH := c.PlotBottom - c.PlotTop
	for i := 0; i <= 4; i++ {
		v := new(big.Int).Mul(scaleMax, big.NewInt(int64(i)))
		v.Quo(v, big.NewInt(4))
		c.Ticks = append(c.Ticks, tick{Y: c.PlotBottom - plotH*i/4, Label: usdShort(v)})
	}
	slot := (width - left - right) / max(len(days), 1)
	barW := max(slot*3/5, 2)
	for i, d := range days {
		x := left + i*slot + (slot-barW)/2
		y := c.PlotBottom
		for k, s := range ss {
			v := s.days[i]
			if v.Sign() == 0 {
				continue
			}
			h := scaled(v, scaleMax, plotH)
			y -= h
			c.Bars = append(c.Bars, bar{X: x, Y: y, W: barW, H: h, Class: "c" + string(rune('0'+k)),
				Title: s.name + ", " + dayName(d) + ": " + usd(v)})
		}
		if (len(days)-1-i)%7 == 0 {
			c.Labels = append(c.Labels, dayLabel{X: x + barW/2, Label: dayName(d)})
		}
	}
	total := new(big.Int)
	for k, s := range ss {
		c.Legend = append(c.Legend, legendItem{Name: s.name, Class: "c" + string(rune('0'+k)), Total: s.total})
		total.Add(total, s.total)
	}
	c.Summary = "Spend per agent per day over the last " + itoa(len(days)) + " days; " + usd(total) + " in all."
	return c
}

// scaled is v's height in pixels on a plot of h pixels for scaleMax; a
// non-zero amount is at least one pixel high.
func scaled(v, scaleMax *big.Int, h int) int {
	if scaleMax.Sign() == 0 {
		return 0
	}
	p := new(big.Int).Mul(v, big.NewInt(int64(h)))
	p.Quo(p, scaleMax)
	return max(int(p.Int64()), 1)
}

// niceCeil rounds micro-USD up to 1, 2 or 5 times a power of ten dollars
// (at least one dollar), so the axis reads in round numbers.
func niceCeil(v *big.Int) *big.Int {
	step := big.NewInt(1_000_000)
	for {
		for _, m := range []int64{1, 2, 5} {
			c := new(big.Int).Mul(step, big.NewInt(m))
			if c.Cmp(v) >= 0 {
				return c
			}
		}
		step.Mul(step, big.NewInt(10))
	}
}

func usdShort(v *big.Int) string {
	d := new(big.Int).Quo(v, big.NewInt(1_000_000))
	s := usd(new(big.Int).Mul(d, big.NewInt(1_000_000)))
	return s[:len(s)-3] // whole dollars on the axis
}

func dayName(d string) string {
	t, err := time.Parse(time.DateOnly, d)
	if err != nil {
		return d
	}
	return t.Format("2 Jan")
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
