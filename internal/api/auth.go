package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/store"
)

// Tokens keeps API bearer tokens. Only a SHA-256 of each token is stored: a token is a
// 256-bit random secret, so a plain hash is enough, and reading the store does not reveal it.
type Tokens struct {
	st store.Store
}

// NewTokens returns the token set kept in st.
func NewTokens(st store.Store) *Tokens { return &Tokens{st: st} }

type tokenRecord struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
}

func tokenKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return "tokens/" + hex.EncodeToString(h[:])
}

// Create makes a new token named name and returns it. It is shown once and never stored.
func (t *Tokens) Create(ctx context.Context, name string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "fog_" + base64.RawURLEncoding.EncodeToString(b)
	return tok, store.Put(ctx, t.st, tokenKey(tok), tokenRecord{Name: name, Created: time.Now().UTC()})
}

// Name returns the name a token was created with (its identity in the activity log); ok is
// false for an unknown token, and err is set when the store could not tell.
func (t *Tokens) Name(ctx context.Context, token string) (name string, ok bool, err error) {
	if token == "" {
		return "", false, nil
	}
	var rec tokenRecord
	_, err = store.Get(ctx, t.st, tokenKey(token), &rec)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, nil
	}
	return rec.Name, err == nil, err
}

// Valid reports whether token is a known token; err is set when the store could not tell.
func (t *Tokens) Valid(ctx context.Context, token string) (bool, error) {
	if token == "" {
		return false, nil
	}
	_, err := t.st.Get(ctx, tokenKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

var errNoToken = errors.New("no bearer token")

func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", errNoToken
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", errors.New("malformed")
	}
	return strings.TrimSpace(tok), nil
}

func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := bearer(r)
		var valid bool
		var verr error
		var name string
		if err == nil {
			name, valid, verr = s.tokens.Name(r.Context(), tok)
		}
		switch {
		case errors.Is(err, errNoToken):
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "AuthenticationFailed",
				"Authentication failed. The 'Authorization' header is missing. Send 'Authorization: Bearer <token>' with the token from your client config (fog up prints where it is)."))
		case err != nil:
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "InvalidAuthenticationToken",
				"The 'Authorization' header is malformed: it must be 'Bearer <token>'."))
		case errors.Is(verr, store.ErrUnavailable):
			arm.WriteError(w, controller.StoreUnavailable())
		case verr != nil:
			// The error names the store key (a hash of the token), never the token.
			s.log.Error("check the access token", "err", verr)
			arm.WriteError(w, arm.Errorf(http.StatusInternalServerError, "InternalServerError",
				"Fog could not check the access token. Retry; if it persists, check the fog log."))
		case !valid:
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "InvalidAuthenticationToken",
				"The access token is invalid. Use the token from your client config."))
		default:
			next.ServeHTTP(w, r.WithContext(controller.WithCaller(r.Context(), name)))
		}
	})
}
