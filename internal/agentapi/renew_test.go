package agentapi

import (
	"crypto/x509"
	"testing"
	"time"
)

// TestRenewalTiming: a certificate is renewed at two thirds of its life, at once when that
// has passed; after a failure the renewal is retried from a second on, doubling, at most a
// minute apart and at most an eighth of the time left apart, but never sooner than a second.
func TestRenewalTiming(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: start, NotAfter: start.Add(90 * 24 * time.Hour)}
	if at, want := RenewAt(leaf), start.Add(60*24*time.Hour); !at.Equal(want) {
		t.Fatalf("RenewAt = %s, want %s", at, want)
	}
	for _, c := range []struct {
		name    string
		now     time.Time
		backoff time.Duration
		want    time.Duration
	}{
		{"just issued", start, 0, 60 * 24 * time.Hour},
		{"a day before", start.Add(59 * 24 * time.Hour), 0, 24 * time.Hour},
		{"at RenewAt", start.Add(60 * 24 * time.Hour), 0, 0},
		{"past RenewAt", start.Add(80 * 24 * time.Hour), 0, 0},
		{"after a failure", start.Add(61 * 24 * time.Hour), 4 * time.Second, 4 * time.Second},
		{"after a failure, just issued", start, time.Second, time.Second},
	} {
		if got := renewalWait(leaf, c.backoff, c.now); got != c.want {
			t.Errorf("%s: renewalWait = %s, want %s", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		prev, left, want time.Duration
	}{
		{0, 30 * 24 * time.Hour, time.Second},
		{time.Second, 30 * 24 * time.Hour, 2 * time.Second},
		{16 * time.Second, 30 * 24 * time.Hour, 32 * time.Second},
		{32 * time.Second, 30 * 24 * time.Hour, time.Minute},
		{time.Minute, 30 * 24 * time.Hour, time.Minute},
		{time.Minute, 80 * time.Second, 10 * time.Second}, // an eighth of what is left
		{4 * time.Second, 4 * time.Second, time.Second},   // never under a second
		{4 * time.Second, -time.Hour, time.Second},        // expired: a join is needed, but keep to a second
	} {
		if got := retryBackoff(c.prev, c.left); got != c.want {
			t.Errorf("retryBackoff(%s, %s left) = %s, want %s", c.prev, c.left, got, c.want)
		}
	}
}
