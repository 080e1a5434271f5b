package cli

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// The CLI sends its token only to the configured API, whatever URL an answer points to.
func TestTokenStaysWithTheAPI(t *testing.T) {
	c := &client{base: "https://127.0.0.1:7443", tok: "secret", hc: &http.Client{Transport: http.DefaultTransport}}
	for _, u := range []string{"https://attacker.example/subscriptions/x", "http://127.0.0.1:7443/x", "https://127.0.0.1:7444/x"} {
		_, _, err := c.do(context.Background(), "GET", u, nil)
		if err == nil || !strings.Contains(err.Error(), "refusing to send the API token") {
			t.Errorf("GET %s: %v, want a refusal before any request", u, err)
		}
	}
	if !sameOrigin("https://127.0.0.1:7443/subscriptions/a?x=1", c.base) {
		t.Error("the API's own URL is not the same origin")
	}
}
