// Package postgres runs and queries PostgreSQL: it finds the server binaries, initialises and
// configures clusters, starts and stops them (as an unprivileged OS user when Fog runs as
// root), and performs the SQL the agent needs.
//
// # The tenant boundary
//
// An instance's admin is hostile by assumption, and so is the instance's OS user (a tenant
// who became PostgreSQL's superuser runs programs as it). Two rules hold for every change
// here (DESIGN.md, "The tenant boundary"):
//
// Privileged SQL cannot be steered. Every session Fog opens (Connect, ConnectMonitor,
// ConnectSystem, and the replication role's in prepareSlot) sends pinnedSettings in its
// startup packet: search_path is pg_catalog, pg_temp, role is none, and these outrank what a
// database's owner attaches with ALTER DATABASE ... SET. Statements name catalog objects with
// pg_catalog., write operators as OPERATOR(pg_catalog.op), and cast parameters and literals to
// the type meant ($1::pg_catalog.name), so no overload a tenant makes in any schema can win.
// What concerns no one database runs in SystemDB, where no tenant may connect. What only
// reads runs as MonitorUser (pg_monitor, nothing more). Objects Fog keeps in a tenant's
// database (the schema fog: the link-status view, fog.link, fog.wait_for_copy_sync) are
// created only where absent or Fog's, and checked again, locked, before Fog writes to them
// (EnsureLinkView); anything else there is refused with ErrForeignObject. The fog_guard
// library keeps the admin from Fog's roles and from the roles that reach files and programs.
//
// Root never follows the instance user's path or trusts its pid. The instance's directory
// (Cluster.Dir) is root's and mode 0711; the data directory below it is the instance user's.
// Every file root writes or reads there goes through package safedir (relative to a directory
// descriptor, no link followed, regular files only, ownership given through the descriptor),
// or the work runs as the instance's user (initdb, pg_ctl, pg_basebackup, pg_rewind,
// pg_waldump). A pid read from postmaster.pid is signalled only through package proc: a
// pidfd, then a check that the process runs as the instance's user and executes the postgres
// binary. TestHostileAdminSQL and TestHostileInstanceUser play the attacker for both rules.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoBinaries means no PostgreSQL server binaries were found.
var ErrNoBinaries = errors.New("postgres: server binaries not found")

// FindBinaries returns the directory holding initdb, pg_ctl and postgres: explicit (a flag)
// if set, else $PG_BIN, else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin.
func FindBinaries(ctx context.Context, explicit string) (string, error) {
	var cands []string
	if explicit != "" {
		cands = append(cands, explicit)
	} else {
		if env := os.Getenv("PG_BIN"); env != "" {
			cands = append(cands, env)
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output()
		cancel()
		if err == nil {
			cands = append(cands, strings.TrimSpace(string(out)))
		}
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
		cands = append(cands, dirs...)
	}
	for _, d := range cands {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w (looked in %s): install them, e.g. `apt-get install postgresql`, or pass --pg-bin / set PG_BIN",
		ErrNoBinaries, strings.Join(cands, ", "))
}

func versionOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
