package blob

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSharedKeyVectors checks the Shared Key signature against an independent
// implementation's expected values: pgBackRest's unit test of its Azure driver
// (test/src/module/storage/azureTest.c, storageAzureAuth), account "account", key "azKey",
// whose requests carry Date rather than x-ms-date.
func TestSharedKeyVectors(t *testing.T) {
	c, err := New("account", "YXpLZXk=", "https://account.blob.core.windows.net", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		length     int64
		md5        string
		want       string
	}{
		{"minimal", "/path", 0, "", "edqgT7EhsiIN3q6Al2HCZlpXr2D5cJFavr2ZCkhG9R8="},
		{"md5 and query", "/path/file?a=b", 44, "b64f49553d5c441652e95697a2c5949e", "5qAnroLtbY8IWqObx8+UVwIUysXujsfWZZav7PrBON0="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "https://account.blob.core.windows.net"+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tc.length
			req.Header.Set("Date", "Sun, 21 Jun 2020 12:46:19 GMT")
			req.Header.Set("x-ms-version", "2019-02-02")
			if tc.md5 != "" {
				req.Header.Set("Content-MD5", tc.md5)
			}
			if got := c.sign(stringToSign(req, "account")); got != tc.want {
				t.Errorf("signature = %s, want %s; string to sign:\n%q", got, tc.want, stringToSign(req, "account"))
			}
		})
	}
}

// TestStringToSign: the canonical form's rules that the vectors above do not reach: x-ms-*
// headers lower-cased and sorted, query names lower-cased and sorted with their values, the
// emulator's path-style resource naming the account twice.
func TestStringToSign(t *testing.T) {
	req, err := http.NewRequest(http.MethodPut, "https://127.0.0.1:10000/devstoreaccount1/i-3f2a?restype=container&Comp=b&comp=a", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Ms-Version", "2020-12-06")
	req.Header.Set("x-ms-date", "Thu, 03 Dec 2026 22:43:37 GMT")
	req.Header.Set("x-ms-meta-a", "  two   words ")
	want := "PUT\n\n\n\n\n\n\n\n\n\n\n\n" +
		"x-ms-date:Thu, 03 Dec 2026 22:43:37 GMT\nx-ms-meta-a:two words\nx-ms-version:2020-12-06\n" +
		"/devstoreaccount1/devstoreaccount1/i-3f2a\ncomp:a,b\nrestype:container"
	if got := stringToSign(req, "devstoreaccount1"); got != want {
		t.Errorf("stringToSign =\n%q\nwant\n%q", got, want)
	}
}

// TestContainerSAS: the token's fields, and its string to sign as Azure's reference lays it
// out for version 2020-12-06.
func TestContainerSAS(t *testing.T) {
	c, err := New("devstoreaccount1", "YXpLZXk=", Endpoint("devstoreaccount1", "localhost", 10000, true), nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2026, 12, 5, 22, 43, 37, 500, time.FixedZone("x", 3600))
	sas, err := c.ContainerSAS("i-3f2a", exp)
	if err != nil {
		t.Fatal(err)
	}
	q, err := url.ParseQuery(sas)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"sv": Version, "spr": "https", "se": "2026-12-05T21:43:37Z", "sr": "c", "sp": "racwdl"} {
		if got := q.Get(k); got != want {
			t.Errorf("SAS %s = %q, want %q", k, got, want)
		}
	}
	wantS := "racwdl\n\n2026-12-05T21:43:37Z\n/blob/devstoreaccount1/i-3f2a\n\n\nhttps\n2020-12-06\nc\n\n\n\n\n\n\n"
	p := sasParams{permissions: "racwdl", expiry: "2026-12-05T21:43:37Z", resource: "/blob/devstoreaccount1/i-3f2a", protocol: "https", version: Version, kind: "c"}
	if got := p.stringToSign(); got != wantS {
		t.Errorf("SAS string to sign =\n%q\nwant\n%q", got, wantS)
	}
	if q.Get("sig") != c.sign(wantS) {
		t.Error("the SAS's signature is not that of its string to sign")
	}
	if strings.HasPrefix(sas, "?") || q.Has("ss") || q.Has("srt") {
		t.Errorf("SAS %q: want a service SAS without its ?", "sr="+q.Get("sr"))
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct{ account, key, endpoint string }{
		{"Fog", "YXpLZXk=", "https://x"},
		{"fogwest", "not base64!", "https://x"},
		{"fogwest", "", "https://x"},
		{"fogwest", "YXpLZXk=", "http://insecure.test"},
		{"fogwest", "YXpLZXk=", "https://h/?q=1"},
	} {
		if _, err := New(tc.account, tc.key, tc.endpoint, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%q, key, %q) = %v, want ErrInvalid", tc.account, tc.endpoint, err)
		} else if tc.key != "YXpLZXk=" && strings.Contains(err.Error(), tc.key) && tc.key != "" {
			t.Errorf("New's error quotes the key: %v", err)
		}
	}
	c, err := New("fogwest", "YXpLZXk=", "https://x", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"i_3f2a", "ab", "a--b", "A-b", "x/../y"} {
		if _, err := c.ContainerSAS(name, time.Now()); !errors.Is(err, ErrInvalid) {
			t.Errorf("ContainerSAS(%q) = %v, want ErrInvalid", name, err)
		}
		if err := c.CreateContainer(t.Context(), name); !errors.Is(err, ErrInvalid) {
			t.Errorf("CreateContainer(%q) = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := c.ContainerSAS("i-3f2a", time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ContainerSAS without an expiry = %v, want ErrInvalid", err)
	}
}
