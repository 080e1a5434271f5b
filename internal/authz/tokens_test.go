package authz

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/store"
)

// Tokens expire on time, are revoked at once, and only their hashes are kept.
func TestTokens(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tk := &Tokens{st: st, now: func() time.Time { return now }}
	tok, info, err := tk.CreateFor(ctx, "ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if info, ok, _ := tk.Info(ctx, tok); !ok || info.Name != "ci" {
		t.Fatalf("fresh token: %q %v", info.Name, ok)
	}
	kvs, _ := st.List(ctx, tokenPrefix)
	for _, kv := range kvs {
		if strings.Contains(string(kv.Value), tok) || strings.Contains(kv.Key, tok) {
			t.Fatal("the store holds the token itself")
		}
	}
	now = now.Add(time.Hour)
	if _, ok, _ := tk.Info(ctx, tok); ok {
		t.Error("a token is valid at its expiry")
	}
	forever, _, _ := tk.CreateFor(ctx, "admin", 0)
	now = now.Add(10 * 365 * 24 * time.Hour)
	if _, ok, _ := tk.Info(ctx, forever); !ok {
		t.Error("a token without expiry expired")
	}
	list, _ := tk.List(ctx)
	if len(list) != 2 || list[0].ID != info.ID {
		t.Fatalf("list = %+v", list)
	}
	if ok, _ := tk.Revoke(ctx, list[1].ID[:8]); !ok {
		t.Fatal("revoke by an 8-character id prefix found nothing")
	}
	if _, ok, _ := tk.Info(ctx, forever); ok {
		t.Error("a revoked token is still valid")
	}
	if ok, _ := tk.Revoke(ctx, "abc"); ok {
		t.Error("a 3-character id revoked something")
	}
}

// TestAuthenticate: a request is authenticated by the bearer token it carries; a missing,
// malformed, unknown or expired one is ErrUnauthenticated, saying which way.
func TestAuthenticate(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tk := &Tokens{st: st, now: func() time.Time { return now }}
	tok, _, err := tk.CreateFor(ctx, "ops", time.Hour, "AAAAAAAA-1111-2222-3333-444444444444")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		header string
		want   error
	}{
		{"", ErrNoToken},
		{tok, ErrMalformedToken},
		{"Basic " + tok, ErrMalformedToken},
		{"Bearer ", ErrMalformedToken},
		{"Bearer fog_unknown", ErrInvalidToken},
		{"Bearer " + tok, nil},
		{"bearer  " + tok + " ", nil},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		info, err := tk.Authenticate(r)
		if !errors.Is(err, c.want) || (c.want != nil && !errors.Is(err, ErrUnauthenticated)) {
			t.Errorf("Authorization %q: %v, want %v", c.header, err, c.want)
		}
		if c.want == nil && (info.Name != "ops" || info.TenantID != "aaaaaaaa-1111-2222-3333-444444444444") {
			t.Errorf("Authorization %q: principal %+v, want ops of its tenant", c.header, info)
		}
	}
	now = now.Add(time.Hour)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if _, err := tk.Authenticate(r); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("an expired token: %v, want ErrInvalidToken", err)
	}
}
