package api

import (
	"errors"
	"net/http"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/store"
)

// authenticate admits requests with a valid API bearer token (authz.Tokens.Authenticate, as
// the agents' admin endpoints check theirs), within the principal's rate and, with access
// control on, its roles; it answers a refusal in ARM's words.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, err := s.tokens.Authenticate(r)
		switch {
		case errors.Is(err, authz.ErrNoToken):
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "AuthenticationFailed",
				"Authentication failed. The 'Authorization' header is missing. Send 'Authorization: Bearer <token>' with the token from your client config (fog up prints where it is)."))
		case errors.Is(err, authz.ErrMalformedToken):
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "InvalidAuthenticationToken",
				"The 'Authorization' header is malformed: it must be 'Bearer <token>'."))
		case errors.Is(err, authz.ErrInvalidToken):
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "InvalidAuthenticationToken",
				"The access token is invalid. Use the token from your client config."))
		case errors.Is(err, store.ErrUnavailable):
			s.writeError(w, r, controller.StoreUnavailable())
		case err != nil:
			// The error names the store key (a hash of the token), never the token.
			s.writeError(w, r, fault.Failure("InternalServerError", "Fog could not check the access token", err))
		case s.throttle(w, info.Name):
		default:
			ctx := controller.WithCaller(r.Context(), info.Name)
			if s.authz != nil {
				if aerr := s.authorize(ctx, r, info); aerr != nil {
					arm.WriteError(w, aerr)
					return
				}
				ctx = withPrincipal(ctx, info)
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		}
	})
}
