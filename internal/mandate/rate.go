package mandate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate limits how often an agent may be authorised: at most Count
// authorizations per fixed window of Per, windows aligned to the Unix epoch.
// Fixed windows (not sliding) keep the count a single stored integer.
type Rate struct {
	Count int
	Per   time.Duration
}

const (
	maxRateCount = 1_000_000
	minRatePer   = time.Second
	maxRatePer   = 24 * time.Hour
)

// ParseRate parses "N/DUR", e.g. "10/1m", where DUR is a Go duration from
// 1s to 24h and 1 <= N <= 1,000,000.
func ParseRate(s string) (Rate, error) {
	n, d, ok := strings.Cut(s, "/")
	if !ok || n == "" || d == "" || len(n) > 7 || !isDigits(n) || !isDigit(d[0]) {
		return Rate{}, fmt.Errorf("rate %q is not N/DURATION, e.g. 10/1m", s)
	}
	count, _ := strconv.Atoi(n) // cannot fail: at most 7 digits
	per, err := time.ParseDuration(d)
	if err != nil {
		return Rate{}, fmt.Errorf("rate %q: duration %q is not like 30s, 1m or 1h", s, d)
	}
	r := Rate{Count: count, Per: per}
	if err := r.validate(); err != nil {
		return Rate{}, fmt.Errorf("rate %q: %w", s, err)
	}
	return r, nil
}

func (r Rate) validate() error {
	if r.Count < 1 || r.Count > maxRateCount {
		return errors.New("count must be between 1 and 1000000")
	}
	if r.Per < minRatePer || r.Per > maxRatePer {
		return errors.New("window must be between 1s and 24h")
	}
	return nil
}

// String returns the form ParseRate reads, in the largest whole unit
// ("10/1m", not "10/1m0s").
func (r Rate) String() string {
	var d string
	switch {
	case r.Per > 0 && r.Per%time.Hour == 0:
		d = strconv.FormatInt(int64(r.Per/time.Hour), 10) + "h"
	case r.Per > 0 && r.Per%time.Minute == 0:
		d = strconv.FormatInt(int64(r.Per/time.Minute), 10) + "m"
	case r.Per > 0 && r.Per%time.Second == 0:
		d = strconv.FormatInt(int64(r.Per/time.Second), 10) + "s"
	default:
		d = r.Per.String()
	}
	return strconv.Itoa(r.Count) + "/" + d
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
