package agentapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/fogdb/fog/internal/instance"
)

// ConnectConfig is what an agent needs to reach the servers: where its credentials are kept
// and, when it has none yet or its certificate was revoked, a join token.
type ConnectConfig struct {
	// Servers are the servers' HTTPS URLs.
	Servers []string
	// Region is the region the agent serves; saved credentials must be of it.
	Region string
	// Dir keeps the agent's key, certificate and CA (LoadCredentials).
	Dir string
	// JoinToken is a one-time join token, "" when none was given. It is used only when the
	// agent has not joined yet, or the servers answer that its certificate was revoked.
	JoinToken string
	// Log gets "joined" and the client's messages (with component=agentapi).
	Log *slog.Logger
}

// TokenNeededError means the agent cannot reach the servers without a join token, and none
// was given: it has not joined yet, or (Revoked set) its certificate was revoked.
type TokenNeededError struct {
	Region string
	// Revoked is the servers' refusal of the saved certificate (an ErrRevoked); nil when
	// the agent has not joined yet.
	Revoked error
}

func (e *TokenNeededError) Error() string {
	if e.Revoked != nil {
		return fmt.Sprintf("agentapi: the certificate of this agent of region %s was revoked and no join token was given to join again: %v", e.Region, e.Revoked)
	}
	return fmt.Sprintf("agentapi: this agent of region %s has not joined yet and no join token was given", e.Region)
}

func (e *TokenNeededError) Unwrap() error { return e.Revoked }

// WrongRegionError means the saved credentials are of another region than the agent was
// asked to serve.
type WrongRegionError struct {
	// Region is the region of the saved credentials; Want the one asked for.
	Region, Want, Dir string
}

func (e *WrongRegionError) Error() string {
	return fmt.Sprintf("agentapi: the credentials in %s are of an agent of region %s, not %s", e.Dir, e.Region, e.Want)
}

// Connect returns the agent's client. It uses the credentials saved in cfg.Dir, or joins
// with cfg.JoinToken when there are none. When the servers answer that the saved certificate
// was revoked, a join token given this time joins the agent again (new key and certificate,
// same directory, so the same instances); without one it returns a *TokenNeededError rather
// than run cut off. Servers that do not answer yet are no error: the client waits for them.
func Connect(ctx context.Context, cfg ConnectConfig) (*Client, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	creds, err := LoadCredentials(cfg.Dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if cfg.JoinToken == "" {
			return nil, &TokenNeededError{Region: cfg.Region}
		}
		if creds, err = Join(ctx, cfg.Servers, cfg.JoinToken, cfg.Region, cfg.Dir); err != nil {
			return nil, err
		}
		log.Info("joined", "region", cfg.Region)
	case err != nil:
		return nil, err
	case creds.Region != cfg.Region:
		return nil, &WrongRegionError{Region: creds.Region, Want: cfg.Region, Dir: cfg.Dir}
	}
	client, err := NewClient(cfg.Servers, creds, log.With("component", "agentapi"))
	if err != nil {
		return nil, err
	}
	_, err = client.Get(ctx, instance.ClusterKey)
	if !errors.Is(err, ErrRevoked) {
		return client, nil // the servers may be unreachable yet: the agent waits for them
	}
	client.Close()
	if cfg.JoinToken == "" {
		return nil, &TokenNeededError{Region: creds.Region, Revoked: err}
	}
	log.Warn("this agent's certificate was revoked; joining again with the token given", "err", err)
	if creds, err = Join(ctx, cfg.Servers, cfg.JoinToken, creds.Region, creds.Dir); err != nil {
		return nil, err
	}
	return NewClient(cfg.Servers, creds, log.With("component", "agentapi"))
}

// CACertPEM is the CA the client verifies the servers with, as saved at the join.
func (c *Client) CACertPEM() []byte { return c.creds.CAPEM }
