package agentapi_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// TestConnect: an agent that has not joined needs a token, joins with one and saves its
// credentials; started again it uses them (a token given again is not spent); a data
// directory of another region is refused; a revoked agent needs a token again, and joins
// again with one in the same directory.
func TestConnect(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "agent")
	cfg := agentapi.ConnectConfig{Servers: []string{e.srv[0].URL}, Region: "westus", Dir: dir, Log: quiet}
	connect := func(cfg agentapi.ConnectConfig) (*agentapi.Client, error) {
		c, err := agentapi.Connect(ctx, cfg)
		if err == nil {
			c.HeartbeatTimeout = 500 * time.Millisecond
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}

	var need *agentapi.TokenNeededError
	if _, err := connect(cfg); !errors.As(err, &need) || need.Revoked != nil || need.Region != "westus" {
		t.Fatalf("Connect without credentials or token = %v, want a TokenNeededError of westus, not revoked", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Connect without a token made %s: %v", dir, err)
	}

	cfg.JoinToken = e.token(t, "westus", time.Minute)
	joined, err := connect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serial := agentapi.SerialHex(joined.Certificate().SerialNumber)
	if _, err := joined.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the joined agent's request: %v, want ErrNotFound", err)
	}
	if saved, err := agentapi.LoadCredentials(dir); err != nil || saved.Region != "westus" || string(saved.CAPEM) != string(e.ca.CertPEM) {
		t.Fatalf("credentials saved by the join: %+v, %v", saved, err)
	}
	if string(joined.CACertPEM()) != string(e.ca.CertPEM) {
		t.Error("CACertPEM is not the servers' CA")
	}

	// Started again, with the token it used (spent already) or none: the saved credentials.
	for _, tok := range []string{cfg.JoinToken, ""} {
		again := cfg
		again.JoinToken = tok
		c, err := connect(again)
		if err != nil {
			t.Fatalf("Connect with saved credentials (token %q): %v", tok, err)
		}
		if got := agentapi.SerialHex(c.Certificate().SerialNumber); got != serial {
			t.Errorf("Connect with saved credentials uses certificate %s, want the saved %s", got, serial)
		}
	}

	// The servers not answering yet is no error: the agent waits for them.
	down := httptest.NewTLSServer(nil)
	down.Close()
	offline := cfg
	offline.Servers = []string{down.URL}
	if _, err := connect(offline); err != nil {
		t.Errorf("Connect with saved credentials, servers down: %v", err)
	}

	var wrong *agentapi.WrongRegionError
	other := cfg
	other.Region = "eastus"
	if _, err := connect(other); !errors.As(err, &wrong) || wrong.Region != "westus" || wrong.Want != "eastus" {
		t.Errorf("Connect as eastus with westus's credentials = %v, want a WrongRegionError", err)
	}

	if _, err := agentapi.Revoke(ctx, e.st, agentapi.Revocation{Serial: serial}, "alice"); err != nil {
		t.Fatal(err)
	}
	revoked := cfg
	revoked.JoinToken = ""
	if _, err := connect(revoked); !errors.As(err, &need) || !errors.Is(err, agentapi.ErrRevoked) {
		t.Fatalf("Connect revoked without a token = %v, want a TokenNeededError that is ErrRevoked", err)
	}
	revoked.JoinToken = e.token(t, "westus", time.Minute)
	rejoined, err := connect(revoked)
	if err != nil {
		t.Fatalf("Connect revoked with a new token: %v", err)
	}
	if agentapi.SerialHex(rejoined.Certificate().SerialNumber) == serial {
		t.Error("the agent joined again with the revoked certificate")
	}
	if _, err := rejoined.Get(ctx, instance.ClusterKey); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the agent joined again: %v, want ErrNotFound", err)
	}
	if saved, err := agentapi.LoadCredentials(dir); err != nil || string(saved.CertPEM) == "" {
		t.Errorf("credentials after joining again: %v", err)
	} else if c, err := connect(cfg); err != nil || agentapi.SerialHex(c.Certificate().SerialNumber) != agentapi.SerialHex(rejoined.Certificate().SerialNumber) {
		t.Errorf("the new certificate was not saved in the same directory: %v", err)
	}
}
