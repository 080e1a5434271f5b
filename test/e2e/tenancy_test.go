package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestTenancyBoundary: on a real Fog, two Contributors of different resource groups. One
// naming the other's instance as its dnsZonePartner gets what a missing instance gets, and its
// instance is not made; taking the other's instance name is refused without naming the other
// resource or its resource group. An administratorLogin that is one of Fog's roles is refused
// with 400, and a 20 MB body gets 413 over the server's real TLS, HTTP/1.1 and HTTP/2, even from
// a client that writes its whole body before it reads.
func TestTenancyBoundary(t *testing.T) {
	f := startFog(t, "")
	token := func(name string) string {
		out, _, err := f.runCLI("", "token", "create", "--name", name)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + strings.TrimSpace(out)
	}
	alice, bob := token("alice"), token("bob")
	for who, rg := range map[string]string{"alice": "rg-ta", "bob": "rg-tb"} {
		if _, _, err := f.runCLI("", "role", "assignment", "create", "--assignee", who, "--role", "Contributor", "--scope", "/subscriptions/"+sub+"/resourceGroups/"+rg); err != nil {
			t.Fatal(err)
		}
	}
	f.wait(f.callWith("PUT", miPath("rg-tb", "tn-b"), miBody("eastus", nil), bob))
	bobs := f.callWith("GET", miPath("rg-tb", "tn-b"), nil, bob).json(t)["id"].(string)

	missing := miPath("rg-tb", "tn-none")
	want := f.callWith("PUT", miPath("rg-ta", "tn-a"), miBody("westus", map[string]any{"dnsZonePartner": missing}), alice)
	got := f.callWith("PUT", miPath("rg-ta", "tn-a"), miBody("westus", map[string]any{"dnsZonePartner": bobs}), alice)
	if want.Status != http.StatusBadRequest || want.code() != "InvalidDnsZonePartner" ||
		got.Status != want.Status || strings.ReplaceAll(string(got.Body), bobs, "{id}") != strings.ReplaceAll(string(want.Body), missing, "{id}") {
		t.Errorf("dnsZonePartner of bob's instance = %d %s\nwant what a missing one gets: %d %s", got.Status, got.Body, want.Status, want.Body)
	}
	if r := f.callWith("GET", miPath("rg-ta", "tn-a"), nil, alice); r.Status != http.StatusNotFound {
		t.Errorf("alice's instance was made in bob's DNS zone: %d %s", r.Status, r.Body)
	}

	r := f.callWith("PUT", miPath("rg-ta", "tn-b"), miBody("eastus", nil), alice)
	if r.Status != http.StatusConflict || r.code() != "NameAlreadyExists" || strings.Contains(string(r.Body), "rg-tb") || !strings.Contains(string(r.Body), "'tn-b' already exists") {
		t.Errorf("alice taking bob's name = %d %s, want 409 NameAlreadyExists without bob's resource group", r.Status, r.Body)
	}

	r = f.callWith("PUT", miPath("rg-ta", "tn-login"), miBody("eastus", map[string]any{"administratorLogin": "fog_admin"}), alice)
	if r.Status != http.StatusBadRequest || r.code() != "InvalidLoginName" {
		t.Errorf("administratorLogin fog_admin = %d %s, want 400 InvalidLoginName", r.Status, r.Body)
	}

	// 20 MB, through the harness's client (HTTP/1.1) and one that speaks HTTP/2.
	big := bytes.Repeat([]byte("x"), 20<<20)
	h2 := &http.Client{Timeout: time.Minute, Transport: f.hc.Transport.(*http.Transport).Clone()}
	h2.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	for _, hc := range []*http.Client{f.hc, h2} {
		for _, path := range []string{miPath("rg-ta", "tn-big") + "?api-version=" + apiVer, "/fog/v1/tokens"} {
			req, _ := http.NewRequest("PUT", f.info.APIURL+path, bytes.NewReader(big))
			if strings.HasPrefix(path, "/fog/") {
				req.Method = "POST"
			}
			req.Header.Set("Authorization", alice)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("20 MB to %s: %v, want a 413 response", path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("x-ms-error-code") != "RequestEntityTooLarge" {
				t.Errorf("20 MB to %s over %s = %d %s, want 413 RequestEntityTooLarge", path, resp.Proto, resp.StatusCode, resp.Header.Get("x-ms-error-code"))
			}
		}
	}
	u, _ := url.Parse(f.info.APIURL)
	conn, err := tls.Dial("tcp", u.Host, f.hc.Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	w := bufio.NewWriterSize(conn, 64<<10)
	fmt.Fprintf(w, "PUT %s?api-version=%s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n", miPath("rg-ta", "tn-big"), apiVer, u.Host, alice, len(big))
	w.Write(big)
	if err := w.Flush(); err != nil {
		t.Fatalf("writing 20 MB before reading: %v (the server cut the connection)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("after writing 20 MB the client read %v %v, want 413", resp, err)
	}
}
