// Package postgres runs and queries PostgreSQL: it finds the server binaries, initialises and
// configures clusters, starts and stops them (as an unprivileged OS user when Fog runs as
// root), and performs the SQL the agent needs.
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
