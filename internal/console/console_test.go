package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI answers like the ARM API for one good token and records what it was asked.
type fakeAPI struct {
	mu   sync.Mutex
	seen []string
	// bodies are the bodies of the PUTs, by path.
	bodies map[string]string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
	if r.Method == "PUT" {
		if f.bodies == nil {
			f.bodies = map[string]string{}
		}
		f.bodies[r.URL.Path] = string(body)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer good-token" {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"InvalidAuthenticationToken","message":"The access token is invalid."}}`)
		return
	}
	if backupAPI(w, r, string(body)) {
		return
	}
	switch {
	case r.Method == "DELETE":
		w.Header().Set("Azure-AsyncOperation", "https://api.example/subscriptions/s/providers/Microsoft.Sql/locations/eastus/managedInstanceAzureAsyncOperation/op1?api-version=2023-08-01")
		w.WriteHeader(http.StatusAccepted)
	case strings.HasSuffix(r.URL.Path, "/databases"), strings.HasSuffix(r.URL.Path, "managedInstances"), strings.HasSuffix(r.URL.Path, "instanceFailoverGroups"):
		io.WriteString(w, `{"value":[]}`)
	default:
		io.WriteString(w, `{"name":"mi1","location":"eastus","properties":{"state":"Ready"}}`)
	}
}

func (f *fakeAPI) asked(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.seen {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func newTestConsole(t *testing.T, ttl time.Duration) (*httptest.Server, *fakeAPI) {
	api := &fakeAPI{}
	c := New(Config{API: api, Regions: []string{"eastus", "westus"}, Subscription: "00000000-0000-0000-0000-000000000000", SessionTTL: ttl})
	srv := httptest.NewTLSServer(c)
	t.Cleanup(srv.Close)
	return srv, api
}

func noRedirect(srv *httptest.Server) *http.Client {
	hc := srv.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return hc
}

func postForm(t *testing.T, hc *http.Client, u string, form url.Values, cookie *http.Cookie, origin string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func signIn(t *testing.T, srv *httptest.Server, hc *http.Client) (*http.Cookie, string) {
	t.Helper()
	resp := postForm(t, hc, srv.URL+"/console/signin", url.Values{"token": {"good-token"}, "next": {"/console/groups"}}, nil, srv.URL)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/groups" {
		t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" {
		t.Fatalf("session cookie %+v", ck)
	}
	// The CSRF token is on every page with a form.
	req, _ := http.NewRequest("GET", srv.URL+"/console/instances/rg1/mi1", nil)
	req.AddCookie(ck)
	page, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(page.Body)
	page.Body.Close()
	_, rest, ok := strings.Cut(string(b), `name="csrf" value="`)
	if !ok {
		t.Fatalf("no CSRF field on the instance page:\n%s", b)
	}
	csrf, _, _ := strings.Cut(rest, `"`)
	return ck, csrf
}

func TestSignInAndSessions(t *testing.T) {
	srv, api := newTestConsole(t, time.Hour)
	hc := noRedirect(srv)

	resp, err := hc.Get(srv.URL + "/console/instances")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/signin?next=%2Fconsole%2Finstances" {
		t.Errorf("without a session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("security headers: CSP %q", csp)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/console/groups/rg/eastus/fg/live", nil)
	req.Header.Set("HX-Request", "true")
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("HX-Redirect") != "/console/signin" {
		t.Errorf("an htmx poll without a session: %v %v", resp, err)
	}

	if resp := postForm(t, hc, srv.URL+"/console/signin", url.Values{"token": {"wrong"}}, nil, srv.URL); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	if resp := postForm(t, hc, srv.URL+"/console/signin", url.Values{"token": {"good-token"}}, nil, "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in posted from another site: %d", resp.StatusCode)
	}
	// next stays inside the console.
	for _, next := range []string{"//evil.example/x", "https://evil.example", "/console/\\evil"} {
		resp := postForm(t, hc, srv.URL+"/console/signin", url.Values{"token": {"good-token"}, "next": {next}}, nil, "")
		if loc := resp.Header.Get("Location"); loc != "/console/instances" {
			t.Errorf("next=%q redirected to %q", next, loc)
		}
	}
	signIn(t, srv, hc)
	if !api.asked("GET /subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Sql/managedInstances Bearer good-token") {
		t.Error("sign-in did not check the token against the API")
	}

	// Sign out ends the session.
	ck2, csrf := signIn(t, srv, hc)
	postForm(t, hc, srv.URL+"/console/signout", url.Values{"csrf": {csrf}}, ck2, srv.URL)
	req, _ = http.NewRequest("GET", srv.URL+"/console/instances", nil)
	req.AddCookie(ck2)
	if resp, _ := hc.Do(req); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out: %d", resp.StatusCode)
	}
}

func TestSessionExpires(t *testing.T) {
	srv, _ := newTestConsole(t, 50*time.Millisecond)
	hc := noRedirect(srv)
	ck, _ := signIn(t, srv, hc)
	time.Sleep(100 * time.Millisecond)
	req, _ := http.NewRequest("GET", srv.URL+"/console/instances", nil)
	req.AddCookie(ck)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("an idle session past its TTL: %d", resp.StatusCode)
	}
}

// TestChangesNeedCSRF: a change without the session's CSRF token, or from another origin,
// never reaches the API; with both, it goes there with the session's token.
func TestChangesNeedCSRF(t *testing.T) {
	srv, api := newTestConsole(t, time.Hour)
	hc := noRedirect(srv)
	ck, csrf := signIn(t, srv, hc)
	del := srv.URL + "/console/instances/rg1/mi1/delete"
	for _, c := range []struct {
		form   url.Values
		origin string
		want   int
	}{
		{url.Values{"confirm": {"mi1"}}, "", http.StatusForbidden},
		{url.Values{"confirm": {"mi1"}, "csrf": {"not-the-token"}}, srv.URL, http.StatusForbidden},
		{url.Values{"confirm": {"mi1"}, "csrf": {csrf}}, "https://evil.example", http.StatusForbidden},
		{url.Values{"confirm": {"mi2"}, "csrf": {csrf}}, srv.URL, http.StatusBadRequest}, // the typed name is wrong
	} {
		if resp := postForm(t, hc, del, c.form, ck, c.origin); resp.StatusCode != c.want {
			t.Errorf("POST %v from %q: %d, want %d", c.form, c.origin, resp.StatusCode, c.want)
		}
	}
	if api.asked("DELETE") {
		t.Fatal("a refused request reached the API")
	}
	resp := postForm(t, hc, del, url.Values{"confirm": {"mi1"}, "csrf": {csrf}}, ck, srv.URL)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/operation?") {
		t.Errorf("delete: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !api.asked("DELETE /subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.Sql/managedInstances/mi1 Bearer good-token") {
		t.Errorf("the delete did not reach the API as the signed-in token: %v", api.seen)
	}
}
