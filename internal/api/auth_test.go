package api

import (
	"context"
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
