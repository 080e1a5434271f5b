package api

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/store"
)

// FuzzActivityFilter: any $filter is parsed or refused with InvalidFilter, never a panic; a
// parsed one always has a start time.
func FuzzActivityFilter(f *testing.F) {
	f.Add("eventTimestamp ge '2026-11-20T00:00:00Z' and eventTimestamp le '2026-11-27T00:00:00Z' and resourceGroupName eq 'rg1'")
	f.Add("eventTimestamp ge '' and correlationId eq 'x'")
	f.Add("resourceUri eq '/subscriptions/x' AND eventTimestamp GE '2026-01-01T00:00:00.123456789+02:00'")
	f.Add("")
	f.Fuzz(func(t *testing.T, q string) {
		flt, aerr := parseActivityFilter(q)
		if aerr == nil && flt.From.IsZero() {
			t.Fatalf("%q parsed without a start time", q)
		}
		if aerr != nil && aerr.Code != "InvalidFilter" {
			t.Fatalf("%q: code %s", q, aerr.Code)
		}
	})
}

// FuzzAuthzBody: any role-assignment or subscription body, at any scope, is stored or refused
// with an ARM error, never a panic or a 500.
func FuzzAuthzBody(f *testing.F) {
	st, err := store.OpenBolt(f.TempDir() + "/s.db")
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	s := &Server{authz: authz.New(st), log: slog.New(slog.DiscardHandler)}
	h := s.authzRoutes(http.NotFoundHandler())
	f.Add("/subscriptions/00000000-0000-0000-0000-000000000000", "0f8fad5b-d9cb-469f-a165-70867728950e", []byte(`{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7","principalId":"alice"}}`))
	f.Add("", "x", []byte(`{"properties":{"roleDefinitionId":"Owner","principalId":""}}`))
	f.Add("/subscriptions/x/resourceGroups", "0f8fad5b-d9cb-469f-a165-70867728950e", []byte(`{"properties":null}`))
	f.Add("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/r", "0F8FAD5B-D9CB-469F-A165-70867728950E", []byte(`[]`))
	f.Fuzz(func(t *testing.T, scope, name string, body []byte) {
		u := &url.URL{Path: scope + "/providers/Microsoft.Authorization/roleAssignments/" + name, RawQuery: "api-version=2022-04-01"}
		req := httptest.NewRequest("PUT", "https://fog.test/", bytes.NewReader(body))
		req.URL = u
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("PUT %s: %d %s", u, w.Code, w.Body)
		}
	})
}
