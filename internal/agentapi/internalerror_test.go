package agentapi_test

import (
	"bytes"
	"context"
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

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/store"
)

// brokenTokens is a store whose reads of join tokens and API tokens fail with an error of no
// known kind.
type brokenTokens struct{ store.Store }

const tokenCause = "decode record: bucket page 12 checksum mismatch in /var/lib/fog/fog.db"

func (b brokenTokens) Get(ctx context.Context, key string) (store.KV, error) {
	if strings.HasPrefix(key, "jointokens/") || strings.HasPrefix(key, "tokens/") {
		return store.KV{}, fmt.Errorf("store: get %s: %s", key, tokenCause)
	}
	return b.Store.Get(ctx, key)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A failure of the server's own is answered with an error id, not its cause; the server log
// has the cause under that id, and neither the log nor the answer has the token sent.
func TestInternalErrorIsToldByID(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var logs lockedBuffer
	s := agentapi.NewServer(brokenTokens{st}, nil, []string{"eastus"}, slog.New(slog.NewTextHandler(&logs, nil)))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	joinToken := "fogjoin." + strings.Repeat("s", 43) + "." + strings.Repeat("a", 64)
	apiToken := "api-token-" + strings.Repeat("t", 30)
	idRe := regexp.MustCompile(`\(error id ([0-9a-f]{16})\)`)
	for _, c := range []struct {
		name, method, path, auth, body string
		status                         int
		code                           string
	}{
		{"join", "POST", agentapi.Path + "join", "", `{"token":"` + joinToken + `","csr":"x"}`, http.StatusInternalServerError, "InternalError"},
		{"agent list", "GET", agentapi.Path + "agents", "Bearer " + apiToken, "", http.StatusServiceUnavailable, "StoreUnavailable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			m := idRe.FindStringSubmatch(string(body))
			if resp.StatusCode != c.status || !strings.Contains(string(body), `"code":"`+c.code+`"`) || m == nil {
				t.Fatalf("%s %s = %d %s, want %d %s naming an error id", c.method, c.path, resp.StatusCode, body, c.status, c.code)
			}
			if strings.Contains(string(body), "checksum") || strings.Contains(string(body), "tokens/") {
				t.Errorf("the answer %s carries the cause", body)
			}
			var line string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "errorId="+m[1]) {
					line = l
				}
			}
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, tokenCause) || !strings.Contains(line, "path="+c.path) {
				t.Errorf("the log line of error id %s is %q, want the cause at ERROR with the path", m[1], line)
			}
		})
	}
	for _, tok := range []string{joinToken, apiToken, strings.Repeat("s", 43)} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the log carries a token (%s)", tok)
		}
	}
}
