package pgtypes

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"golang.org/x/text/unicode/norm"
)

// SCRAMIterations matches PostgreSQL's default scram_iterations.
const SCRAMIterations = 4096

// SCRAMVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for password (RFC 5802,
// as in src/common/scram-common.c), so Fog can store and send only the verifier. PostgreSQL
// normalises non-ASCII passwords with SASLprep; NFKC is its core.
func SCRAMVerifier(password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	p := password
	for _, r := range p {
		if r > 0x7f {
			p = norm.NFKC.String(p)
			break
		}
	}
	salted, err := pbkdf2.Key(sha256.New, p, salt, SCRAMIterations, 32)
	if err != nil {
		panic(err) // only for invalid parameters, which are constant here
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", SCRAMIterations, b64(salt), b64(storedKey[:]), b64(serverKey))
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
