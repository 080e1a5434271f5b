package api

import (
	"net/http"
	"regexp"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/controller"
)

// TokensPath is Fog's own endpoint for API tokens (outside the ARM namespace).
const TokensPath = "/fog/v1/tokens"

// MaxTokenTTL bounds how long a token made through the API stays valid.
const MaxTokenTTL = 366 * 24 * time.Hour

var principalRe = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

func (s *Server) tokenRoutes(rt *arm.Router) {
	rt.Handle("POST", TokensPath, s.createToken)
	rt.Handle("GET", TokensPath, s.listTokens)
	rt.Handle("DELETE", TokensPath+"/{id}", s.revokeToken)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name      string `json:"name"`
		ExpiresIn string `json:"expiresIn"`
		TenantID  string `json:"tenantId"`
	}
	if aerr := decode(r, &body); aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	if !principalRe.MatchString(body.Name) {
		arm.WriteError(w, arm.BadRequest("InvalidPrincipalName", "'name' names the principal the token is for: 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter; got %q.", body.Name))
		return
	}
	ttl := 30 * 24 * time.Hour
	if body.ExpiresIn != "" {
		d, err := time.ParseDuration(body.ExpiresIn)
		if err != nil || d < time.Minute || d > MaxTokenTTL {
			arm.WriteError(w, arm.BadRequest("InvalidExpiresIn", "'expiresIn' must be a duration from 1m to 8784h (366 days), such as 720h; got %q.", body.ExpiresIn))
			return
		}
		ttl = d
	}
	if body.TenantID != "" && !uuidRe.MatchString(body.TenantID) {
		arm.WriteError(w, arm.BadRequest("InvalidTenantId", "'tenantId' is the tenant the principal belongs to, a GUID (omit it for the deployment's own tenant); got %q.", body.TenantID))
		return
	}
	tok, info, err := s.tokens.CreateFor(r.Context(), body.Name, ttl, body.TenantID)
	if err != nil {
		s.writeError(w, r, controller.StoreError(err))
		return
	}
	s.log.Info("token created", "principal", info.Name, "id", info.ID, "expires", info.Expires)
	arm.WriteJSON(w, http.StatusCreated, map[string]any{"token": tok, "id": info.ID, "name": info.Name, "tenantId": info.TenantID, "created": info.Created, "expires": info.Expires})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	infos, err := s.tokens.List(r.Context())
	if err != nil {
		s.writeError(w, r, controller.StoreError(err))
		return
	}
	arm.WriteJSON(w, http.StatusOK, map[string]any{"value": infos})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	ok, err := s.tokens.Revoke(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, controller.StoreError(err))
		return
	}
	if !ok {
		arm.WriteError(w, arm.Errorf(http.StatusNotFound, "TokenNotFound", "No token has the id '%s'; `fog token list` shows the ids (at least 8 characters of one).", r.PathValue("id")))
		return
	}
	s.log.Info("token revoked", "id", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}
