package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/store"
)

// spec is the shape of instance.Spec's stored JSON that matters here (the store cannot import
// instance).
type spec struct {
	UID           string `json:"uid"`
	Name          string `json:"name"`
	Region        string `json:"region"`
	Host          string `json:"host"`
	Port          int    `json:"port"`
	AdminLogin    string `json:"adminLogin"`
	AdminVerifier string `json:"adminVerifier"`
}

func openBolt(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestAgentScopeDesiredState: the agent of westus reads its own region's desired state
// whole; of eastus's it lists nothing, compares on nothing, and a Get answers only where the
// instance listens, never its admin's verifier; keys outside the scope are refused.
func TestAgentScopeDesiredState(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t)
	verifier := "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
	west := spec{UID: "w1", Name: "west1", Region: "westus", Host: "127.0.31.1", Port: 5432, AdminLogin: "wadmin", AdminVerifier: verifier}
	east := spec{UID: "e1", Name: "east1", Region: "eastus", Host: "127.0.30.1", Port: 5432, AdminLogin: "eadmin", AdminVerifier: verifier}
	for key, v := range map[string]any{
		"desired/westus/w1": west, "desired/eastus/e1": east, "desired/eastus/odd": "not an object",
		"mi/sub/rg/east1": map[string]string{"passwordVerifier": verifier}, "tokens/abc": map[string]string{"name": "admin"},
		"ca/root": map[string]string{"key": "k"}, "agentcerts/01": map[string]string{"region": "westus"},
	} {
		if err := store.Put(ctx, st, key, v); err != nil {
			t.Fatal(err)
		}
	}
	w := store.Scoped(st, store.AgentScope("westus"))

	var got spec
	if _, err := store.Get(ctx, w, "desired/westus/w1", &got); err != nil || got != west {
		t.Errorf("Get(own desired state) = %+v, %v; want it whole", got, err)
	}
	if l, err := store.List[spec](ctx, w, "desired/westus/"); err != nil || len(l) != 1 || l[0] != west {
		t.Errorf("List(own desired state) = %+v, %v; want it whole", l, err)
	}

	kv, err := w.Get(ctx, "desired/eastus/e1")
	if err != nil {
		t.Fatalf("Get(desired/eastus/e1): %v; want the address projection", err)
	}
	var fields map[string]any
	if err := json.Unmarshal(kv.Value, &fields); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"uid": "e1", "region": "eastus", "host": "127.0.30.1", "port": float64(5432)}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("Get(desired/eastus/e1) = %s, want only %v", kv.Value, want)
	}
	if strings.Contains(string(kv.Value), "SCRAM") || strings.Contains(string(kv.Value), "eadmin") {
		t.Errorf("Get(desired/eastus/e1) = %s: carries the admin's login or verifier", kv.Value)
	}
	if kv.Rev == 0 {
		t.Error("the projection lost the key's revision")
	}

	refused := []struct {
		what string
		err  error
	}{
		{"List(desired/eastus/)", func() error { _, err := w.List(ctx, "desired/eastus/"); return err }()},
		{"List(desired/)", func() error { _, err := w.List(ctx, "desired/"); return err }()},
		{"List(desired/westus)", func() error { _, err := w.List(ctx, "desired/westus"); return err }()},
		{"Snapshot(desired/)", func() error { _, _, err := w.Snapshot(ctx, "desired/"); return err }()},
		{"Snapshot(desired/westus/, desired/eastus/)", func() error { _, _, err := w.Snapshot(ctx, "desired/westus/", "desired/eastus/"); return err }()},
		{"Get(desired/eastus/odd)", func() error { _, err := w.Get(ctx, "desired/eastus/odd"); return err }()},
		{"Get(desired/)", func() error { _, err := w.Get(ctx, "desired/"); return err }()},
		{"Txn(cond desired/eastus/e1)", w.Txn(ctx, []store.Cond{{Key: "desired/eastus/e1", Rev: kv.Rev}}, []store.Op{store.PutOp("leases/westus", "x")})},
		{"Txn(put desired/eastus/e1)", w.Txn(ctx, nil, []store.Op{store.PutOp("desired/eastus/e1", east)})},
		{"Get(mi/sub/rg/east1)", func() error { _, err := w.Get(ctx, "mi/sub/rg/east1"); return err }()},
		{"Get(tokens/abc)", func() error { _, err := w.Get(ctx, "tokens/abc"); return err }()},
		{"Get(ca/root)", func() error { _, err := w.Get(ctx, "ca/root"); return err }()},
		{"Get(agentcerts/01)", func() error { _, err := w.Get(ctx, "agentcerts/01"); return err }()},
		{"Get(commands/eastus/1)", func() error { _, err := w.Get(ctx, "commands/eastus/1"); return err }()},
	}
	for _, r := range refused {
		if !errors.Is(r.err, store.ErrForbidden) {
			t.Errorf("%s = %v, want ErrForbidden", r.what, r.err)
		}
	}
	// The projection never reveals a key's absence differently from the store.
	if _, err := w.Get(ctx, "desired/eastus/none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(desired/eastus/none) = %v, want ErrNotFound", err)
	}
}

// TestAgentScopeWatch: watches deliver keys, not values, so an agent may watch every
// region's desired state (its gateway follows a partner instance moving), but nothing outside
// its scope.
func TestAgentScopeWatch(t *testing.T) {
	sc := store.AgentScope("westus")
	for _, p := range []string{"desired/", "desired/eastus/", "desired/westus/", "observed/", "fog/", "leases/"} {
		if err := sc.CheckWatch(p); err != nil {
			t.Errorf("CheckWatch(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "d", "desired", "mi/", "tokens/", "agentcerts/", "commands/eastus/"} {
		if err := sc.CheckWatch(p); !errors.Is(err, store.ErrForbidden) {
			t.Errorf("CheckWatch(%q) = %v, want ErrForbidden", p, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openBolt(t)
	w := store.Scoped(st, sc)
	if _, ok := <-w.Watch(ctx, "mi/"); ok {
		t.Error("Watch(mi/) delivered an event; want the channel closed")
	}
	ch := w.Watch(ctx, "desired/")
	time.Sleep(50 * time.Millisecond)
	if err := store.Put(ctx, st, "desired/eastus/e1", spec{UID: "e1", AdminVerifier: "v"}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if ev.Key != "desired/eastus/e1" {
			t.Errorf("Watch(desired/) event %+v, want desired/eastus/e1", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch(desired/) delivered nothing")
	}
}
