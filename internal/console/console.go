// Package console is Fog's web console: the portal half of the failover-group how-to. It is
// served by the API server, on the same origin and TLS, from server-rendered templates with
// htmx (embedded; nothing is loaded from elsewhere). Every page reads and changes Fog only
// through the ARM API the CLI calls, with the signed-in token: the console holds no
// privilege of its own, and RBAC, validation and error codes are the API's.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/fogclient"
)

//go:embed static templates
var files embed.FS

// Config is what the console needs from the server it runs in.
type Config struct {
	// API is the ARM API's handler: the console's requests go through it as a client's do,
	// authentication and role checks included.
	API http.Handler
	// Regions are the deployment's regions (the location picker).
	Regions []string
	// Subscription is the subscription a sign-in uses unless another is given.
	Subscription string
	Log          *slog.Logger
	// SessionTTL is how long a session lasts without use (default 12 hours).
	SessionTTL time.Duration
	// Principal names a token's principal for the page header (nil: its prefix is shown).
	Principal func(ctx context.Context, token string) string
}

// CookieName is the session cookie: HttpOnly, Secure, SameSite=Strict.
const CookieName = "fog_session"

type session struct {
	token, sub, csrf string
	principal        string
	used             time.Time
}

// Console serves the pages.
type Console struct {
	cfg  Config
	tmpl map[string]*template.Template
	mux  *http.ServeMux
	mu   sync.Mutex
	// sessions are in memory: a restarted server asks to sign in again.
	sessions map[string]*session
}

// New returns the console.
func New(cfg Config) *Console {
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Console{cfg: cfg, sessions: map[string]*session{}, tmpl: parseTemplates()}
	c.routes()
	return c
}

func parseTemplates() map[string]*template.Template {
	funcs := template.FuncMap{
		"pathEscape": url.PathEscape,
		"deref": func(p any) any {
			switch v := p.(type) {
			case *string:
				if v == nil {
					return ""
				}
				return *v
			case *int:
				if v == nil {
					return ""
				}
				return *v
			case *int64:
				if v == nil {
					return ""
				}
				return *v
			case *float64:
				if v == nil {
					return ""
				}
				return fmt.Sprintf("%.1f", *v)
			case *time.Time:
				if v == nil {
					return ""
				}
				return v.UTC().Format("2006-01-02 15:04:05 UTC")
			}
			return p
		},
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		// whenText is when for a date the API gives as a string (a recoverable database's
		// lastAvailableBackupDate, as Azure types it): the same display, or the text as
		// given when it is no RFC 3339 time.
		"whenText": func(s string) string {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return s
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"lower": strings.ToLower,
		"bytes": func(p any) string {
			switch v := p.(type) {
			case *int64:
				if v == nil {
					return ""
				}
				return bytesText(*v)
			case int64:
				return bytesText(v)
			}
			return ""
		},
		// seconds is a duration in whole seconds (*int64 seconds, or a time.Duration).
		"seconds": func(p any) string {
			switch v := p.(type) {
			case *int64:
				if v == nil {
					return ""
				}
				return (time.Duration(*v) * time.Second).String()
			case time.Duration:
				return v.Round(time.Second).String()
			}
			return ""
		},
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html"))
	out := map[string]*template.Template{}
	pages, _ := fs.Glob(files, "templates/*.html")
	for _, p := range pages {
		name := strings.TrimPrefix(p, "templates/")
		if name == "layout.html" {
			continue
		}
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(files, p))
	}
	return out
}

// ServeHTTP serves the console, with the security headers of every page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionOf returns the request's live session.
func (c *Console) sessionOf(r *http.Request) *session {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if time.Since(s.used) > c.cfg.SessionTTL {
		delete(c.sessions, ck.Value)
		return nil
	}
	s.used = time.Now()
	return s
}

// sameOrigin: a state-changing request must come from a page of this origin. Browsers send
// Origin on every cross-site POST (and Sec-Fetch-Site); either names another site here.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	return true
}

// authed wraps a page that needs a session: without one, to the sign-in page. A POST also
// needs the session's CSRF token (a form field, or the X-CSRF-Token header htmx sends) and a
// same-origin request.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *apiClient)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessionOf(r)
		if s == nil {
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", "/console/signin")
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			if r.Method != http.MethodGet {
				http.Error(w, "Sign in first.", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/console/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) != 1 {
				c.cfg.Log.Warn("console: refused a state-changing request without this session's CSRF token or from another origin", "path", r.URL.Path, "origin", r.Header.Get("Origin"))
				http.Error(w, "Refused: the request did not come from a Fog console page (CSRF token missing or wrong). Reload the page and try again.", http.StatusForbidden)
				return
			}
		}
		h(w, r, c.newAPIClient(r, s))
	}
}

// apiClient calls the ARM API in process, as the signed-in principal.
type apiClient struct {
	c   *fogclient.Client
	s   *session
	ctx context.Context
}

// newAPIClient is the API client of a session: the API's handler called in process, with the
// session's token and the browser's address.
func (c *Console) newAPIClient(r *http.Request, s *session) *apiClient {
	fc, err := fogclient.New(fogclient.Config{APIURL: "https://fog.invalid", Token: s.token, Subscription: s.sub},
		fogclient.WithHandler(c.cfg.API, r.RemoteAddr), fogclient.WithUserAgent("fog-console"))
	if err != nil {
		panic(err) // New fails only for a config without apiUrl
	}
	return &apiClient{c: fc, s: s, ctx: r.Context()}
}

// apiError is an ARM error answer.
type apiError = fogclient.Error

// errorText is an error as the console's fragments show it: code, then message.
func errorText(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code + ": " + ae.Message
	}
	return err.Error()
}

// pathOf keeps the path and query of an API URL (operation URLs are absolute).
func pathOf(u string) string {
	if p, err := url.Parse(u); err == nil && p.IsAbs() {
		return p.RequestURI()
	}
	return u
}

// call sends one request to the API; a non-2xx answer is an *apiError.
func (a *apiClient) call(method, path string, body any, out any) (http.Header, error) {
	resp, err := a.c.Do(a.ctx, method, pathOf(path), body, out)
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == "" {
		ae.Code = http.StatusText(ae.Status)
	}
	if resp == nil {
		return nil, err
	}
	return resp.Header, err
}
