package agentapi_test

import (
	"testing"

	"github.com/fogdb/fog/internal/agentapi"
)

// FuzzParseJoinToken: a join token parses into a secret and a pin of the right sizes, or is
// refused.
func FuzzParseJoinToken(f *testing.F) {
	f.Add("fogjoin." + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ" + "." + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	f.Add("fogjoin..")
	f.Add("x.y.z")
	f.Fuzz(func(t *testing.T, tok string) {
		secret, pin, err := agentapi.ParseJoinToken(tok)
		if err == nil && (len(secret) != 43 || len(pin) != 64) {
			t.Fatalf("%q parsed as %q %q", tok, secret, pin)
		}
	})
}
