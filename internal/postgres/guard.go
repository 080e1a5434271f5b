package postgres

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

//go:embed guard/fog_guard.c
var guardSource []byte

// GuardExtensions are the extensions an instance admin may create beyond PostgreSQL's trusted
// ones (which a database owner creates anyway): the monitoring and maintenance extensions
// managed services offer. None reaches a file or a program on the host. The guard creates
// them as the bootstrap superuser and grants the foreign-data wrappers of postgres_fdw and
// dblink to AdminRole; both connect for a non-superuser only with a password the server asks
// for (their own rule), so never over the socket as Fog's roles, which peer authentication
// would accept from the instance's OS user.
var GuardExtensions = []string{"pg_stat_statements", "pg_buffercache", "pgstattuple", "pg_prewarm",
	"pg_visibility", "amcheck", "pg_freespacemap", "pgrowlocks", "postgres_fdw", "dblink"}

// ErrNoGuard means the guard library could not be built here; instance admins then get no
// CREATEROLE (see BuildGuard).
var ErrNoGuard = errors.New("the fog_guard library cannot be built here")

// BuildGuard compiles the fog_guard library (guard/fog_guard.c) against the server headers of
// the PostgreSQL in bin, into dir, once per source and server version, and returns its path.
// It needs a C compiler and the server headers (Debian: postgresql-server-dev-15). dir and
// the library belong to fog's user, readable by all and writable by none of PostgreSQL's
// users, so no instance can replace code another instance loads.
func BuildGuard(ctx context.Context, bin, dir string) (string, error) {
	pgConfig := filepath.Join(bin, "pg_config")
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, pgConfig, "--includedir-server", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrNoGuard, pgConfig, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 {
		return "", fmt.Errorf("%w: pg_config printed %q", ErrNoGuard, out)
	}
	inc, version := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	if _, err := os.Stat(filepath.Join(inc, "postgres.h")); err != nil {
		major := strings.Fields(version)
		hint := "the PostgreSQL server development headers"
		if len(major) > 1 {
			hint = "postgresql-server-dev-" + strings.Split(major[1], ".")[0]
		}
		return "", fmt.Errorf("%w: no server headers in %s (install %s)", ErrNoGuard, inc, hint)
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		if cc, err = exec.LookPath("gcc"); err != nil {
			return "", fmt.Errorf("%w: no C compiler (install gcc)", ErrNoGuard)
		}
	}
	h := sha256.New()
	h.Write(guardSource)
	h.Write([]byte(version + "\x00" + inc))
	lib := filepath.Join(dir, fmt.Sprintf("fog_guard-%x.so", h.Sum(nil)[:6]))
	if _, err := os.Stat(lib); err == nil {
		return lib, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	src, err := os.CreateTemp(dir, "fog_guard-*.c")
	if err != nil {
		return "", err
	}
	defer os.Remove(src.Name())
	if _, err := src.Write(guardSource); err != nil {
		src.Close()
		return "", err
	}
	src.Close()
	// Several agents of one machine may build at once: each into its own file, renamed.
	tmp := strings.TrimSuffix(src.Name(), ".c") + ".so.tmp"
	defer os.Remove(tmp)
	if out, err := exec.CommandContext(ctx, cc, "-O2", "-fPIC", "-shared", "-Wall", "-I", inc, "-o", tmp, src.Name()).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("%w: compile: %v: %s", ErrNoGuard, err, lastLines(string(out), 5))
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	return lib, os.Rename(tmp, lib)
}

// GuardLoaded reports whether the server runs with the guard library loaded.
func GuardLoaded(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var v string
	err := conn.QueryRow(ctx, "SELECT pg_catalog.current_setting('shared_preload_libraries'::pg_catalog.text)").Scan(&v)
	return strings.Contains(v, "fog_guard"), err
}

// PreloadLibraries is the shared_preload_libraries value for a guard library path ("" for
// none): pg_stat_statements, as managed services preload it, and the guard.
func PreloadLibraries(guard string) string {
	libs := []string{"pg_stat_statements"}
	if guard != "" {
		libs = append(libs, `"`+strings.ReplaceAll(guard, `"`, `""`)+`"`)
	}
	return strings.Join(libs, ",")
}

// NeedsRestart reports whether the running server's shared_preload_libraries differ from
// want, or its archive_mode from archiveMode: only a restart changes either.
func NeedsRestart(ctx context.Context, conn *pgx.Conn, want, archiveMode string) (bool, error) {
	var v, mode string
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.current_setting('shared_preload_libraries'::pg_catalog.text), pg_catalog.current_setting('archive_mode'::pg_catalog.text)").Scan(&v, &mode); err != nil {
		return false, err
	}
	return normLibs(v) != normLibs(want) || mode != archiveMode, nil
}

func normLibs(s string) string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		out = append(out, strings.Trim(strings.TrimSpace(p), `"`))
	}
	return strings.Join(out, ",")
}
