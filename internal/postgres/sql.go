package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// EnsureAdmin creates or updates the administrator login with the given SCRAM verifier. The
// admin is a superuser, like the sysadmin login of a managed instance.
func EnsureAdmin(ctx context.Context, conn *pgx.Conn, login, verifier string) error {
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") {
		return errors.New("ensure admin: the stored password is not a SCRAM verifier")
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", login).Scan(&exists); err != nil {
		return fmt.Errorf("ensure admin %s: %w", login, err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	// The verifier goes in as a literal: utility statements take no parameters. It is not a
	// secret in the sense of a password, and the statement is not logged.
	q := fmt.Sprintf("%s ROLE %s WITH LOGIN SUPERUSER CREATEDB CREATEROLE PASSWORD '%s'", verb, ident(login), strings.ReplaceAll(verifier, "'", "''"))
	if _, err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("ensure admin %s: %w", login, err)
	}
	return nil
}

// Database is a user database as listed by ListDatabases.
type Database struct {
	Name      string
	Collation string
	Created   time.Time
}

// ListDatabases lists the user databases (all but postgres, template0 and template1).
// PostgreSQL keeps no creation time; the modification time of the database's PG_VERSION file
// is written once by CREATE DATABASE and serves instead.
func ListDatabases(ctx context.Context, conn *pgx.Conn) ([]Database, error) {
	rows, err := conn.Query(ctx, `
		SELECT datname, datcollate,
		       coalesce((pg_stat_file('base/' || oid || '/PG_VERSION', true)).modification, now())
		FROM pg_database
		WHERE datname NOT IN ('postgres', 'template0', 'template1') AND datallowconn
		ORDER BY datname`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Database, error) {
		var d Database
		err := r.Scan(&d.Name, &d.Collation, &d.Created)
		return d, err
	})
}

// CreateDatabase creates name owned by owner. It is idempotent: an existing database is
// success, so a command repeated after a crash is harmless.
func CreateDatabase(ctx context.Context, conn *pgx.Conn, name, owner string) error {
	q := "CREATE DATABASE " + ident(name)
	if owner != "" {
		q += " OWNER " + ident(owner)
	}
	_, err := conn.Exec(ctx, q)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops name, ending its sessions. A missing database is success.
func DropDatabase(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// ServerVersion returns server_version.
func ServerVersion(ctx context.Context, conn *pgx.Conn) (string, error) {
	var v string
	err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v, err
}
