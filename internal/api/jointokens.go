package api

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/controller"
)

// JoinTokenPath creates a one-time token with which a `fog agent` joins (Fog's own endpoint,
// outside the ARM namespace; the admin token is required as for every other call).
const JoinTokenPath = "/fog/v1/joinTokens"

// JoinTokenFunc makes a join token for region, valid for ttl.
type JoinTokenFunc func(ctx context.Context, region string, ttl time.Duration) (string, time.Time, error)

// MaxJoinTokenTTL bounds how long a join token stays valid.
const MaxJoinTokenTTL = 24 * time.Hour

func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request) {
	if s.joinTokens == nil {
		arm.WriteError(w, arm.Errorf(http.StatusNotFound, "NotFound", "This server does not admit agents."))
		return
	}
	var body struct {
		Region    string `json:"region"`
		ExpiresIn string `json:"expiresIn"`
	}
	if aerr := decode(r, &body); aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	regions := s.c.Regions()
	if !slices.Contains(regions, body.Region) {
		arm.WriteError(w, arm.BadRequest("InvalidRegion", "'region' must be one of this deployment's regions %v, not %q.", regions, body.Region))
		return
	}
	ttl := time.Hour
	if body.ExpiresIn != "" {
		d, err := time.ParseDuration(body.ExpiresIn)
		if err != nil || d < time.Minute || d > MaxJoinTokenTTL {
			arm.WriteError(w, arm.BadRequest("InvalidExpiresIn", "'expiresIn' must be a duration from 1m to 24h, such as 30m; got %q.", body.ExpiresIn))
			return
		}
		ttl = d
	}
	tok, exp, err := s.joinTokens(r.Context(), body.Region, ttl)
	if err != nil {
		s.writeError(w, r, controller.StoreError(err))
		return
	}
	s.log.Info("join token created", "region", body.Region, "expires", exp)
	arm.WriteJSON(w, http.StatusCreated, map[string]any{"token": tok, "region": body.Region, "expires": exp})
}
