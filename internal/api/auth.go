package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/store"
)

// Tokens keeps API bearer tokens, each issued to a named principal. Only a SHA-256 of each
// token is stored: a token is a 256-bit random secret, so a plain hash is enough, and reading
// the store does not reveal it. A token may expire; revoking deletes its record.
type Tokens struct {
	st  store.Store
	now func() time.Time
}

// NewTokens returns the token set kept in st.
func NewTokens(st store.Store) *Tokens { return &Tokens{st: st, now: time.Now} }

// TokenInfo is what is kept of a token: never the token itself.
type TokenInfo struct {
	// ID names the token for listing and revoking: the start of its hash.
	ID   string `json:"id"`
	Name string `json:"name"`
	// TenantID is the tenant the principal belongs to ("" is the deployment's own).
	TenantID string     `json:"tenantId,omitempty"`
	Created  time.Time  `json:"created"`
	Expires  *time.Time `json:"expires,omitempty"`
}

const tokenPrefix = "tokens/"

func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func tokenKey(token string) string { return tokenPrefix + tokenHash(token) }

// Create makes a new token for the principal name, valid for ttl (0: until revoked), and
// returns it. It is shown once and never stored.
func (t *Tokens) Create(ctx context.Context, name string) (string, error) {
	tok, _, err := t.CreateFor(ctx, name, 0)
	return tok, err
}

// CreateFor is Create with an expiry and a tenant ("" for the deployment's own).
func (t *Tokens) CreateFor(ctx context.Context, name string, ttl time.Duration, tenant ...string) (string, TokenInfo, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", TokenInfo{}, err
	}
	tok := "fog_" + base64.RawURLEncoding.EncodeToString(b)
	info := TokenInfo{ID: tokenHash(tok)[:16], Name: name, Created: t.now().UTC()}
	if len(tenant) > 0 {
		info.TenantID = strings.ToLower(tenant[0])
	}
	if ttl > 0 {
		exp := info.Created.Add(ttl)
		info.Expires = &exp
	}
	return tok, info, store.Put(ctx, t.st, tokenKey(tok), info)
}

// List returns every token's record, oldest first.
func (t *Tokens) List(ctx context.Context) ([]TokenInfo, error) {
	kvs, err := t.st.List(ctx, tokenPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]TokenInfo, 0, len(kvs))
	for _, kv := range kvs {
		var info TokenInfo
		if err := json.Unmarshal(kv.Value, &info); err != nil {
			continue
		}
		if info.ID == "" { // a token made before tokens had ids
			info.ID = strings.TrimPrefix(kv.Key, tokenPrefix)[:16]
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Revoke deletes the token with id; false when there is none.
func (t *Tokens) Revoke(ctx context.Context, id string) (bool, error) {
	kvs, err := t.st.List(ctx, tokenPrefix)
	if err != nil {
		return false, err
	}
	for _, kv := range kvs {
		if len(id) >= 8 && strings.HasPrefix(strings.TrimPrefix(kv.Key, tokenPrefix), id) {
			return true, t.st.Txn(ctx, []store.Cond{{Key: kv.Key, Rev: kv.Rev}}, []store.Op{{Key: kv.Key, Delete: true}})
		}
	}
	return false, nil
}

// Info returns what is kept of a token (its principal is its identity in the activity log);
// ok is false for an unknown, revoked or expired token, and err is set when the store could
// not tell.
func (t *Tokens) Info(ctx context.Context, token string) (info TokenInfo, ok bool, err error) {
	if token == "" {
		return info, false, nil
	}
	_, err = store.Get(ctx, t.st, tokenKey(token), &info)
	if errors.Is(err, store.ErrNotFound) {
		return info, false, nil
	}
	if err == nil && info.Expires != nil && !t.now().Before(*info.Expires) {
		return info, false, nil
	}
	return info, err == nil, err
}

// Valid reports whether token is a known token; err is set when the store could not tell.
func (t *Tokens) Valid(ctx context.Context, token string) (bool, error) {
	_, ok, err := t.Info(ctx, token)
	return ok, err
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
		var info TokenInfo
		if err == nil {
			info, valid, verr = s.tokens.Info(r.Context(), tok)
		}
		switch {
		case errors.Is(err, errNoToken):
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "AuthenticationFailed",
				"Authentication failed. The 'Authorization' header is missing. Send 'Authorization: Bearer <token>' with the token from your client config (fog up prints where it is)."))
		case err != nil:
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "InvalidAuthenticationToken",
				"The 'Authorization' header is malformed: it must be 'Bearer <token>'."))
		case errors.Is(verr, store.ErrUnavailable):
			s.writeError(w, r, controller.StoreUnavailable())
		case verr != nil:
			// The error names the store key (a hash of the token), never the token.
			s.writeError(w, r, fault.Failure("InternalServerError", "Fog could not check the access token", verr))
		case !valid:
			arm.WriteError(w, arm.Errorf(http.StatusUnauthorized, "InvalidAuthenticationToken",
				"The access token is invalid. Use the token from your client config."))
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
