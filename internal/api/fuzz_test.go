package api

import "testing"

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
