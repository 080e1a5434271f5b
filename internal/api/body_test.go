package api

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/authz"
)

// onlyReader hides a reader's length, so that the client sends the body chunked (HTTP/1.1) or
// without a content-length (HTTP/2).
type onlyReader struct{ io.Reader }

// A 20 MB body to every kind of endpoint, with and without a declared length, over HTTP/1.1
// and HTTP/2 on TLS: the client receives 413 RequestEntityTooLarge with an ARM error body that
// says the limit (not a reset connection), and the same client goes on working afterwards.
// Endpoints that take no body (a failover) refuse one that is too large as well.
func TestBodyTooLarge(t *testing.T) {
	const size = 20 << 20
	big := bytes.Repeat([]byte("x"), size)
	copy(big, `{"name":"`)
	assignment := "/subscriptions/" + tSub + "/resourceGroups/rg-a/providers/Microsoft.Authorization/roleAssignments/" + authz.NewGUID() + "?api-version=2022-04-01"
	endpoints := []struct{ who, method, path string }{
		{"alice", "PUT", instancePath(tSub, "rg-a", "big") + "?api-version=" + miVer},
		{"", "PUT", instancePath(tSub, "rg-a", "big") + "?api-version=" + miVer}, // no token
		{"alice", "PUT", "/subscriptions/" + tSub + "/resourceGroups/rg-a/providers/Microsoft.Sql/locations/eastus/instanceFailoverGroups/big?api-version=" + miVer},
		{"admin", "PUT", instancePath(tSub, "rg-a", "big") + "/databases/db?api-version=" + miVer},
		{"admin", "POST", TokensPath},
		{"admin", "POST", JoinTokenPath},
		{"admin", "PUT", assignment},
		{"admin", "PUT", SubscriptionsPath + "/" + tSub2},
		{"alice", "POST", "/subscriptions/" + tSub + "/resourceGroups/rg-a/providers/Microsoft.Sql/locations/eastus/instanceFailoverGroups/big/failover?api-version=" + miVer},
	}
	for _, h2 := range []bool{false, true} {
		a := newTenancyAPI(t, h2)
		proto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
		for _, e := range endpoints {
			for _, chunked := range []bool{false, true} {
				name := proto + " " + e.method + " " + e.path + " as " + e.who + map[bool]string{false: " with length", true: " chunked"}[chunked]
				t.Run(name, func(t *testing.T) {
					var body io.Reader = bytes.NewReader(big)
					if chunked {
						body = onlyReader{bytes.NewReader(big)}
					}
					req, err := http.NewRequest(e.method, a.srv.URL+e.path, body)
					if err != nil {
						t.Fatal(err)
					}
					if e.who != "" {
						req.Header.Set("Authorization", "Bearer "+a.tok[e.who])
					}
					req.Header.Set("Content-Type", "application/json")
					resp, err := a.srv.Client().Do(req)
					if err != nil {
						t.Fatalf("the client got %v, want a 413 response", err)
					}
					if e.who == "" && chunked {
						// Without a declared length, a body is known to be too large only
						// once read, and a stranger's is never read: the answer is 401,
						// and the client receives it whole.
						b, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if err != nil || resp.StatusCode != http.StatusUnauthorized {
							t.Fatalf("answer = %d %s (%v), want 401", resp.StatusCode, b, err)
						}
					} else {
						checkTooLarge(t, resp, proto)
					}
					// The client goes on working (over the same connection when it was kept).
					if r := a.call("admin", "GET", TokensPath, nil); r.status != http.StatusOK {
						t.Fatalf("the next request = %d %s", r.status, r.body)
					}
				})
			}
		}
	}
}

func checkTooLarge(t *testing.T, resp *http.Response, proto string) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge || json.Unmarshal(b, &e) != nil || e.Error.Code != "RequestEntityTooLarge" ||
		!strings.Contains(e.Error.Message, strconv.Itoa(MaxBodyBytes)) || resp.Header.Get("x-ms-error-code") != "RequestEntityTooLarge" {
		t.Fatalf("answer = %d %s, want 413 {\"error\":{\"code\":\"RequestEntityTooLarge\"}} with the limit", resp.StatusCode, b)
	}
	if resp.Proto != proto {
		t.Errorf("answered over %s, want %s", resp.Proto, proto)
	}
}

// A client that asks for "100 Continue" before it sends a body declared too large is answered
// 413 at once and never sends it.
func TestBodyTooLargeExpectContinue(t *testing.T) {
	a := newTenancyAPI(t, false)
	tr := a.srv.Client().Transport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = time.Minute
	hc := &http.Client{Transport: tr}
	sent := &countingReader{r: bytes.NewReader(make([]byte, 20<<20))}
	req, err := http.NewRequest("PUT", a.srv.URL+instancePath(tSub, "rg-a", "big")+"?api-version="+miVer, sent)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 20 << 20
	req.Header.Set("Authorization", "Bearer "+a.tok["alice"])
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("the client got %v, want a 413 response", err)
	}
	checkTooLarge(t, resp, "HTTP/1.1")
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the answer took %v: the server waited for the body", d)
	}
	if sent.n > 0 {
		t.Errorf("the client sent %d bytes of a body the server refused before asking for it", sent.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// The limit is exact: a body of MaxBodyBytes is read, one byte more is refused, with or
// without a declared length.
func TestBodyLimitEdge(t *testing.T) {
	a := newTenancyAPI(t, false)
	for _, chunked := range []bool{false, true} {
		for _, n := range []int{MaxBodyBytes, MaxBodyBytes + 1} {
			b := []byte(`{"name":"edge"}`)
			b = append(b, bytes.Repeat([]byte(" "), n-len(b))...)
			var body io.Reader = bytes.NewReader(b)
			if chunked {
				body = onlyReader{bytes.NewReader(b)}
			}
			req, _ := http.NewRequest("POST", a.srv.URL+TokensPath, body)
			req.Header.Set("Authorization", "Bearer "+a.tok["admin"])
			resp, err := a.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if n > MaxBodyBytes {
				checkTooLarge(t, resp, "HTTP/1.1")
				continue
			}
			rb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Errorf("a body of %d bytes (chunked %v) = %d %s, want 201", n, chunked, resp.StatusCode, rb)
			}
		}
	}
}

// Many clients write the whole body before they read anything. Such a client, sending 20 MB on
// one TLS connection with a declared length or chunked, reads the 413 afterwards rather than
// having its writes reset, and for a body declared too large the connection stays usable.
func TestBodyTooLargeWriteThenRead(t *testing.T) {
	a := newTenancyAPI(t, false)
	const size = 20 << 20
	path := instancePath(tSub, "rg-a", "big") + "?api-version=" + miVer
	for _, chunked := range []bool{false, true} {
		t.Run(map[bool]string{false: "with length", true: "chunked"}[chunked], func(t *testing.T) {
			conn, err := tls.Dial("tcp", a.srv.Listener.Addr().String(), a.srv.Client().Transport.(*http.Transport).TLSClientConfig)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(time.Minute))
			w := bufio.NewWriterSize(conn, 64<<10)
			fmt.Fprintf(w, "PUT %s HTTP/1.1\r\nHost: fog\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n", path, a.tok["alice"])
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			if chunked {
				fmt.Fprintf(w, "Transfer-Encoding: chunked\r\n\r\n")
				for sent := 0; sent < size; sent += len(chunk) {
					fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
				}
				fmt.Fprintf(w, "0\r\n\r\n")
			} else {
				fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", size)
				for sent := 0; sent < size; sent += len(chunk) {
					w.Write(chunk)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatalf("writing the body: %v (the server cut the connection)", err)
			}
			rd := bufio.NewReader(conn)
			resp, err := http.ReadResponse(rd, nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			checkTooLarge(t, resp, "HTTP/1.1")
			if resp.Close {
				return // the server may close; it answered first
			}
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: fog\r\nAuthorization: Bearer %s\r\n\r\n", TokensPath, a.tok["admin"])
			resp, err = http.ReadResponse(rd, nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("the next request on the connection: %v %v", resp, err)
			}
			resp.Body.Close()
		})
	}
}
