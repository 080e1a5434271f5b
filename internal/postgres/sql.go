package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// AdminRole is the role an instance's admin login is a member of, as Amazon RDS's
// rds_superuser, Azure Database for PostgreSQL's azure_pg_admin and Cloud SQL's
// cloudsqlsuperuser are: no SUPERUSER, so nothing in SQL reaches a file or a program of the
// host, but CREATEDB, CREATEROLE and the predefined roles a database's administrator needs.
const AdminRole = "fog_admin"

// AdminGrants are the predefined roles of AdminRole: read and write every table, monitor,
// end other sessions, CHECKPOINT, read settings and statistics.
var AdminGrants = []string{"pg_read_all_data", "pg_write_all_data", "pg_monitor", "pg_signal_backend",
	"pg_checkpoint", "pg_read_all_settings", "pg_read_all_stats", "pg_stat_scan_tables"}

// EnsureAdmin creates or updates AdminRole and the administrator login, a member of it, with
// the given SCRAM verifier; conn must be connected to the postgres database. An admin made a superuser by an older Fog loses SUPERUSER here.
// createRole is given only when the fog_guard library is loaded (guarded): in PostgreSQL 15
// CREATEROLE alone could grant pg_execute_server_program.
func EnsureAdmin(ctx context.Context, conn *pgx.Conn, login, verifier string, guarded bool) error {
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") {
		return errors.New("ensure admin: the stored password is not a SCRAM verifier")
	}
	createRole := "NOCREATEROLE"
	if guarded {
		createRole = "CREATEROLE"
	}
	verb := func(role string) (string, error) {
		ok, err := roleExists(ctx, conn, role)
		if ok {
			return "ALTER", err
		}
		return "CREATE", err
	}
	v, err := verb(AdminRole)
	if err != nil {
		return fmt.Errorf("ensure admin role: %w", err)
	}
	stmts := []string{fmt.Sprintf("%s ROLE %s WITH NOLOGIN NOSUPERUSER CREATEDB %s INHERIT", v, ident(AdminRole), createRole)}
	for _, g := range AdminGrants {
		stmts = append(stmts, "GRANT "+ident(g)+" TO "+ident(AdminRole)+" WITH ADMIN OPTION")
	}
	if v, err = verb(login); err != nil {
		return fmt.Errorf("ensure admin %s: %w", login, err)
	}
	// The verifier goes in as a literal: utility statements take no parameters. It is not a
	// secret in the sense of a password, and the statement is not logged.
	stmts = append(stmts,
		fmt.Sprintf("%s ROLE %s WITH LOGIN NOSUPERUSER CREATEDB %s INHERIT PASSWORD '%s'", v, ident(login), createRole, strings.ReplaceAll(verifier, "'", "''")),
		"GRANT "+ident(AdminRole)+" TO "+ident(login)+" WITH ADMIN OPTION",
		// The postgres database belongs to Fog's system role; its admin may still create
		// schemas, tables and trusted extensions there, as in the databases it owns. Fog's
		// own superuser sessions run in SystemDB, where no tenant connects, and wherever
		// they run they search pg_catalog only (pinnedSettings).
		"GRANT CREATE, CONNECT, TEMPORARY ON DATABASE postgres TO "+ident(AdminRole),
		"GRANT USAGE, CREATE ON SCHEMA public TO "+ident(AdminRole))
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("ensure admin %s: %w", login, err)
		}
	}
	return nil
}

// Database is a user database as listed by ListDatabases.
type Database struct {
	Name      string
	Collation string
	Created   time.Time
	// OID is the database's oid: a rename keeps it, and WAL names the database by it.
	OID uint32
}

// ListDatabases lists the user databases (all but postgres, template0 and template1).
// PostgreSQL keeps no creation time; the modification time of the database's PG_VERSION file
// is written once by CREATE DATABASE and serves instead.
func ListDatabases(ctx context.Context, conn *pgx.Conn) ([]Database, error) {
	rows, err := conn.Query(ctx, `
		SELECT datname::text, datcollate::text,
		       coalesce((pg_catalog.pg_stat_file(
		           'base/'::text OPERATOR(pg_catalog.||) oid::text OPERATOR(pg_catalog.||) '/PG_VERSION'::text, true)).modification,
		         pg_catalog.now()), oid::int8
		FROM pg_catalog.pg_database
		WHERE datname::text OPERATOR(pg_catalog.<>) ALL (ARRAY['postgres', 'template0', 'template1', '`+SystemDB+`']::text[]) AND datallowconn
		ORDER BY datname`)
	if err != nil {
		return nil, fmt.Errorf("list databases: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Database, error) {
		var d Database
		var oid int64
		err := r.Scan(&d.Name, &d.Collation, &d.Created, &oid)
		d.OID = uint32(oid)
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

// roleExists reports whether a role named role exists.
func roleExists(ctx context.Context, conn *pgx.Conn, role string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
		WHERE rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name)`, role).Scan(&ok)
	return ok, err
}

// ServerVersion returns server_version.
func ServerVersion(ctx context.Context, conn *pgx.Conn) (string, error) {
	var v string
	err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	return v, err
}
