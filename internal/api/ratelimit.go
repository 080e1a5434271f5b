package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"

	"golang.org/x/time/rate"

	"github.com/fogdb/fog/internal/arm"
)

// principalLimits keeps a token bucket per principal.
type principalLimits struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	by    map[string]*rate.Limiter
}

// WithRateLimit limits each principal to perSecond requests a second on average, with bursts
// of burst; over it a request gets 429 TooManyRequests with Retry-After, as ARM throttles.
// perSecond <= 0 sets no limit.
func (s *Server) WithRateLimit(perSecond float64, burst int) *Server {
	if perSecond <= 0 {
		s.limits = nil
		return s
	}
	s.limits = &principalLimits{rate: rate.Limit(perSecond), burst: max(burst, 1), by: map[string]*rate.Limiter{}}
	return s
}

// allow takes one request of principal from its bucket, or returns how long to wait.
func (p *principalLimits) allow(principal string) (bool, float64) {
	p.mu.Lock()
	l := p.by[principal]
	if l == nil {
		l = rate.NewLimiter(p.rate, p.burst)
		p.by[principal] = l
	}
	p.mu.Unlock()
	r := l.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d.Seconds()
	}
	return true, 0
}

// throttle answers 429 when the principal is over its rate.
func (s *Server) throttle(w http.ResponseWriter, principal string) bool {
	if s.limits == nil {
		return false
	}
	ok, wait := s.limits.allow(principal)
	if ok {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait))))
	arm.WriteError(w, arm.Errorf(http.StatusTooManyRequests, "TooManyRequests",
		"Number of requests for principal '%s' exceeded the limit of %g per second (bursts of %d). Retry after %d seconds.",
		principal, float64(s.limits.rate), s.limits.burst, int(math.Ceil(wait))))
	return true
}
