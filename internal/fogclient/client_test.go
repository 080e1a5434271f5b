package fogclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/resource"
)

// serve starts an HTTPS server on loopback and returns a client of it that trusts its CA.
func serve(t *testing.T, h http.HandlerFunc, opts ...Option) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := New(Config{APIURL: srv.URL, CACert: string(ca), Token: "tok", Subscription: "sub1"}, append([]Option{WithPollInterval(time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, srv
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestRequestHeadersAndAPIVersion(t *testing.T) {
	var got []string
	c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization")+" "+r.URL.RequestURI())
		writeJSON(w, http.StatusOK, map[string]any{})
	})
	ctx := context.Background()
	for _, p := range []string{"/a", "/b?x=1", "/c?api-version=2022-04-01", c.BaseURL() + "/d"} {
		if _, err := c.Do(ctx, "GET", p, nil, nil); err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
	}
	// Authorization "" sends none.
	if _, err := c.Send(ctx, Request{Method: "GET", Path: "/e", Header: http.Header{"Authorization": {""}}}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Bearer tok /a?api-version=" + APIVersion,
		"Bearer tok /b?x=1&api-version=" + APIVersion,
		"Bearer tok /c?api-version=2022-04-01",
		"Bearer tok /d?api-version=" + APIVersion,
		" /e?api-version=" + APIVersion,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
}

// The token goes only to the configured API, whatever URL an answer points to.
func TestTokenStaysWithTheAPI(t *testing.T) {
	c, err := New(Config{APIURL: "https://127.0.0.1:7443", Token: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://attacker.example/subscriptions/x", "http://127.0.0.1:7443/x", "https://127.0.0.1:7444/x"} {
		_, err := c.Send(context.Background(), Request{Method: "GET", Path: u})
		if err == nil || !strings.Contains(err.Error(), "refusing to send the API token") {
			t.Errorf("GET %s: %v, want a refusal before any request", u, err)
		}
	}
}

// A certificate that is not signed by the config's CA is a transport error, x509's inside.
func TestVerifiesTheCA(t *testing.T) {
	_, srv := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	// httptest's servers all share one certificate: another CA is made here.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another Fog CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	c, err := New(Config{APIURL: srv.URL, CACert: string(ca), Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(context.Background(), "GET", "/x", nil, nil)
	var te *TransportError
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &te) || !errors.As(err, &unknown) {
		t.Errorf("GET with another CA = %v, want a *TransportError for the certificate", err)
	}
	if _, err := New(Config{APIURL: srv.URL, CACert: "not PEM"}); err == nil {
		t.Error("New with a caCert that is not PEM succeeded")
	}
}

func TestErrorDecoding(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   Error
		text   string
	}{
		{"arm", 404, `{"error":{"code":"ResourceNotFound","message":"no mi1"}}`, Error{Status: 404, Code: "ResourceNotFound", Message: "no mi1"}, "(ResourceNotFound) no mi1"},
		{"not json", 502, "bad gateway\n", Error{Status: 502, Message: "bad gateway"}, "(502) bad gateway"},
		{"json without error", 409, `{"x":1}`, Error{Status: 409, Message: `{"x":1}`}, `(409) {"x":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			_, err := c.GetManagedInstance(context.Background(), "rg", "mi1")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("GetManagedInstance = %v (%T), want an *Error", err, err)
			}
			if d := cmp.Diff(tc.want, *e); d != "" {
				t.Errorf("error (-want +got):\n%s", d)
			}
			if e.Error() != tc.text {
				t.Errorf("Error() = %q, want %q", e.Error(), tc.text)
			}
			if IsNotFound(err) != (tc.status == 404) {
				t.Errorf("IsNotFound = %v for %d", IsNotFound(err), tc.status)
			}
		})
	}
}

// lroServer answers a PUT with 202 and an operation that runs for `polls` status reads,
// then ends with status end.
func lroServer(t *testing.T, polls int32, end string, headers ...string) (*Client, *atomic.Int32) {
	var reads atomic.Int32
	c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		base := "https://" + r.Host
		switch {
		case r.Method == "PUT":
			for _, h := range headers {
				switch h {
				case "Azure-AsyncOperation":
					w.Header().Set(h, base+"/ops/1?api-version="+APIVersion)
				case "Location":
					w.Header().Set(h, base+"/results/1?api-version="+APIVersion)
				}
			}
			writeJSON(w, http.StatusAccepted, map[string]any{})
		case strings.HasPrefix(r.URL.Path, "/ops/"):
			st := arm.OperationStatus{Name: "1", Status: arm.StatusInProgress}
			if reads.Add(1) > polls {
				st.Status = end
				if end == arm.StatusFailed {
					st.Error = &arm.Error{Code: "SeedingFailed", Message: "the secondary is full"}
				}
			}
			writeJSON(w, http.StatusOK, st)
		case strings.HasPrefix(r.URL.Path, "/results/"):
			if reads.Add(1) <= polls {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			writeJSON(w, http.StatusOK, resource.InstanceJSON{Name: "mi1", Location: "eastus"})
		case r.Method == "GET":
			writeJSON(w, http.StatusOK, resource.InstanceJSON{Name: "mi1", Location: "eastus", Properties: resource.InstanceProperties{ProvisioningState: "Succeeded"}})
		}
	})
	return c, &reads
}

func TestOperationSucceeds(t *testing.T) {
	c, reads := lroServer(t, 3, arm.StatusSucceeded, "Azure-AsyncOperation", "Location")
	var seen []string
	op, err := c.BeginCreateOrUpdateManagedInstance(context.Background(), "rg", "mi1", ManagedInstance{Location: "eastus"})
	if err != nil {
		t.Fatal(err)
	}
	if op.Done() || !strings.Contains(op.StatusURL(), "/ops/1") {
		t.Fatalf("Done() = %v, StatusURL() = %q, want a running operation", op.Done(), op.StatusURL())
	}
	var raw Response
	resp, err := op.Wait(WithResponse(context.Background(), &raw), func(s arm.OperationStatus) { seen = append(seen, s.Status) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"InProgress", "InProgress", "InProgress", "Succeeded"}; !cmp.Equal(seen, want) || reads.Load() != 4 {
		t.Errorf("progress = %v after %d reads, want %v", seen, reads.Load(), want)
	}
	// The resource is read from the PUT's own URL, not the Location's.
	var mi ManagedInstance
	if err := json.Unmarshal(resp.Body, &mi); err != nil || mi.Properties.ProvisioningState != "Succeeded" {
		t.Errorf("final body %s, want the instance read after the operation", resp.Body)
	}
	if string(raw.Body) != string(resp.Body) {
		t.Errorf("WithResponse captured %s, want the final read %s", raw.Body, resp.Body)
	}
	got, err := c.CreateOrUpdateManagedInstance(context.Background(), "rg", "mi1", ManagedInstance{Location: "eastus"})
	if err != nil || got.Name != "mi1" {
		t.Errorf("CreateOrUpdateManagedInstance = %+v, %v", got, err)
	}
}

func TestOperationFails(t *testing.T) {
	c, _ := lroServer(t, 1, arm.StatusFailed, "Azure-AsyncOperation")
	_, err := c.CreateOrUpdateManagedInstance(context.Background(), "rg", "mi1", ManagedInstance{})
	var e *Error
	if !errors.As(err, &e) || *e != (Error{Code: "SeedingFailed", Message: "the secondary is full"}) {
		t.Errorf("a failed operation = %v, want *Error SeedingFailed with status 0", err)
	}
}

func TestOperationByLocation(t *testing.T) {
	c, reads := lroServer(t, 2, "", "Location")
	op, err := c.BeginCreateOrUpdateManagedInstance(context.Background(), "rg", "mi1", ManagedInstance{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := op.Wait(context.Background(), nil)
	if err != nil || resp == nil || !strings.Contains(string(resp.Body), "mi1") || reads.Load() != 3 {
		t.Errorf("Wait by Location = %v, %v after %d reads", resp, err, reads.Load())
	}
	c, _ = lroServer(t, 0, "")
	op, _ = c.BeginCreateOrUpdateManagedInstance(context.Background(), "rg", "mi1", ManagedInstance{})
	if _, err := op.Wait(context.Background(), nil); err == nil {
		t.Error("a 202 without operation URLs: Wait succeeded")
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	c, _ := lroServer(t, 1<<30, "", "Azure-AsyncOperation")
	op, err := c.BeginCreateOrUpdateManagedInstance(context.Background(), "rg", "mi1", ManagedInstance{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := op.Wait(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait on an endless operation = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Wait returned %s after its context ended", d)
	}
}

// WithHandler calls the API in process: no TLS, the caller's remote address.
func TestWithHandler(t *testing.T) {
	var remote, uri, ua string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		remote, uri, ua = r.RemoteAddr, r.RequestURI, r.Header.Get("User-Agent")
		writeJSON(w, http.StatusCreated, map[string]string{"token": "t1", "id": "abc"})
	})
	c, err := New(Config{APIURL: "https://fog.invalid", Token: "tok"}, WithHandler(h, "10.0.0.9:5555"), WithUserAgent("fog-console"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateToken(context.Background(), TokenRequest{Name: "ci"})
	if err != nil || tok.Token != "t1" || tok.ID != "abc" {
		t.Fatalf("CreateToken = %+v, %v", tok, err)
	}
	if remote != "10.0.0.9:5555" || uri != TokensPath+"?api-version="+APIVersion || ua != "fog-console" {
		t.Errorf("the handler saw remote %q, URI %q, User-Agent %q", remote, uri, ua)
	}
}

func TestTypedBodies(t *testing.T) {
	var body string
	c, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		writeJSON(w, http.StatusOK, map[string]any{"name": "mi1"})
	})
	for _, tc := range []struct {
		tags map[string]string
		want string
	}{
		{nil, `{"location":"eastus","properties":{}}`},
		{map[string]string{}, `{"location":"eastus","properties":{},"tags":{}}`},
		{map[string]string{"a": "b"}, `{"location":"eastus","properties":{},"tags":{"a":"b"}}`},
	} {
		if _, err := c.CreateOrUpdateManagedInstance(context.Background(), "rg", "mi1", ManagedInstance{Location: "eastus", Tags: tc.tags}); err != nil {
			t.Fatal(err)
		}
		if body != tc.want {
			t.Errorf("PUT body with tags %v = %s, want %s", tc.tags, body, tc.want)
		}
	}
}
