package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/store"
)

// brokenInstances is a store whose reads of managed-instance records fail with an error of
// no known kind, as a corrupt record or a store bug would.
type brokenInstances struct{ store.Store }

const brokenCause = "decode record: disk sector 7 unreadable at /var/lib/fog/secret-path"

func (b brokenInstances) Get(ctx context.Context, key string) (store.KV, error) {
	if strings.HasPrefix(key, "mi/") {
		return store.KV{}, fmt.Errorf("store: get %s: %s", key, brokenCause)
	}
	return b.Store.Get(ctx, key)
}

// syncBuffer is a log destination the server's goroutines and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A failure of Fog's own is answered 500 with an error id and without its cause, which the
// server log has under that id, at ERROR, with the request; the token is logged nowhere.
func TestInternalErrorIsToldByID(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctrl, err := controller.New(controller.Config{Regions: []string{"eastus", "westus"}}, brokenInstances{st}, log)
	if err != nil {
		t.Fatal(err)
	}
	tokens := authz.NewTokens(st)
	tok, _, err := tokens.CreateFor(context.Background(), "admin", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(New(ctrl, tokens, log).Handler())
	t.Cleanup(srv.Close)

	path := instancePath(tSub, "rg-a", "mi1")
	req, err := http.NewRequest("GET", srv.URL+path+"?api-version="+miVer, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	m := regexp.MustCompile(`\(error id ([0-9a-f]{16})\)`).FindStringSubmatch(e.Error.Message)
	if resp.StatusCode != http.StatusInternalServerError || e.Error.Code != "InternalServerError" || m == nil {
		t.Fatalf("GET with a broken store = %d %s, want 500 InternalServerError naming an error id", resp.StatusCode, body)
	}
	for _, secret := range []string{"secret-path", "disk sector", "mi/"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("the body %s carries the cause (%q)", body, secret)
		}
	}
	out := logs.String()
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "errorId="+m[1]) {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("the log has no line with error id %s:\n%s", m[1], out)
	}
	for _, want := range []string{"level=ERROR", brokenCause, "path=" + path, "method=GET", "requestId=" + resp.Header.Get("x-ms-request-id")} {
		if !strings.Contains(line, want) {
			t.Errorf("the log line %q lacks %q", line, want)
		}
	}
	if n := strings.Count(out, "errorId="+m[1]); n != 1 {
		t.Errorf("the cause is logged %d times, want once:\n%s", n, out)
	}
	if strings.Contains(out, tok) {
		t.Error("the log carries the access token")
	}
}
